"""The operator's commands: resume, skip and cancel a plan, with its children and its
paused parent; a cancel requested by a step (its sub-plans) goes the same way.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from mcoflow.engine.records import Plan
from mcoflow.engine.schema import plans, steps
from mcoflow.engine.states import (
    PlanResult,
    PlanState,
    StepState,
    check_plan_transition,
    check_step_transition,
)
from mcoflow.engine.store.base import InvalidOperation
from mcoflow.engine.store.writes import FinishedStep, WriteCore


class OperatorCommands(WriteCore):
    """Resume, skip and cancel."""

    async def _plan_after(
        self, work: Callable[[AsyncConnection], Awaitable[None]], plan_id: str
    ) -> Plan:
        """Run a command's ``work`` in one write transaction; the plan as it is then."""
        await self._retrying(work)
        plan = await self.get_plan(plan_id)
        assert plan is not None
        return plan

    async def resume(self, plan_id: str, by: str) -> Plan:
        """Run a paused plan's failed steps again, and resume its paused child plans in
        the same transaction (a fleet's failed hosts): otherwise its sub-plan step would
        recount them as failed and pause the plan again at once. A paused parent goes on
        too once none of its children waits for the operator."""

        async def work(conn: AsyncConnection) -> None:
            now = time.time()
            await self._lock_plans(conn, [plan_id])
            row = await self._plan_row(conn, plan_id)
            await self._resume(conn, plan_id, by, now)
            await self._parent_goes_on(conn, row, by, now)

        return await self._plan_after(work, plan_id)

    async def _resume(
        self,
        conn: AsyncConnection,
        plan_id: str,
        by: str,
        now: float,
        *,
        detail: str | None = None,
        step_idx: int | None = None,
    ) -> None:
        """Resume a locked paused plan: its failed steps (only ``step_idx`` if given, and
        then none of its children) run again; its paused children are resumed too."""
        row = await self._plan_row(conn, plan_id)
        state = PlanState(row.state)
        if state is not PlanState.PAUSED:
            raise InvalidOperation(
                f"plan {plan_id} is {state.value}, only a paused plan can be resumed"
            )
        check_plan_transition(state, PlanState.RUNNING)
        failed = and_(steps.c.plan_id == plan_id, steps.c.state == StepState.ERROR.value)
        if step_idx is not None:
            failed = and_(failed, steps.c.idx == step_idx)
        await conn.execute(update(steps).where(failed).values(ready_at=now, error=None))
        values: dict[str, Any] = {
            "state": PlanState.RUNNING.value,
            "result": PlanResult.PENDING.value,
        }
        if row.needs_finalize:
            values.update(wake_at=now, error=None)
        await conn.execute(update(plans).where(plans.c.id == plan_id).values(**values))
        await self._history(conn, plan_id, "resumed", detail, by, now)
        children = (
            [] if step_idx is not None else await self._child_ids(conn, plan_id, [PlanState.PAUSED])
        )
        if children:
            await self._lock_plans(conn, children)
            for child in children:
                await self._resume(conn, child, by, now, detail="with the plan it is part of")
        await self._notify(conn)
        await self._settle(conn, [plan_id], now, by=by)

    async def _child_ids(
        self,
        conn: AsyncConnection,
        plan_id: str,
        states: Iterable[PlanState],
        step_idx: int | None = None,
    ) -> list[str]:
        """Ids of a plan's children (of one step, if given) in some states, in id order,
        leaving out those already asked to cancel."""
        query = select(plans.c.id).where(
            plans.c.parent_plan_id == plan_id,
            plans.c.state.in_([s.value for s in states]),
            plans.c.cancel_requested.is_(False),
        )
        if step_idx is not None:
            query = query.where(plans.c.parent_step_id == step_idx)
        return list((await conn.execute(query.order_by(plans.c.id))).scalars())

    async def skip(self, plan_id: str, step_idx: int | None, by: str) -> Plan:
        """Skip a failed step (every failed step if None) and what needs its output; the
        plan goes on. A paused parent (a fleet) goes on too once none of its step's
        children waits for the operator any more."""

        async def work(conn: AsyncConnection) -> None:
            now = time.time()
            await self._lock_plans(conn, [plan_id])
            plan_row = await self._plan_row(conn, plan_id)
            query = select(steps.c.idx, steps.c.state).where(steps.c.plan_id == plan_id)
            if step_idx is None:
                query = query.where(steps.c.state == StepState.ERROR.value, steps.c.has_run)
            else:
                query = query.where(steps.c.idx == step_idx)
            found = (await conn.execute(query.order_by(steps.c.idx))).all()
            if not found:
                raise InvalidOperation(
                    f"plan {plan_id} has no failed step to skip"
                    if step_idx is None
                    else f"plan {plan_id} has no step {step_idx}"
                )
            for step_row in found:
                state = StepState(step_row.state)
                if state is not StepState.ERROR:
                    raise InvalidOperation(
                        f"step {step_row.idx} is {state.value}; only a failed step can be skipped"
                    )
                check_step_transition(state, StepState.SKIPPING)
                check_step_transition(StepState.SKIPPING, StepState.SKIPPED)
            idxs = [r.idx for r in found]
            rows = (
                await conn.execute(
                    update(steps)
                    .where(steps.c.plan_id == plan_id, steps.c.idx.in_(idxs))
                    .values(
                        state=StepState.SKIPPED.value, ready_at=None, progress=1.0, ended_at=now
                    )
                    .returning(
                        steps.c.plan_id, steps.c.idx, steps.c.dependents, steps.c.ref_dependents
                    )
                )
            ).all()
            for idx in idxs:
                await self._history(conn, plan_id, "step skipped", f"step {idx}", by, now)
            await self._notify(conn)
            await self._release_dependents(conn, [FinishedStep.skipped_row(r) for r in rows], now)
            if plan_row.state == PlanState.PAUSED:
                await conn.execute(
                    update(plans)
                    .where(plans.c.id == plan_id)
                    .values(state=PlanState.RUNNING.value, result=PlanResult.PENDING.value)
                )
                await self._history(conn, plan_id, "running", "after a skip", by, now)
            await self._settle(conn, [plan_id], now, by=by)
            await self._parent_goes_on(conn, plan_row, by, now)

        return await self._plan_after(work, plan_id)

    async def _parent_goes_on(self, conn: AsyncConnection, child: Any, by: str, now: float) -> None:
        """Resume a paused parent's failed step once none of its children waits for the
        operator (skipped or resumed one by one): it recounts them and waits, ends, or
        pauses again if some failed for good."""
        parent, idx = child.parent_plan_id, child.parent_step_id
        if parent is None or idx is None:
            return
        await self._lock_plans(conn, [parent])
        row = (await conn.execute(select(plans.c.state).where(plans.c.id == parent))).first()
        if row is None or row.state != PlanState.PAUSED:
            return
        if await self._child_ids(conn, parent, [PlanState.PAUSED], idx):
            return
        step_state = (
            await conn.execute(
                select(steps.c.state).where(steps.c.plan_id == parent, steps.c.idx == idx)
            )
        ).scalar()
        if step_state != StepState.ERROR:
            return
        detail = f"no sub-plan waits for the operator any more (last: {child.label})"
        await self._resume(conn, parent, by, now, detail=detail, step_idx=idx)

    async def cancel(self, plan_id: str, by: str) -> Plan:
        """Stop a plan: steps not started are cancelled, cancellable actions that wait get
        a Cancel event, others that wait are cancelled."""

        async def work(conn: AsyncConnection) -> None:
            await self._lock_plans(conn, [plan_id])
            await self._cancel(conn, plan_id, by, time.time())

        return await self._plan_after(work, plan_id)

    async def _cancel(
        self,
        conn: AsyncConnection,
        plan_id: str,
        by: str,
        now: float,
        cancellable: frozenset[str] | None = None,
    ) -> bool:
        if cancellable is None:
            cancellable = _cancellable_actions()
        row = await self._plan_row(conn, plan_id)
        state = PlanState(row.state)
        if state is PlanState.STOPPED:
            raise InvalidOperation(f"plan {plan_id} is already stopped")
        await conn.execute(update(plans).where(plans.c.id == plan_id).values(cancel_requested=True))
        await self._history(conn, plan_id, "cancel requested", None, by, now)
        if state in (PlanState.SCHEDULED, PlanState.PLANNED):
            await conn.execute(
                update(plans)
                .where(plans.c.id == plan_id)
                .values(
                    state=PlanState.STOPPED.value,
                    result=PlanResult.CANCELLED.value,
                    wake_at=None,
                    ended_at=now,
                )
            )
            await conn.execute(
                update(steps)
                .where(steps.c.plan_id == plan_id, steps.c.state == StepState.PENDING.value)
                .values(state=StepState.CANCELLED.value, ready_at=None)
            )
            await self._history(conn, plan_id, "stopped", "result cancelled", by, now)
            return False
        waiting = (
            await conn.execute(
                select(steps.c.idx, steps.c.action).where(
                    steps.c.plan_id == plan_id, steps.c.state == StepState.SUSPENDED.value
                )
            )
        ).all()
        to_signal = [r.idx for r in waiting if r.action in cancellable]
        await self._deliver_cancels(conn, [(plan_id, idx) for idx in to_signal], now)
        await conn.execute(
            update(steps)
            .where(
                steps.c.plan_id == plan_id,
                or_(
                    steps.c.state.in_([StepState.PENDING.value, StepState.ERROR.value]),
                    and_(steps.c.state == StepState.SUSPENDED.value, steps.c.idx.not_in(to_signal)),
                ),
            )
            .values(state=StepState.CANCELLED.value, ready_at=None, ended_at=now)
        )
        if state is PlanState.PAUSED:
            await conn.execute(
                update(plans).where(plans.c.id == plan_id).values(state=PlanState.RUNNING.value)
            )
        # its children too, paused ones included: a paused fleet's failed hosts would
        # otherwise wait for the operator forever
        finalizing = await self._cancel_children(conn, plan_id, None, now, by, include_paused=True)
        return await self._settle(conn, [plan_id], now, by=by) or finalizing

    async def _cancel_children(
        self,
        conn: AsyncConnection,
        plan_id: str,
        step_idx: int | None,
        now: float,
        by: str,
        *,
        include_paused: bool,
    ) -> bool:
        """Cancel a step's child plans (every step's if None): those not started at once,
        running ones by the same rules as an operator's cancel, paused ones only if asked."""
        states = [PlanState.PLANNED, PlanState.RUNNING]
        if include_paused:
            states.append(PlanState.PAUSED)
        ids = await self._child_ids(conn, plan_id, states, step_idx)
        if not ids:
            return False
        await self._lock_plans(conn, ids)
        cancellable = _cancellable_actions()
        finalizing = False
        for child in ids:
            finalizing |= await self._cancel(conn, child, by, now, cancellable)
        return finalizing


def _cancellable_actions() -> frozenset[str]:
    from mcoflow.engine.action import _REGISTRY

    return frozenset(name for name, cls in _REGISTRY.items() if cls.cancellable)
