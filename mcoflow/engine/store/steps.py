"""Claiming steps and committing what their runs produced (one transaction per batch of
outcomes), and the end of a plan's finalize phase.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from mcoflow.engine.action import Event, EventKind, registered_action
from mcoflow.engine.flow import referenced_steps
from mcoflow.engine.records import ClaimedStep, NewEvent, StepOutcome
from mcoflow.engine.schema import events, outbox, plans, steps
from mcoflow.engine.states import (
    PlanResult,
    PlanState,
    StepState,
    check_step_transition,
    plan_result,
)
from mcoflow.engine.store.base import dumps, loads, log
from mcoflow.engine.store.commands import OperatorCommands
from mcoflow.engine.store.plans import PlanWrites
from mcoflow.engine.store.statements import (
    PG_SUSPEND,
    PG_WRITE_OUTCOMES,
    SUSPEND,
    WRITE_OUTCOMES,
)
from mcoflow.engine.store.writes import FinishedStep, event_row


class StepWrites(PlanWrites, OperatorCommands):
    """Claims and outcomes of steps."""

    async def claim_steps(self, executor_id: str, limit: int, now: float) -> list[ClaimedStep]:
        return await self._retrying(self._claim_steps, executor_id, limit, now)  # type: ignore[no-any-return]

    async def _claim_steps(
        self, conn: AsyncConnection, executor_id: str, limit: int, now: float
    ) -> list[ClaimedStep]:
        due = (
            select(steps.c.plan_id, steps.c.idx)
            .where(steps.c.ready_at <= now)
            .order_by(steps.c.ready_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        stmt = (
            update(steps)
            .where(tuple_(steps.c.plan_id, steps.c.idx).in_(due))
            .values(
                state=StepState.RUNNING.value,
                claimed_by=executor_id,
                claimed_from=steps.c.state,
                attempts=steps.c.attempts + 1,
                ready_at=None,
                started_at=func.coalesce(steps.c.started_at, now),
            )
            .returning(
                steps.c.plan_id,
                steps.c.idx,
                steps.c.action,
                steps.c.input,
                steps.c.output,
                steps.c.data,
                steps.c.claimed_from,
                steps.c.attempts,
                steps.c.dependents,
                steps.c.ref_dependents,
            )
        )
        rows = (await conn.execute(stmt)).all()
        if not rows:
            return []
        woken = [(r.plan_id, r.idx) for r in rows if r.claimed_from == StepState.SUSPENDED]
        due_events: dict[tuple[str, int], list[Event]] = defaultdict(list)
        if woken:
            for ev in await conn.execute(
                select(
                    events.c.id,
                    events.c.plan_id,
                    events.c.step_idx,
                    events.c.kind,
                    events.c.payload,
                )
                .where(
                    self._pairs_among(events.c.plan_id, events.c.step_idx, woken),
                    events.c.consumed_at.is_(None),
                    events.c.due_at <= now,
                )
                .order_by(events.c.due_at, events.c.id)
            ):
                due_events[(ev.plan_id, ev.step_idx)].append(
                    Event(EventKind(ev.kind), loads(ev.payload), ev.id)
                )
        inputs = {(r.plan_id, r.idx): loads(r.input) for r in rows}
        wanted = {(pid, ref) for (pid, _), inp in inputs.items() for ref in referenced_steps(inp)}
        ref_outputs: dict[str, dict[int, Any]] = defaultdict(dict)
        if wanted:
            for pid, idx, out in await conn.execute(
                select(steps.c.plan_id, steps.c.idx, steps.c.output).where(
                    self._pairs_among(steps.c.plan_id, steps.c.idx, sorted(wanted))
                )
            ):
                ref_outputs[pid][idx] = loads(out)
        return [
            ClaimedStep(
                plan_id=r.plan_id,
                idx=r.idx,
                action=r.action,
                input=inputs[(r.plan_id, r.idx)],
                output=loads(r.output),
                data=loads(r.data),
                claimed_from=StepState(r.claimed_from),
                attempts=r.attempts,
                events=tuple(due_events.get((r.plan_id, r.idx), ())),
                dependents=tuple(loads(r.dependents)),
                ref_dependents=tuple(loads(r.ref_dependents)),
                ref_outputs=ref_outputs.get(r.plan_id, {}),
            )
            for r in rows
        ]

    async def write_outcomes(self, outcomes: Sequence[StepOutcome], by: str) -> bool:
        """Commit a batch of outcomes in one transaction. True if a plan became due for
        its finalize phase (the executor's plan loop has work)."""
        return await self._retrying(self._write_outcomes, outcomes, by)  # type: ignore[no-any-return]

    async def _write_outcomes(
        self, conn: AsyncConnection, outcomes: Sequence[StepOutcome], by: str
    ) -> bool:
        now = time.time()
        plan_ids = sorted({o.plan_id for o in outcomes})
        flags = await self._lock_plans(conn, plan_ids)
        # fencing: if this executor was declared dead meanwhile, its claims were released
        # (and maybe re-run elsewhere); an outcome for a claim it lost must not count
        held = {
            (pid, idx)
            for pid, idx in await conn.execute(
                # by (plan, step), not by claimant: the claimant's index holds an entry
                # for every claim not yet vacuumed away, thousands after a busy minute
                select(steps.c.plan_id, steps.c.idx).where(
                    self._pairs_among(
                        steps.c.plan_id, steps.c.idx, [(o.plan_id, o.idx) for o in outcomes]
                    ),
                    steps.c.claimed_by == by,
                )
            )
        }
        lost = [o for o in outcomes if (o.plan_id, o.idx) not in held]
        if lost:
            log.warning(
                "dropping %d outcomes of steps %s no longer claimed by %s",
                len(lost),
                [(o.plan_id, o.idx) for o in lost[:5]],
                by,
            )
            outcomes = [o for o in outcomes if (o.plan_id, o.idx) in held]
            if not outcomes:
                return False
        for o in outcomes:
            if flags.get(o.plan_id, False) and o.state is StepState.SUSPENDED:
                # the plan is being cancelled: cancellable steps get one Cancel event (the
                # dedupe key makes it one), the others stop waiting
                if registered_action(o.action).cancellable:
                    await self._deliver_cancels(conn, [(o.plan_id, o.idx)], now)
                else:
                    o.state = StepState.CANCELLED
        for o in outcomes:
            check_step_transition(StepState.RUNNING, o.state)
        # child plans first: start_sub_plans below may start some of them
        children = [p for o in outcomes for p in o.sub_plans]
        if children:
            await self._insert_plans(conn, children, start=False, by=by, now=now)
        rows = [
            {
                "b_plan": o.plan_id,
                "b_idx": o.idx,
                "b_state": o.state.value,
                "b_output": dumps(o.output) if o.output is not None else None,
                "b_data": dumps(o.data) if o.data else None,
                "b_error": dumps(o.error) if o.error else None,
                "b_progress": 1.0
                if o.state in (StepState.SUCCESS, StepState.SKIPPED)
                else o.progress,
                "b_ended": None if o.state is StepState.SUSPENDED else now,
                "b_seconds": o.run_seconds,
            }
            for o in outcomes
        ]
        await self._update_rows(conn, rows, PG_WRITE_OUTCOMES, WRITE_OUTCOMES)
        consumed = [e for o in outcomes for e in o.consumed_events]
        if consumed:
            await conn.execute(
                update(events).where(self._among(events.c.id, consumed)).values(consumed_at=now)
            )
        new_events = [
            event_row(NewEvent(o.plan_id, o.idx, e.kind, e.payload, e.dedupe_key, e.due_at), now)
            for o in outcomes
            for e in o.new_events
        ]
        if new_events:
            await conn.execute(insert(events), new_events)
        suspended = [o for o in outcomes if o.state is StepState.SUSPENDED]
        if suspended:
            await self._update_rows(
                conn,
                [{"b_plan": o.plan_id, "b_idx": o.idx} for o in suspended],
                PG_SUSPEND,
                SUSPEND,
            )
        finished = [
            FinishedStep(
                o.plan_id, o.idx, o.state is StepState.SKIPPED, o.dependents, o.ref_dependents
            )
            for o in outcomes
            if o.state in (StepState.SUCCESS, StepState.SKIPPED)
        ]
        await self._release_dependents(conn, finished, now)
        messages = [
            {
                "plan_id": o.plan_id,
                "step_idx": o.idx,
                "destination": dest,
                "message": dumps(msg),
                "created_at": now,
            }
            for o in outcomes
            for dest, msg in o.messages
        ]
        if messages:
            await conn.execute(insert(outbox), messages)
        finalizing = False
        for o in outcomes:
            if o.cancel_sub_plans:
                finalizing |= await self._cancel_children(
                    conn, o.plan_id, o.idx, now, by, include_paused=o.cancel_paused_sub_plans
                )
            if o.start_sub_plans is not None:
                finalizing |= await self._start_children(
                    conn, o.plan_id, o.idx, o.start_sub_plans, o.start_unless_failed, now, by
                )
        return await self._settle(conn, plan_ids, now, by=by) or finalizing

    async def finish_finalize(
        self, plan_id: str, error: dict[str, Any] | None, failed_step: int | None, by: str
    ) -> None:
        async def work(conn: AsyncConnection) -> None:
            now = time.time()
            await self._lock_plans(conn, [plan_id])
            row = (await conn.execute(select(plans).where(plans.c.id == plan_id))).one()
            await conn.execute(
                update(plans)
                .where(plans.c.id == plan_id)
                .values(
                    needs_finalize=False,
                    claimed_by=None,
                    error=None if error is None else f"finalize failed: {error['message']}",
                )
            )
            parent = (row.parent_plan_id, row.parent_step_id)
            if error is None:
                states = [
                    StepState(s)
                    for (s,) in await conn.execute(
                        select(steps.c.state).where(steps.c.plan_id == plan_id, steps.c.has_run)
                    )
                ]
                await self._set_plan_state(
                    conn,
                    plan_id,
                    PlanState.RUNNING,
                    PlanState.STOPPED,
                    plan_result(states),
                    now,
                    by,
                    parent=parent,
                )
                return
            if failed_step is not None:
                await conn.execute(
                    update(steps)
                    .where(steps.c.plan_id == plan_id, steps.c.idx == failed_step)
                    .values(error=dumps({**error, "phase": "finalize"}))
                )
            await conn.execute(
                update(plans).where(plans.c.id == plan_id).values(needs_finalize=True)
            )
            await self._set_plan_state(
                conn,
                plan_id,
                PlanState.RUNNING,
                PlanState.PAUSED,
                PlanResult.ERROR,
                now,
                by,
                parent=parent,
                detail=f"finalize failed: {error['message']}",
            )

        await self._retrying(work)
