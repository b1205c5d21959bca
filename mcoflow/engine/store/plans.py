"""Writing plans: inserting them (a fleet's children a chunk at a time), claiming plans
due for an executor themselves, starting delayed plans and a step's children.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from mcoflow.engine.planner import NewPlan
from mcoflow.engine.records import ClaimedPlan
from mcoflow.engine.schema import history, plans, steps
from mcoflow.engine.states import (
    PlanResult,
    PlanState,
    StepState,
)
from mcoflow.engine.store.base import dumps
from mcoflow.engine.store.writes import WriteCore

# rows made or inserted at a time without letting other tasks run (the web, agents)
_ROWS_BETWEEN_YIELDS = 200


class PlanWrites(WriteCore):
    """Inserting, claiming and starting plans."""

    async def insert_plans(self, new_plans: Sequence[NewPlan], *, start: bool, by: str) -> None:
        async with self._write() as conn:
            await self._insert_plans(conn, new_plans, start=start, by=by, now=time.time())

    async def _insert_plans(
        self,
        conn: AsyncConnection,
        new_plans: Sequence[NewPlan],
        *,
        start: bool,
        by: str,
        now: float,
        seq_offset: int = 0,
    ) -> None:
        plan_rows: list[dict[str, Any]] = []
        step_rows: list[dict[str, Any]] = []
        history_rows: list[dict[str, Any]] = []
        for i, plan in enumerate(new_plans):
            if i and i % _ROWS_BETWEEN_YIELDS == 0:
                await asyncio.sleep(0)  # a fleet's chunk of children: the web answers meanwhile
            running = start and plan.state is PlanState.PLANNED
            state = PlanState.RUNNING if running else plan.state
            plan_rows.append(
                {
                    "id": plan.id,
                    "action": plan.action,
                    "label": plan.label,
                    "args": dumps(plan.args),
                    "state": state.value,
                    "result": plan.result.value,
                    "flow": dumps(plan.flow),
                    "error": plan.error,
                    "parent_plan_id": plan.parent_plan_id,
                    "parent_step_id": plan.parent_step_id,
                    # children are started in creation order
                    "created_at": plan.created_at + (seq_offset + i) * 1e-6,
                    "started_at": now if running else None,
                    "ended_at": now if state is PlanState.STOPPED else None,
                    "start_at": plan.start_at,
                    "start_before": plan.start_before,
                    "wake_at": plan.start_at if state is PlanState.SCHEDULED else None,
                    "needs_finalize": False,
                    "cancel_requested": False,
                    "progress": 0.0,
                }
            )
            for step in plan.steps:
                ready = running and step.has_run and step.pending_deps == 0
                step_rows.append(
                    {
                        "plan_id": plan.id,
                        "idx": step.idx,
                        "parent": step.parent,
                        "action": step.action,
                        "state": step.state.value,
                        "input": dumps(step.input),
                        "output": None,
                        "data": None,
                        "error": dumps(step.error) if step.error else None,
                        "has_run": step.has_run,
                        "has_finalize": step.has_finalize,
                        "idempotent": step.idempotent,
                        "rescue": step.rescue,
                        "weight": step.weight,
                        "progress": 1.0 if step.state is StepState.SUCCESS else 0.0,
                        "pending_deps": step.pending_deps,
                        "dependents": dumps(list(step.dependents)),
                        "ref_dependents": dumps(list(step.ref_dependents)),
                        "ready_at": now if ready else None,
                        "attempts": 0,
                        "run_seconds": 0.0,
                    }
                )
            for what, detail in plan.history:
                history_rows.append(
                    {"plan_id": plan.id, "at": now, "what": what, "detail": detail, "by": by}
                )
            if running:
                history_rows.append(
                    {"plan_id": plan.id, "at": now, "what": "running", "detail": None, "by": by}
                )
        for table, rows in ((plans, plan_rows), (steps, step_rows), (history, history_rows)):
            for at in range(0, len(rows), _ROWS_BETWEEN_YIELDS):
                await conn.execute(insert(table), rows[at : at + _ROWS_BETWEEN_YIELDS])
        if start:
            await self._notify(conn)
        # a plan with nothing to run is done as soon as it starts
        empty = [p.id for p in new_plans if start and p.state is PlanState.PLANNED]
        if empty:
            await self._settle(conn, empty, now, by=by)

    async def claim_plans(self, executor_id: str, limit: int, now: float) -> list[ClaimedPlan]:
        """Plans that need an executor themselves: delayed starts and finalize phases."""

        async def work(conn: AsyncConnection) -> list[ClaimedPlan]:
            due = (
                select(plans.c.id)
                .where(plans.c.wake_at <= now)
                .order_by(plans.c.wake_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            rows = await conn.execute(
                update(plans)
                .where(plans.c.id.in_(due))
                .values(wake_at=None, claimed_by=executor_id)
                .returning(plans.c.id, plans.c.state, plans.c.needs_finalize)
            )
            return [ClaimedPlan(r.id, PlanState(r.state), bool(r.needs_finalize)) for r in rows]

        return await self._retrying(work)  # type: ignore[no-any-return]

    async def start_scheduled_plan(
        self, plan_id: str, new_plan: NewPlan | None, error: str | None, by: str
    ) -> None:
        """Replace a delayed plan's placeholder by its real plan, or stop it with ``error``."""

        async def work(conn: AsyncConnection) -> None:
            now = time.time()
            row = (
                await conn.execute(
                    select(plans.c.state).where(plans.c.id == plan_id).with_for_update()
                )
            ).first()
            if row is None or row.state != PlanState.SCHEDULED:
                return
            if new_plan is None or new_plan.state is PlanState.STOPPED:
                reason = error or (new_plan.error if new_plan else None) or "not started"
                await conn.execute(delete(plans).where(plans.c.id == plan_id))
                if new_plan is not None:
                    await self._insert_plans(conn, [new_plan], start=False, by=by, now=now)
                else:
                    await conn.execute(
                        insert(plans),
                        [
                            {
                                **_placeholder(plan_id),
                                "state": PlanState.STOPPED.value,
                                "result": PlanResult.ERROR.value,
                                "error": reason,
                                "ended_at": now,
                            }
                        ],
                    )
                await self._history(conn, plan_id, "stopped", reason, by, now)
                return
            # keep the delayed plan's own history rows: move them aside, then back
            old = (await conn.execute(select(history).where(history.c.plan_id == plan_id))).all()
            await conn.execute(delete(plans).where(plans.c.id == plan_id))
            new_plan.created_at = (
                min(new_plan.created_at, *(h.at for h in old)) if old else (new_plan.created_at)
            )
            await self._insert_plans(conn, [new_plan], start=True, by=by, now=now)
            if old:
                await conn.execute(
                    insert(history),
                    [
                        {
                            "plan_id": plan_id,
                            "at": h.at,
                            "what": h.what,
                            "detail": h.detail,
                            "by": h.by,
                        }
                        for h in old
                    ],
                )

        await self._retrying(work)

    async def _start_children(
        self,
        conn: AsyncConnection,
        plan_id: str,
        step_idx: int,
        limit: int,
        max_failed: int | None,
        now: float,
        by: str,
    ) -> bool:
        """Start planned children up to ``limit`` running; none once ``max_failed`` have
        failed, counted now: a child may have failed since its parent's run counted."""
        counts = await self._sub_plan_counts(conn, plan_id, step_idx)
        room = limit - counts.running
        if room <= 0 or counts.planned == 0:
            return False
        if max_failed is not None and counts.failed >= max_failed:
            return False
        chosen = [
            r.id
            for r in await conn.execute(
                select(plans.c.id)
                .where(
                    plans.c.parent_plan_id == plan_id,
                    plans.c.parent_step_id == step_idx,
                    plans.c.state == PlanState.PLANNED.value,
                )
                .order_by(plans.c.created_at)
                .limit(room)
            )
        ]
        if not chosen:
            return False
        await conn.execute(
            update(plans)
            .where(self._among(plans.c.id, chosen))
            .values(state=PlanState.RUNNING.value, started_at=now)
        )
        await conn.execute(
            update(steps)
            .where(
                self._among(steps.c.plan_id, chosen),
                steps.c.has_run,
                steps.c.pending_deps == 0,
                steps.c.state == StepState.PENDING.value,
            )
            .values(ready_at=now)
        )
        await conn.execute(
            insert(history),
            [
                {"plan_id": c, "at": now, "what": "running", "detail": None, "by": by}
                for c in chosen
            ],
        )
        return await self._settle(conn, chosen, now, by=by)


def _placeholder(plan_id: str) -> dict[str, Any]:
    return {"id": plan_id, "action": "", "label": "", "args": "{}", "created_at": time.time()}
