"""``Store``: the write path (plans, claims, outcomes, events, operator actions,
sub-plans, executors, retention), on top of the reads and the outbox queries.

Invariant kept by every write here: ``steps.ready_at`` is set exactly when a step can be
claimed. Writes that decide a plan's fate lock the plan row first, so two executors never
settle one plan from stale views. The outcome of a batch is one transaction, hence one
long module.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, case, delete, func, insert, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from mcoflow.engine.action import Event, EventKind, registered_action
from mcoflow.engine.flow import referenced_steps
from mcoflow.engine.planner import NewPlan
from mcoflow.engine.records import ClaimedStep, Plan, StepOutcome
from mcoflow.engine.schema import events, executors, history, outbox, plans, steps
from mcoflow.engine.states import (
    PlanResult,
    PlanState,
    StepState,
    check_plan_transition,
    check_step_transition,
    plan_result,
)
from mcoflow.engine.store.base import InvalidOperation, dumps, loads, log
from mcoflow.engine.store.children import ChildQueries
from mcoflow.engine.store.hosts import HostQueries
from mcoflow.engine.store.maintenance import MaintenanceQueries
from mcoflow.engine.store.outbox import OutboxQueries
from mcoflow.engine.store.reads import ReadQueries
from mcoflow.engine.store.statements import (
    PG_PLAN_STATES,
    PG_RELEASE,
    PG_SUSPEND,
    PG_WAKE,
    PG_WRITE_OUTCOMES,
    PLAN_STATES,
    SUSPEND,
    WAKE,
    WRITE_OUTCOMES,
    chunks,
    columns,
    dialect_insert,
)

# rows made or inserted at a time without letting other tasks run (the web, agents)
_ROWS_BETWEEN_YIELDS = 200

ABNORMAL_TERMINATION = "abnormal termination: its executor {executor} stopped while it ran"


class Store(ReadQueries, ChildQueries, OutboxQueries, MaintenanceQueries, HostQueries):
    """The engine's port to the database; one instance per process."""

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
            await self._settle(conn, empty, now, by=by, only_if_idle=True)

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

    async def claim_plans(
        self, executor_id: str, limit: int, now: float
    ) -> list[tuple[str, PlanState, bool]]:
        """Plans that need an executor themselves: delayed starts and finalize phases."""

        async def work(conn: AsyncConnection) -> list[tuple[str, PlanState, bool]]:
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
            return [(r.id, PlanState(r.state), bool(r.needs_finalize)) for r in rows]

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

    async def write_outcomes(self, outcomes: Sequence[StepOutcome], by: str) -> None:
        await self._retrying(self._write_outcomes, outcomes, by)

    async def _write_outcomes(
        self, conn: AsyncConnection, outcomes: Sequence[StepOutcome], by: str
    ) -> None:
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
                return
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
            {
                "plan_id": o.plan_id,
                "step_idx": o.idx,
                "kind": e.kind.value,
                "payload": dumps(e.payload),
                "dedupe_key": e.dedupe_key,
                "due_at": e.due_at,
                "created_at": now,
            }
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
            _Finished(
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
        for o in outcomes:
            if o.cancel_sub_plans:
                await self._cancel_children(
                    conn, o.plan_id, o.idx, now, by, include_paused=o.cancel_paused_sub_plans
                )
            if o.start_sub_plans is not None:
                await self._start_children(
                    conn, o.plan_id, o.idx, o.start_sub_plans, o.start_unless_failed, now, by
                )
        await self._settle(conn, plan_ids, now, by=by)

    async def _lock_plans(self, conn: AsyncConnection, plan_ids: list[str]) -> dict[str, bool]:
        """Lock plan rows in id order (no deadlocks between batches); return cancel flags."""
        if not plan_ids:
            return {}
        rows = await conn.execute(
            select(plans.c.id, plans.c.cancel_requested)
            .where(self._among(plans.c.id, plan_ids))
            .order_by(plans.c.id)
            .with_for_update()
        )
        return {r.id: bool(r.cancel_requested) for r in rows}

    async def _release_dependents(
        self, conn: AsyncConnection, finished: list[_Finished], now: float
    ) -> None:
        """Let what waited on finished steps go on; skip what needed a skipped step's output."""
        if not finished:
            return
        decrements: Counter[tuple[str, int]] = Counter()
        cascade: list[tuple[str, int]] = []
        for f in finished:
            needs_output = set(f.ref_dependents) if f.skipped else set()
            for dep in f.dependents:
                if dep in needs_output:
                    cascade.append((f.plan_id, dep))
                else:
                    decrements[(f.plan_id, dep)] += 1
        released = [{"b_plan": p, "b_idx": i, "b_n": n} for (p, i), n in decrements.items()]
        if decrements and self.is_postgresql:
            await conn.execute(PG_RELEASE, {"now": now} | columns(released))
        elif decrements:
            remaining = steps.c.pending_deps - bindparam("b_n")
            await conn.execute(
                update(steps)
                .where(steps.c.plan_id == bindparam("b_plan"), steps.c.idx == bindparam("b_idx"))
                .values(
                    pending_deps=remaining,
                    ready_at=case(
                        (and_(remaining <= 0, steps.c.state == StepState.PENDING.value), now),
                        else_=steps.c.ready_at,
                    ),
                ),
                released,
            )
        if cascade:
            newly = (
                await conn.execute(
                    update(steps)
                    .where(
                        self._pairs_among(steps.c.plan_id, steps.c.idx, cascade),
                        steps.c.state == StepState.PENDING.value,
                    )
                    .values(
                        state=StepState.SKIPPED.value,
                        ready_at=None,
                        progress=1.0,
                        ended_at=now,
                        error=dumps(
                            {
                                "type": "Skipped",
                                "message": "skipped: a step whose output it needs was skipped",
                            }
                        ),
                    )
                    .returning(
                        steps.c.plan_id, steps.c.idx, steps.c.dependents, steps.c.ref_dependents
                    )
                )
            ).all()
            await self._release_dependents(conn, [_Finished.skipped_row(r) for r in newly], now)

    async def _settle(
        self,
        conn: AsyncConnection,
        plan_ids: Iterable[str],
        now: float,
        *,
        by: str,
        only_if_idle: bool = False,
    ) -> None:
        """Pause or stop running plans that have nothing left to run."""
        ids = list(plan_ids)
        if not ids:
            return
        rows = await conn.execute(
            select(
                steps.c.plan_id,
                steps.c.state,
                steps.c.rescue,
                func.count(),
                func.count(steps.c.ready_at),
                func.sum(case((steps.c.has_finalize, 1), else_=0)),
                func.sum(case((steps.c.has_run, steps.c.progress * steps.c.weight), else_=0.0)),
                func.sum(case((steps.c.has_run, steps.c.weight), else_=0.0)),
            )
            .where(self._among(steps.c.plan_id, ids))
            .where(or_(steps.c.has_run, steps.c.has_finalize))
            .group_by(steps.c.plan_id, steps.c.state, steps.c.rescue)
        )
        per_plan: dict[str, list[Any]] = defaultdict(list)
        weighted: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for row in rows:
            per_plan[row[0]].append(row)
            weighted[row[0]][0] += row[6] or 0.0
            weighted[row[0]][1] += row[7] or 0.0
        progress = {pid: done / total if total else 1.0 for pid, (done, total) in weighted.items()}
        info = {
            r.id: r
            for r in await conn.execute(
                select(
                    plans.c.id,
                    plans.c.state,
                    plans.c.cancel_requested,
                    plans.c.parent_plan_id,
                    plans.c.parent_step_id,
                    plans.c.needs_finalize,
                ).where(self._among(plans.c.id, ids))
            )
        }
        changes: list[_PlanChange] = []
        for pid in ids:
            plan = info.get(pid)
            if plan is None or plan.state != PlanState.RUNNING or plan.needs_finalize:
                continue
            groups = per_plan.get(pid, [])
            busy = any(
                g.state in (StepState.RUNNING, StepState.SUSPENDED) or g[4] > 0 for g in groups
            )
            if busy:
                continue
            states = [StepState(g.state) for g in groups]
            result = plan_result(states)
            all_done = all(s in (StepState.SUCCESS, StepState.SKIPPED) for s in states)
            if all_done and any(g[5] for g in groups):
                await conn.execute(
                    update(plans).where(plans.c.id == pid).values(needs_finalize=True, wake_at=now)
                )
                self.plan_work_marks += 1
                continue
            fails = any(g.state == StepState.ERROR and g.rescue == "fail" for g in groups)
            if result is PlanResult.ERROR and not (fails or plan.cancel_requested):
                new_state = PlanState.PAUSED
            else:
                new_state = PlanState.STOPPED
                if result is PlanResult.PENDING:
                    result = PlanResult.CANCELLED if plan.cancel_requested else PlanResult.ERROR
            changes.append(
                _PlanChange(
                    pid,
                    PlanState.RUNNING,
                    new_state,
                    result,
                    plan.parent_plan_id,
                    plan.parent_step_id,
                )
            )
        await self._set_plan_states(conn, changes, now, by, progress)

    async def _set_plan_state(
        self,
        conn: AsyncConnection,
        plan_id: str,
        old: PlanState,
        new: PlanState,
        result: PlanResult,
        now: float,
        by: str,
        *,
        parent: tuple[str | None, int | None],
        detail: str | None = None,
    ) -> None:
        change = _PlanChange(plan_id, old, new, result, parent[0], parent[1], detail)
        await self._set_plan_states(conn, [change], now, by)

    async def _set_plan_states(
        self,
        conn: AsyncConnection,
        changes: list[_PlanChange],
        now: float,
        by: str,
        progress: dict[str, float] | None = None,
    ) -> None:
        """Apply plan state changes in bulk and tell parents about children that ended."""
        if not changes:
            return
        for c in changes:
            check_plan_transition(c.old, c.new)
        if progress is None:
            stopping = [c.plan_id for c in changes if c.new is PlanState.STOPPED]
            progress = await self._progress(conn, stopping)
        rows = [
            {
                "b_id": c.plan_id,
                "b_state": c.new.value,
                "b_result": c.result.value,
                "b_ended": now if c.new is PlanState.STOPPED else None,
                "b_progress": progress.get(c.plan_id, 1.0) if c.new is PlanState.STOPPED else 0.0,
            }
            for c in changes
        ]
        await self._update_rows(conn, rows, PG_PLAN_STATES, PLAN_STATES)
        await conn.execute(
            insert(history),
            [
                {
                    "plan_id": c.plan_id,
                    "at": now,
                    "what": c.new.value,
                    "detail": c.detail or f"result {c.result.value}",
                    "by": by,
                }
                for c in changes
            ],
        )
        to_parents = [
            c for c in changes if c.parent_plan_id is not None and c.parent_step_id is not None
        ]
        if not to_parents:
            return
        await self._lock_plans(
            conn, sorted({c.parent_plan_id for c in to_parents if c.parent_plan_id})
        )
        await conn.execute(
            insert(events),
            [
                {
                    "plan_id": c.parent_plan_id,
                    "step_idx": c.parent_step_id,
                    "kind": EventKind.SUB_PLAN.value,
                    "payload": dumps(
                        {"plan_id": c.plan_id, "state": c.new.value, "result": c.result.value}
                    ),
                    "dedupe_key": None,
                    "due_at": now,
                    "created_at": now,
                }
                for c in to_parents
            ],
        )
        await self._wake_steps(
            conn,
            {
                (c.parent_plan_id, c.parent_step_id): now
                for c in to_parents
                if c.parent_plan_id is not None and c.parent_step_id is not None
            },
        )

    async def _history(
        self,
        conn: AsyncConnection,
        plan_id: str,
        what: str,
        detail: str | None,
        by: str,
        now: float,
    ) -> None:
        await conn.execute(
            insert(history).values(plan_id=plan_id, at=now, what=what, detail=detail, by=by)
        )

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

    async def deliver_events(
        self,
        items: Sequence[tuple[str, int, EventKind, dict[str, Any], str | None, float]],
    ) -> list[bool]:
        """Store events (plan, step, kind, payload, dedupe key, due time) and wake their
        steps. Returns, per item, whether it was new (False: a duplicate dedupe key)."""

        async def work(conn: AsyncConnection) -> list[bool]:
            now = time.time()
            await self._lock_plans(conn, sorted({i[0] for i in items}))
            # A key seen twice in one batch is new only the first time.
            first_of_key: dict[str, int] = {}
            for n, item in enumerate(items):
                if item[4] is not None:
                    first_of_key.setdefault(item[4], n)
            rows = [
                {
                    "plan_id": pid,
                    "step_idx": idx,
                    "kind": kind.value,
                    "payload": dumps(payload),
                    "dedupe_key": key,
                    "due_at": due,
                    "created_at": now,
                }
                for n, (pid, idx, kind, payload, key, due) in enumerate(items)
                if key is None or first_of_key[key] == n
            ]
            stored_keys = await self._insert_events(conn, rows)
            fresh = [
                key is None or (first_of_key[key] == n and key in stored_keys)
                for n, (_pid, _idx, _kind, _payload, key, _due) in enumerate(items)
            ]
            earliest: dict[tuple[str, int], float] = {}
            for is_new, (pid, idx, _kind, _payload, _key, due) in zip(fresh, items, strict=True):
                if is_new:
                    earliest[(pid, idx)] = min(due, earliest.get((pid, idx), due))
            await self._wake_steps(conn, earliest)
            return fresh

        return await self._retrying(work)  # type: ignore[no-any-return]

    async def _wake_steps(self, conn: AsyncConnection, due: dict[tuple[str, int], float]) -> None:
        """Make suspended steps claimable by their earliest due event."""
        if not due:
            return
        await self._notify(conn)
        rows = [{"b_plan": p, "b_idx": i, "b_due": d} for (p, i), d in sorted(due.items())]
        await self._update_rows(conn, rows, PG_WAKE, WAKE)

    async def _deliver_cancels(
        self, conn: AsyncConnection, targets: list[tuple[str, int]], now: float
    ) -> None:
        """One Cancel event per step, however often cancel is asked (the dedupe key)."""
        rows = [
            {
                "plan_id": plan_id,
                "step_idx": idx,
                "kind": EventKind.CANCEL.value,
                "payload": dumps({}),
                "dedupe_key": _cancel_key(plan_id, idx),
                "due_at": now,
                "created_at": now,
            }
            for plan_id, idx in targets
        ]
        stored = await self._insert_events(conn, rows)
        await self._wake_steps(
            conn,
            {
                target: now
                for target, row in zip(targets, rows, strict=True)
                if row["dedupe_key"] in stored
            },
        )

    async def _insert_events(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> set[str]:
        """Insert event rows, in their order, in multi-row statements; a row whose dedupe
        key is already stored is dropped. Returns the dedupe keys that were stored now."""
        if not rows:
            return set()
        # executemany: SQLAlchemy sends it as multi-row INSERTs ("insertmanyvalues"), in
        # order, and the statement compiles once whatever the batch size
        result = await conn.execute(
            dialect_insert(self.is_postgresql)(events)
            .on_conflict_do_nothing()
            .returning(events.c.dedupe_key),
            rows,
        )
        return {key for key in result.scalars() if key is not None}

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

        await self._retrying(work)
        plan = await self.get_plan(plan_id)
        assert plan is not None
        return plan

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
            await self._release_dependents(conn, [_Finished.skipped_row(r) for r in rows], now)
            if plan_row.state == PlanState.PAUSED:
                await conn.execute(
                    update(plans)
                    .where(plans.c.id == plan_id)
                    .values(state=PlanState.RUNNING.value, result=PlanResult.PENDING.value)
                )
                await self._history(conn, plan_id, "running", "after a skip", by, now)
            await self._settle(conn, [plan_id], now, by=by)
            await self._parent_goes_on(conn, plan_row, by, now)

        await self._retrying(work)
        plan = await self.get_plan(plan_id)
        assert plan is not None
        return plan

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

        await self._retrying(work)
        plan = await self.get_plan(plan_id)
        assert plan is not None
        return plan

    async def _cancel(
        self,
        conn: AsyncConnection,
        plan_id: str,
        by: str,
        now: float,
        cancellable: frozenset[str] | None = None,
    ) -> None:
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
            return
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
        await self._cancel_children(conn, plan_id, None, now, by, include_paused=True)
        await self._settle(conn, [plan_id], now, by=by)

    async def _start_children(
        self,
        conn: AsyncConnection,
        plan_id: str,
        step_idx: int,
        limit: int,
        max_failed: int | None,
        now: float,
        by: str,
    ) -> None:
        """Start planned children up to ``limit`` running; none once ``max_failed`` have
        failed, counted now: a child may have failed since its parent's run counted."""
        counts = await self._sub_plan_counts(conn, plan_id, step_idx)
        room = limit - counts.running
        if room <= 0 or counts.planned == 0:
            return
        if max_failed is not None and counts.failed >= max_failed:
            return
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
            return
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
        await self._settle(conn, chosen, now, by=by)

    async def _cancel_children(
        self,
        conn: AsyncConnection,
        plan_id: str,
        step_idx: int | None,
        now: float,
        by: str,
        *,
        include_paused: bool,
    ) -> None:
        """Cancel a step's child plans (every step's if None): those not started at once,
        running ones by the same rules as an operator's cancel, paused ones only if asked."""
        states = [PlanState.PLANNED, PlanState.RUNNING]
        if include_paused:
            states.append(PlanState.PAUSED)
        ids = await self._child_ids(conn, plan_id, states, step_idx)
        if not ids:
            return
        await self._lock_plans(conn, ids)
        cancellable = _cancellable_actions()
        for child in ids:
            await self._cancel(conn, child, by, now, cancellable)

    async def register_executor(self, executor_id: str) -> None:
        now = time.time()
        async with self._write() as conn:
            await conn.execute(
                insert(executors).values(
                    id=executor_id,
                    host=socket.gethostname(),
                    pid=os.getpid(),
                    started_at=now,
                    heartbeat_at=now,
                )
            )

    async def heartbeat(self, executor_id: str) -> bool:
        """Beat; False if this executor was declared dead meanwhile (it must stop)."""
        async with self._write() as conn:
            res = await conn.execute(
                update(executors)
                .where(executors.c.id == executor_id)
                .values(heartbeat_at=time.time())
            )
            return bool(res.rowcount)

    async def unregister_executor(self, executor_id: str) -> None:
        await self._retrying(self._release_executors, [executor_id], "executor stopped")

    async def release_dead_executors(self, timeout: float, by: str) -> list[str]:
        """Find executors that stopped beating (or whose local pid is gone) and release
        what they held. Returns their ids."""
        now = time.time()
        host = socket.gethostname()
        async with self._read() as conn:
            rows = (await conn.execute(select(executors))).all()
        dead = [
            r.id
            for r in rows
            if r.heartbeat_at < now - timeout or (r.host == host and not _pid_alive(r.pid))
        ]
        if dead:
            await self._retrying(self._release_executors, dead, by)
        return dead

    async def _release_executors(self, conn: AsyncConnection, ids: list[str], by: str) -> None:
        now = time.time()
        held = (
            (
                await conn.execute(
                    select(steps.c.plan_id).where(steps.c.claimed_by.in_(ids)).distinct()
                )
            )
            .scalars()
            .all()
        )
        plan_ids = sorted(set(held))
        await self._lock_plans(conn, plan_ids)
        rows = (
            await conn.execute(
                select(
                    steps.c.plan_id,
                    steps.c.idx,
                    steps.c.idempotent,
                    steps.c.claimed_from,
                    steps.c.claimed_by,
                ).where(steps.c.claimed_by.in_(ids), steps.c.state == StepState.RUNNING.value)
            )
        ).all()
        for r in rows:
            if r.idempotent:
                back = StepState(r.claimed_from or StepState.PENDING.value)
                values: dict[str, Any] = {"state": back.value, "ready_at": now}
            else:
                message = ABNORMAL_TERMINATION.format(executor=r.claimed_by)
                values = {
                    "state": StepState.ERROR.value,
                    "ready_at": None,
                    "ended_at": now,
                    "error": dumps({"type": "AbnormalTermination", "message": message}),
                }
                await self._history(
                    conn, r.plan_id, "abnormal termination", f"step {r.idx}", by, now
                )
            await conn.execute(
                update(steps)
                .where(steps.c.plan_id == r.plan_id, steps.c.idx == r.idx)
                .values(claimed_by=None, **values)
            )
        await conn.execute(
            update(plans).where(plans.c.claimed_by.in_(ids)).values(claimed_by=None, wake_at=now)
        )
        await conn.execute(delete(executors).where(executors.c.id.in_(ids)))
        await self._release_outbox_claims(conn, now)
        await self._notify(conn)
        await self._settle(conn, plan_ids, now, by=by)

    async def delete_finished_plans(self, older_than: float) -> int:
        """Delete stopped top-level plans (and their children) that ended before a time."""
        async with self._write() as conn:
            old = (
                (
                    await conn.execute(
                        select(plans.c.id).where(
                            plans.c.state == PlanState.STOPPED.value,
                            plans.c.ended_at < older_than,
                            plans.c.parent_plan_id.is_(None),
                        )
                    )
                )
                .scalars()
                .all()
            )
            ids = list(old)
            frontier = ids
            while frontier:
                frontier = list(
                    (
                        await conn.execute(
                            select(plans.c.id).where(plans.c.parent_plan_id.in_(frontier))
                        )
                    )
                    .scalars()
                    .all()
                )
                ids.extend(frontier)
            for table in (events, history, outbox, steps):
                for chunk in chunks(ids, 500):
                    await conn.execute(delete(table).where(table.c.plan_id.in_(chunk)))
            for chunk in chunks(ids, 500):
                await conn.execute(delete(plans).where(plans.c.id.in_(chunk)))
            return len(old)


@dataclass(frozen=True)
class _Finished:
    """A step that finished (success or skipped) with what depends on it."""

    plan_id: str
    idx: int
    skipped: bool
    dependents: tuple[int, ...]
    ref_dependents: tuple[int, ...]

    @classmethod
    def skipped_row(cls, row: Any) -> _Finished:
        return cls(
            row.plan_id,
            row.idx,
            True,
            tuple(loads(row.dependents)),
            tuple(loads(row.ref_dependents)),
        )


@dataclass(frozen=True)
class _PlanChange:
    plan_id: str
    old: PlanState
    new: PlanState
    result: PlanResult
    parent_plan_id: str | None
    parent_step_id: int | None
    detail: str | None = None


def _cancellable_actions() -> frozenset[str]:
    from mcoflow.engine.action import _REGISTRY

    return frozenset(name for name, cls in _REGISTRY.items() if cls.cancellable)


def _cancel_key(plan_id: str, step_idx: int) -> str:
    return f"cancel:{plan_id}:{step_idx}"


def _placeholder(plan_id: str) -> dict[str, Any]:
    return {"id": plan_id, "action": "", "label": "", "args": "{}", "created_at": time.time()}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
