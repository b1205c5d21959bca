"""Every query of the engine, for SQLite and PostgreSQL, on SQLAlchemy 2 Core.

The database is the single source of truth. Invariant kept by every write here:
``steps.ready_at`` is set exactly when a step can be claimed. Writes that decide a
plan's fate lock the plan row first, so two executors never settle one plan from
stale views. (Longer than most modules on purpose: the issue asks for one place for SQL.)
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ARRAY,
    and_,
    any_,
    bindparam,
    case,
    cast,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.elements import ColumnElement, TextClause

from mcoflow.engine.action import Event, EventKind, registered_action
from mcoflow.engine.flow import referenced_steps
from mcoflow.engine.planner import NewPlan
from mcoflow.engine.records import (
    ClaimedStep,
    ExecutorInfo,
    HistoryEntry,
    Plan,
    Step,
    StepOutcome,
    SubPlanCounts,
)
from mcoflow.engine.schema import events, executors, history, outbox, plans, steps
from mcoflow.engine.states import (
    PlanResult,
    PlanState,
    StepState,
    check_plan_transition,
    check_step_transition,
    plan_result,
)

WAKE_CHANNEL = "mcoflow_wake"
log = logging.getLogger("mcoflow.store")
ABNORMAL_TERMINATION = "abnormal termination: its executor {executor} stopped while it ran"


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _loads(value: str | None) -> Any:
    return None if value is None else json.loads(value)


def normalize_url(url: str) -> URL:
    """Accept plain ``sqlite:///file`` / ``postgresql://`` URLs; pick the async drivers."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg")
    raise ValueError(f"database url: unsupported database {backend!r} (use sqlite or postgresql)")


@dataclass(frozen=True)
class PlanFilter:
    state: PlanState | None = None
    result: PlanResult | None = None
    action: str | None = None
    label: str | None = None
    parent_plan_id: str | None = None
    top_level_only: bool = False


@dataclass(frozen=True)
class Page:
    items: list[Plan]
    total: int
    offset: int
    limit: int


class Store:
    """The engine's port to the database; one instance per process."""

    def __init__(self, url: str, *, pool_size: int = 5) -> None:
        self.url = normalize_url(url)
        # counts writes that made a plan due for its finalize phase: an executor that
        # sees it grow across its own commit wakes its plan loop (else it just polls)
        self.plan_work_marks = 0
        self.dialect = self.url.get_backend_name()
        kwargs: dict[str, Any] = {}
        if self.dialect == "postgresql":
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        self._write_lock: asyncio.Lock | None = None
        if self.dialect == "sqlite":
            _configure_sqlite(self.engine)
            self._write_lock = asyncio.Lock()

    @property
    def is_postgresql(self) -> bool:
        return self.dialect == "postgresql"

    def _among(self, column: ColumnElement[Any], values: Iterable[Any]) -> Any:
        return _among(column, values, self.is_postgresql)

    def _pairs_among(
        self, first: ColumnElement[Any], second: ColumnElement[Any], pairs: Iterable[Any]
    ) -> Any:
        return _pairs_among(first, second, pairs, self.is_postgresql)

    async def _update_rows(
        self,
        conn: AsyncConnection,
        rows: list[dict[str, Any]],
        postgresql: TextClause,
        portable: Executable,
    ) -> None:
        """Per-row UPDATEs of ``rows``: on PostgreSQL one ``UPDATE … FROM unnest(…)`` with
        a list per column, elsewhere an executemany of the same bound names."""
        if self.is_postgresql:
            await conn.execute(postgresql, _columns(rows))
        else:
            await conn.execute(portable, rows)

    async def close(self) -> None:
        await self.engine.dispose()

    async def upgrade(self) -> None:
        """Create or upgrade the schema with Alembic (in a thread: Alembic is sync)."""
        from mcoflow.engine.migrate import upgrade

        await asyncio.to_thread(upgrade, self.url)

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction. SQLite has one writer at a time: queue this process's
        writers here rather than in SQLite's sleeping busy handler."""
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock, self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            await conn.execution_options(sqlite_begin="DEFERRED")
            yield conn

    async def _notify(self, conn: AsyncConnection) -> None:
        """Wake idle executors elsewhere when this transaction commits (PostgreSQL)."""
        if self.is_postgresql:
            await conn.execute(text(f"NOTIFY {WAKE_CHANNEL}"))

    def listen_conninfo(self) -> str:
        return self.url.set(drivername="postgresql").render_as_string(hide_password=False)

    async def _retrying(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(conn, *args)`` in a write transaction, retrying deadlocks."""
        for attempt in range(8):
            try:
                async with self._write() as conn:
                    return await fn(conn, *args)
            except DBAPIError as exc:
                if not _is_retryable(exc) or attempt == 7:
                    raise
                await asyncio.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    # ---- plans ----------------------------------------------------------------------

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
            running = start and plan.state is PlanState.PLANNED
            state = PlanState.RUNNING if running else plan.state
            plan_rows.append(
                {
                    "id": plan.id,
                    "action": plan.action,
                    "label": plan.label,
                    "args": _dumps(plan.args),
                    "state": state.value,
                    "result": plan.result.value,
                    "flow": _dumps(plan.flow),
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
                        "input": _dumps(step.input),
                        "output": None,
                        "data": None,
                        "error": _dumps(step.error) if step.error else None,
                        "has_run": step.has_run,
                        "has_finalize": step.has_finalize,
                        "idempotent": step.idempotent,
                        "rescue": step.rescue,
                        "weight": step.weight,
                        "progress": 1.0 if step.state is StepState.SUCCESS else 0.0,
                        "pending_deps": step.pending_deps,
                        "dependents": _dumps(list(step.dependents)),
                        "ref_dependents": _dumps(list(step.ref_dependents)),
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
        if plan_rows:
            await conn.execute(insert(plans), plan_rows)
        if step_rows:
            await conn.execute(insert(steps), step_rows)
        if history_rows:
            await conn.execute(insert(history), history_rows)
        if start:
            await self._notify(conn)
        # a plan with nothing to run is done as soon as it starts
        empty = [p.id for p in new_plans if start and p.state is PlanState.PLANNED]
        if empty:
            await self._settle(conn, empty, now, by=by, only_if_idle=True)

    async def get_plan(self, plan_id: str) -> Plan | None:
        async with self._read() as conn:
            row = (await conn.execute(select(plans).where(plans.c.id == plan_id))).first()
            if row is None:
                return None
            progress = await self._progress(conn, [plan_id])
        return _plan(row, progress.get(plan_id))

    async def list_plans(
        self,
        filters: PlanFilter | None = None,
        *,
        offset: int = 0,
        limit: int = 50,
        order: str = "-created_at",
    ) -> Page:
        f = filters or PlanFilter()
        conds: list[Any] = []
        if f.state:
            conds.append(plans.c.state == f.state.value)
        if f.result:
            conds.append(plans.c.result == f.result.value)
        if f.action:
            conds.append(plans.c.action == f.action)
        if f.label:
            conds.append(func.lower(plans.c.label).contains(f.label.lower(), autoescape=True))
        if f.parent_plan_id:
            conds.append(plans.c.parent_plan_id == f.parent_plan_id)
        elif f.top_level_only:
            conds.append(plans.c.parent_plan_id.is_(None))
        column_name = order.lstrip("-")
        if column_name not in {"created_at", "started_at", "ended_at", "label", "state"}:
            raise ValueError(f"order: cannot sort by {column_name!r}")
        column = plans.c[column_name]
        ordering = column.desc() if order.startswith("-") else column.asc()
        async with self._read() as conn:
            total = (
                await conn.execute(select(func.count()).select_from(plans).where(*conds))
            ).scalar_one()
            rows = (
                await conn.execute(
                    select(plans)
                    .where(*conds)
                    .order_by(ordering, plans.c.id)
                    .offset(offset)
                    .limit(limit)
                )
            ).all()
            progress = await self._progress(conn, [r.id for r in rows])
        return Page([_plan(r, progress.get(r.id)) for r in rows], total, offset, limit)

    async def _progress(self, conn: AsyncConnection, plan_ids: list[str]) -> dict[str, float]:
        if not plan_ids:
            return {}
        rows = await conn.execute(
            select(
                steps.c.plan_id,
                func.sum(steps.c.progress * steps.c.weight),
                func.sum(steps.c.weight),
            )
            .where(self._among(steps.c.plan_id, plan_ids), steps.c.has_run)
            .group_by(steps.c.plan_id)
        )
        return {pid: (done or 0.0) / weight if weight else 1.0 for pid, done, weight in rows}

    async def get_steps(self, plan_id: str) -> list[Step]:
        async with self._read() as conn:
            rows = await conn.execute(
                select(steps).where(steps.c.plan_id == plan_id).order_by(steps.c.idx)
            )
            return [_step(r) for r in rows]

    async def count_steps(self, plan_id: str) -> dict[StepState, int]:
        async with self._read() as conn:
            rows = await conn.execute(
                select(steps.c.state, func.count())
                .where(steps.c.plan_id == plan_id, steps.c.has_run)
                .group_by(steps.c.state)
            )
            return {StepState(state): n for state, n in rows}

    async def get_history(self, plan_id: str) -> list[HistoryEntry]:
        async with self._read() as conn:
            rows = await conn.execute(
                select(history.c.at, history.c.what, history.c.detail, history.c.by)
                .where(history.c.plan_id == plan_id)
                .order_by(history.c.at, history.c.id)
            )
            return [HistoryEntry(*r) for r in rows]

    async def get_events(self, plan_id: str) -> list[dict[str, Any]]:
        async with self._read() as conn:
            rows = await conn.execute(
                select(events).where(events.c.plan_id == plan_id).order_by(events.c.id)
            )
            return [dict(r._mapping) | {"payload": _loads(r.payload)} for r in rows]

    async def sub_plan_counts(self, plan_id: str, step_idx: int) -> SubPlanCounts:
        async with self._read() as conn:
            return await self._sub_plan_counts(conn, plan_id, step_idx)

    async def _sub_plan_counts(
        self, conn: AsyncConnection, plan_id: str, step_idx: int
    ) -> SubPlanCounts:
        rows = await conn.execute(
            select(plans.c.state, plans.c.result, func.count())
            .where(plans.c.parent_plan_id == plan_id, plans.c.parent_step_id == step_idx)
            .group_by(plans.c.state, plans.c.result)
        )
        c: Counter[str] = Counter()
        for state, result, n in rows:
            c["total"] += n
            if state == PlanState.PLANNED:
                c["planned"] += n
            elif state == PlanState.PAUSED:
                c["paused"] += n
            elif state == PlanState.STOPPED:
                c[result] += n
            else:
                c["running"] += n
        return SubPlanCounts(
            total=c["total"],
            planned=c["planned"],
            running=c["running"],
            paused=c["paused"],
            success=c["success"],
            warning=c["warning"],
            error=c["error"],
            cancelled=c["cancelled"] + c["pending"],
        )

    async def child_plans(self, plan_id: str) -> list[Plan]:
        page = await self.list_plans(
            PlanFilter(parent_plan_id=plan_id), limit=1_000_000, order="created_at"
        )
        return page.items

    # ---- claiming -------------------------------------------------------------------

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
                    Event(EventKind(ev.kind), _loads(ev.payload), ev.id)
                )
        inputs = {(r.plan_id, r.idx): _loads(r.input) for r in rows}
        wanted = {(pid, ref) for (pid, _), inp in inputs.items() for ref in referenced_steps(inp)}
        ref_outputs: dict[str, dict[int, Any]] = defaultdict(dict)
        if wanted:
            for pid, idx, out in await conn.execute(
                select(steps.c.plan_id, steps.c.idx, steps.c.output).where(
                    self._pairs_among(steps.c.plan_id, steps.c.idx, sorted(wanted))
                )
            ):
                ref_outputs[pid][idx] = _loads(out)
        return [
            ClaimedStep(
                plan_id=r.plan_id,
                idx=r.idx,
                action=r.action,
                input=inputs[(r.plan_id, r.idx)],
                output=_loads(r.output),
                data=_loads(r.data),
                claimed_from=StepState(r.claimed_from),
                attempts=r.attempts,
                events=tuple(due_events.get((r.plan_id, r.idx), ())),
                dependents=tuple(_loads(r.dependents)),
                ref_dependents=tuple(_loads(r.ref_dependents)),
                ref_outputs=ref_outputs.get(r.plan_id, {}),
            )
            for r in rows
        ]

    async def next_wake(self) -> float | None:
        """Earliest time a step becomes due (for the executor's sleep)."""
        async with self._read() as conn:
            return (await conn.execute(select(func.min(steps.c.ready_at)))).scalar()  # type: ignore[no-any-return]

    async def next_plan_wake(self) -> float | None:
        """Earliest time a plan needs an executor itself (delayed start, finalize)."""
        async with self._read() as conn:
            return (await conn.execute(select(func.min(plans.c.wake_at)))).scalar()  # type: ignore[no-any-return]

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

    # ---- outcomes -------------------------------------------------------------------

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
                select(steps.c.plan_id, steps.c.idx).where(
                    self._among(steps.c.plan_id, plan_ids), steps.c.claimed_by == by
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
                "b_output": _dumps(o.output) if o.output is not None else None,
                "b_data": _dumps(o.data) if o.data else None,
                "b_error": _dumps(o.error) if o.error else None,
                "b_progress": 1.0
                if o.state in (StepState.SUCCESS, StepState.SKIPPED)
                else o.progress,
                "b_ended": None if o.state is StepState.SUSPENDED else now,
                "b_seconds": o.run_seconds,
            }
            for o in outcomes
        ]
        await self._update_rows(conn, rows, _PG_WRITE_OUTCOMES, _WRITE_OUTCOMES)
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
                "payload": _dumps(e.payload),
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
                _PG_SUSPEND,
                _SUSPEND,
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
                "message": _dumps(msg),
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
                await self._start_children(conn, o.plan_id, o.idx, o.start_sub_plans, now, by)
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
            await conn.execute(_PG_RELEASE, {"now": now} | _columns(released))
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
                        error=_dumps(
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
        await self._update_rows(conn, rows, _PG_PLAN_STATES, _PLAN_STATES)
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
                    "payload": _dumps(
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
                    .values(error=_dumps({**error, "phase": "finalize"}))
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

    async def finalize_steps(self, plan_id: str) -> list[Step]:
        async with self._read() as conn:
            rows = await conn.execute(
                select(steps)
                .where(steps.c.plan_id == plan_id, steps.c.has_finalize)
                .order_by(steps.c.idx)
            )
            return [_step(r) for r in rows]

    # ---- events ---------------------------------------------------------------------

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
                    "payload": _dumps(payload),
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
        await self._update_rows(conn, rows, _PG_WAKE, _WAKE)

    async def _deliver_cancels(
        self, conn: AsyncConnection, targets: list[tuple[str, int]], now: float
    ) -> None:
        """One Cancel event per step, however often cancel is asked (the dedupe key)."""
        rows = [
            {
                "plan_id": plan_id,
                "step_idx": idx,
                "kind": EventKind.CANCEL.value,
                "payload": _dumps({}),
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
            _dialect_insert(self.is_postgresql)(events)
            .on_conflict_do_nothing()
            .returning(events.c.dedupe_key),
            rows,
        )
        return {key for key in result.scalars() if key is not None}

    # ---- operator actions -----------------------------------------------------------

    async def resume(self, plan_id: str, by: str) -> Plan:
        async def work(conn: AsyncConnection) -> None:
            now = time.time()
            await self._lock_plans(conn, [plan_id])
            row = await self._plan_row(conn, plan_id)
            state = PlanState(row.state)
            if state is not PlanState.PAUSED:
                raise InvalidOperation(
                    f"plan {plan_id} is {state.value}, only a paused plan can be resumed"
                )
            check_plan_transition(state, PlanState.RUNNING)
            await conn.execute(
                update(steps)
                .where(steps.c.plan_id == plan_id, steps.c.state == StepState.ERROR.value)
                .values(ready_at=now, error=None)
            )
            values: dict[str, Any] = {
                "state": PlanState.RUNNING.value,
                "result": PlanResult.PENDING.value,
            }
            if row.needs_finalize:
                values.update(wake_at=now, error=None)
            await conn.execute(update(plans).where(plans.c.id == plan_id).values(**values))
            await self._history(conn, plan_id, "resumed", None, by, now)
            await self._notify(conn)
            await self._settle(conn, [plan_id], now, by=by)

        await self._retrying(work)
        plan = await self.get_plan(plan_id)
        assert plan is not None
        return plan

    async def skip(self, plan_id: str, step_idx: int, by: str) -> Plan:
        async def work(conn: AsyncConnection) -> None:
            now = time.time()
            await self._lock_plans(conn, [plan_id])
            plan_row = await self._plan_row(conn, plan_id)
            step_row = (
                await conn.execute(
                    select(steps.c.state).where(steps.c.plan_id == plan_id, steps.c.idx == step_idx)
                )
            ).first()
            if step_row is None:
                raise InvalidOperation(f"plan {plan_id} has no step {step_idx}")
            state = StepState(step_row.state)
            if state is not StepState.ERROR:
                raise InvalidOperation(
                    f"step {step_idx} is {state.value}; only a failed step can be skipped"
                )
            check_step_transition(state, StepState.SKIPPING)
            check_step_transition(StepState.SKIPPING, StepState.SKIPPED)
            row = (
                await conn.execute(
                    update(steps)
                    .where(steps.c.plan_id == plan_id, steps.c.idx == step_idx)
                    .values(
                        state=StepState.SKIPPED.value, ready_at=None, progress=1.0, ended_at=now
                    )
                    .returning(
                        steps.c.plan_id, steps.c.idx, steps.c.dependents, steps.c.ref_dependents
                    )
                )
            ).one()
            await self._history(conn, plan_id, "step skipped", f"step {step_idx}", by, now)
            await self._notify(conn)
            await self._release_dependents(conn, [_Finished.skipped_row(row)], now)
            if plan_row.state == PlanState.PAUSED:
                await conn.execute(
                    update(plans)
                    .where(plans.c.id == plan_id)
                    .values(state=PlanState.RUNNING.value, result=PlanResult.PENDING.value)
                )
                await self._history(conn, plan_id, "running", "after a skip", by, now)
            await self._settle(conn, [plan_id], now, by=by)

        await self._retrying(work)
        plan = await self.get_plan(plan_id)
        assert plan is not None
        return plan

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
        await self._settle(conn, [plan_id], now, by=by)

    async def _plan_row(self, conn: AsyncConnection, plan_id: str) -> Any:
        row = (await conn.execute(select(plans).where(plans.c.id == plan_id))).first()
        if row is None:
            raise PlanNotFound(f"no plan {plan_id}")
        return row

    # ---- sub-plans ------------------------------------------------------------------

    async def _start_children(
        self,
        conn: AsyncConnection,
        plan_id: str,
        step_idx: int,
        limit: int,
        now: float,
        by: str,
    ) -> None:
        counts = await self._sub_plan_counts(conn, plan_id, step_idx)
        room = limit - counts.running
        if room <= 0 or counts.planned == 0:
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
        step_idx: int,
        now: float,
        by: str,
        *,
        include_paused: bool,
    ) -> None:
        """Cancel a step's child plans: those not started at once, running ones by the
        same rules as an operator's cancel, paused ones only if asked."""
        states = [PlanState.PLANNED.value, PlanState.RUNNING.value]
        if include_paused:
            states.append(PlanState.PAUSED.value)
        rows = (
            await conn.execute(
                select(plans.c.id, plans.c.state)
                .where(
                    plans.c.parent_plan_id == plan_id,
                    plans.c.parent_step_id == step_idx,
                    plans.c.state.in_(states),
                    plans.c.cancel_requested.is_(False),
                )
                .order_by(plans.c.id)
            )
        ).all()
        if not rows:
            return
        await self._lock_plans(conn, [r.id for r in rows])
        cancellable = _cancellable_actions()
        for r in rows:
            await self._cancel(conn, r.id, by, now, cancellable)

    # ---- executors ------------------------------------------------------------------

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
                    "error": _dumps({"type": "AbnormalTermination", "message": message}),
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

    async def list_executors(self) -> list[ExecutorInfo]:
        async with self._read() as conn:
            claimed: dict[str, int] = dict(
                (
                    await conn.execute(
                        select(steps.c.claimed_by, func.count())
                        .where(steps.c.claimed_by.is_not(None))
                        .group_by(steps.c.claimed_by)
                    )
                ).all()
            )
            rows = await conn.execute(select(executors).order_by(executors.c.started_at))
            return [
                ExecutorInfo(
                    r.id, r.host, r.pid, r.started_at, r.heartbeat_at, claimed.get(r.id, 0)
                )
                for r in rows
            ]

    # ---- outbox -----------------------------------------------------------------------

    async def claim_unpublished(
        self, limit: int, now: float, lease: float
    ) -> list[tuple[int, str, dict[str, Any]]]:
        """Take up to ``limit`` messages due for publishing, oldest first, and hold them for
        ``lease`` seconds (``retry_at``): executors sharing the database then publish each
        message once. What an executor held when it stopped goes out again when it is found
        dead, when an executor starts, or at the latest when the lease ends."""

        async def work(conn: AsyncConnection) -> list[tuple[int, str, dict[str, Any]]]:
            due = (
                select(outbox.c.id)
                .where(
                    outbox.c.published_at.is_(None),
                    outbox.c.created_at <= now,
                    or_(outbox.c.retry_at.is_(None), outbox.c.retry_at <= now),
                )
                .order_by(outbox.c.created_at, outbox.c.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            rows = await conn.execute(
                update(outbox)
                .where(outbox.c.id.in_(due))
                .values(retry_at=now + lease)
                .returning(outbox.c.id, outbox.c.destination, outbox.c.message, outbox.c.created_at)
            )
            ordered = sorted(rows, key=lambda r: (r.created_at, r.id))
            return [(r.id, r.destination, _loads(r.message)) for r in ordered]

        return await self._retrying(work)  # type: ignore[no-any-return]

    async def release_outbox_claims(self) -> None:
        """Let every claimed, unpublished outbox batch go out again now (an executor that
        starts: one that stopped may have held some)."""
        async with self._write() as conn:
            await self._release_outbox_claims(conn, time.time())

    async def _release_outbox_claims(self, conn: AsyncConnection, now: float) -> None:
        # Claims are not tagged with their executor: a live executor's batch in flight is
        # released too and may go out twice; receivers drop duplicates (request id, sender).
        await conn.execute(
            update(outbox)
            .where(outbox.c.published_at.is_(None), outbox.c.retry_at > now)
            .values(retry_at=None)
        )

    async def republish_waiting(self, destination: str) -> int:
        """Publish again the newest ``destination`` message of every suspended step: the
        broker lost what it held (it restarted) and these steps still wait for an answer.
        Returns how many go out again; receivers drop the duplicates among them."""
        newest = (
            select(func.max(outbox.c.id))
            .select_from(
                outbox.join(
                    steps,
                    and_(steps.c.plan_id == outbox.c.plan_id, steps.c.idx == outbox.c.step_idx),
                )
            )
            .where(
                outbox.c.destination == destination,
                steps.c.state == StepState.SUSPENDED.value,
            )
            .group_by(outbox.c.plan_id, outbox.c.step_idx)
        )
        async with self._write() as conn:
            result = await conn.execute(
                update(outbox)
                .where(outbox.c.id.in_(newest), outbox.c.published_at.is_not(None))
                .values(published_at=None, retry_at=None)
            )
        return int(result.rowcount)

    async def mark_published(self, ids: Sequence[int]) -> None:
        if ids:
            async with self._write() as conn:
                await conn.execute(
                    update(outbox)
                    .where(self._among(outbox.c.id, ids))
                    .values(published_at=time.time(), attempts=outbox.c.attempts + 1)
                )

    async def mark_publish_failed(self, ids: Sequence[int], now: float) -> None:
        """Try these again later, waiting longer after each failure (1 s up to 5 min), so
        a destination that keeps failing does not hold up the messages behind it."""
        if ids:
            async with self._write() as conn:
                await conn.execute(
                    update(outbox)
                    .where(outbox.c.id.in_(ids))
                    .values(
                        attempts=outbox.c.attempts + 1,
                        retry_at=now
                        + case(
                            (outbox.c.attempts < 1, 1.0),
                            (outbox.c.attempts < 3, 5.0),
                            (outbox.c.attempts < 6, 30.0),
                            else_=300.0,
                        ),
                    )
                )

    async def outbox_messages(self, plan_id: str | None = None) -> list[dict[str, Any]]:
        query = select(outbox).order_by(outbox.c.id)
        if plan_id is not None:
            query = query.where(outbox.c.plan_id == plan_id)
        async with self._read() as conn:
            return [
                dict(r._mapping) | {"message": _loads(r.message)} for r in await conn.execute(query)
            ]

    # ---- retention --------------------------------------------------------------------

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
                for chunk in _chunks(ids, 500):
                    await conn.execute(delete(table).where(table.c.plan_id.in_(chunk)))
            for chunk in _chunks(ids, 500):
                await conn.execute(delete(plans).where(plans.c.id.in_(chunk)))
            return len(old)


# On PostgreSQL one UPDATE … FROM unnest(arrays) replaces hundreds of single-row UPDATEs
# (an executemany): one statement, one plan, one round trip per batch.
_PG_WRITE_OUTCOMES = text(
    """
    UPDATE steps AS s SET state = v.state, output = v.output, data = v.data, error = v.error,
        progress = v.progress, claimed_by = NULL, ended_at = v.ended,
        run_seconds = s.run_seconds + v.seconds
    FROM unnest(CAST(:b_plan AS varchar[]), CAST(:b_idx AS int[]), CAST(:b_state AS varchar[]),
                CAST(:b_output AS text[]), CAST(:b_data AS text[]), CAST(:b_error AS text[]),
                CAST(:b_progress AS float8[]), CAST(:b_ended AS float8[]),
                CAST(:b_seconds AS float8[]))
        AS v(plan_id, idx, state, output, data, error, progress, ended, seconds)
    WHERE s.plan_id = v.plan_id AND s.idx = v.idx
    """
)
_PG_RELEASE = text(
    """
    UPDATE steps AS s SET pending_deps = s.pending_deps - v.n,
        ready_at = CASE WHEN s.pending_deps - v.n <= 0 AND s.state = 'pending'
                        THEN CAST(:now AS float8) ELSE s.ready_at END
    FROM unnest(CAST(:b_plan AS varchar[]), CAST(:b_idx AS int[]), CAST(:b_n AS int[]))
        AS v(plan_id, idx, n)
    WHERE s.plan_id = v.plan_id AND s.idx = v.idx
    """
)


_PG_WAKE = text(
    """
    UPDATE steps AS s SET ready_at = CASE
            WHEN s.ready_at IS NULL OR s.ready_at > v.due THEN v.due ELSE s.ready_at END
    FROM unnest(CAST(:b_plan AS varchar[]), CAST(:b_idx AS int[]), CAST(:b_due AS float8[]))
        AS v(plan_id, idx, due)
    WHERE s.plan_id = v.plan_id AND s.idx = v.idx AND s.state = 'suspended'
    """
)


_PG_SUSPEND = text(
    """
    UPDATE steps AS s SET ready_at = (
            SELECT min(e.due_at) FROM events AS e
            WHERE e.plan_id = v.plan_id AND e.step_idx = v.idx AND e.consumed_at IS NULL)
    FROM unnest(CAST(:b_plan AS varchar[]), CAST(:b_idx AS int[])) AS v(plan_id, idx)
    WHERE s.plan_id = v.plan_id AND s.idx = v.idx
    """
)
_PG_PLAN_STATES = text(
    """
    UPDATE plans AS p SET state = v.state, result = v.result, ended_at = v.ended,
        progress = v.progress
    FROM unnest(CAST(:b_id AS varchar[]), CAST(:b_state AS varchar[]),
                CAST(:b_result AS varchar[]), CAST(:b_ended AS float8[]),
                CAST(:b_progress AS float8[]))
        AS v(id, state, result, ended, progress)
    WHERE p.id = v.id
    """
)


# The same updates elsewhere (SQLite), one row per execution of an executemany.
_WRITE_OUTCOMES = (
    update(steps)
    .where(steps.c.plan_id == bindparam("b_plan"), steps.c.idx == bindparam("b_idx"))
    .values(
        state=bindparam("b_state"),
        output=bindparam("b_output"),
        data=bindparam("b_data"),
        error=bindparam("b_error"),
        progress=bindparam("b_progress"),
        claimed_by=None,
        ended_at=bindparam("b_ended"),
        run_seconds=steps.c.run_seconds + bindparam("b_seconds"),
    )
)
_WAKE = (
    update(steps)
    .where(
        steps.c.plan_id == bindparam("b_plan"),
        steps.c.idx == bindparam("b_idx"),
        steps.c.state == StepState.SUSPENDED.value,
    )
    .values(
        ready_at=case(
            (
                or_(steps.c.ready_at.is_(None), steps.c.ready_at > bindparam("b_due")),
                bindparam("b_due"),
            ),
            else_=steps.c.ready_at,
        )
    )
)
_SUSPEND = (
    update(steps)
    .where(steps.c.plan_id == bindparam("b_plan"), steps.c.idx == bindparam("b_idx"))
    .values(
        ready_at=select(func.min(events.c.due_at))
        .where(
            events.c.plan_id == bindparam("b_plan"),
            events.c.step_idx == bindparam("b_idx"),
            events.c.consumed_at.is_(None),
        )
        .scalar_subquery()
    )
)
_PLAN_STATES = (
    update(plans)
    .where(plans.c.id == bindparam("b_id"))
    .values(
        state=bindparam("b_state"),
        result=bindparam("b_result"),
        ended_at=bindparam("b_ended"),
        progress=bindparam("b_progress"),
    )
)


def _among(column: ColumnElement[Any], values: Iterable[Any], postgresql: bool) -> Any:
    """``column IN values``. On PostgreSQL one array parameter (``= ANY(…)``) instead of
    a placeholder per value: the statement's text is then the same whatever the batch
    size, so it is compiled and parsed once, not once per size."""
    values = list(values)
    if postgresql:
        array = ARRAY(column.type)
        return column == any_(cast(bindparam(None, values, type_=array), array))
    return column.in_(values)


def _pairs_among(
    first: ColumnElement[Any],
    second: ColumnElement[Any],
    pairs: Iterable[tuple[Any, Any]],
    postgresql: bool,
) -> Any:
    """``(first, second) IN pairs``; on PostgreSQL two array parameters, unnested."""
    pairs = list(pairs)
    if postgresql:
        arrays = [ARRAY(first.type), ARRAY(second.type)]
        columns = [
            func.unnest(cast(bindparam(None, [pair[n] for pair in pairs], type_=a), a))
            for n, a in enumerate(arrays)
        ]
        return tuple_(first, second).in_(select(*columns))
    return tuple_(first, second).in_(pairs)


def _columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Rows to one list per column, for the unnest() statements."""
    return {key: [row[key] for row in rows] for key in rows[0]} if rows else {}


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
            tuple(_loads(row.dependents)),
            tuple(_loads(row.ref_dependents)),
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


class InvalidOperation(RuntimeError):
    """An operator action that does not apply to the plan's current state."""


class PlanNotFound(LookupError):
    pass


def _chunks(items: list[str], n: int) -> Iterable[list[str]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def _dialect_insert(postgresql: bool) -> Any:
    """INSERT with the dialect's ON CONFLICT DO NOTHING (both dialects spell it alike)."""
    if postgresql:
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


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


def is_transient_error(exc: BaseException) -> bool:
    """True when ``exc`` says the database could not be reached or the transaction lost a
    race: trying the same write again later may work. Anything else will fail again."""
    if isinstance(exc, (OSError, TimeoutError)):
        return True
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    return isinstance(exc, DBAPIError) and (exc.connection_invalidated or _is_retryable(exc))


def _is_retryable(exc: DBAPIError) -> bool:
    if isinstance(exc, IntegrityError):
        return False
    code = getattr(exc.orig, "sqlstate", None)
    if code in {"40P01", "40001"}:  # deadlock detected, serialization failure
        return True
    return "database is locked" in str(exc.orig)


def _plan(row: Any, progress: float | None) -> Plan:
    live = row.state != PlanState.STOPPED
    return Plan(
        id=row.id,
        action=row.action,
        label=row.label,
        args=_loads(row.args) or {},
        state=PlanState(row.state),
        result=PlanResult(row.result),
        flow=_loads(row.flow),
        error=row.error,
        parent_plan_id=row.parent_plan_id,
        parent_step_id=row.parent_step_id,
        created_at=row.created_at,
        started_at=row.started_at,
        ended_at=row.ended_at,
        start_at=row.start_at,
        start_before=row.start_before,
        progress=progress if (live and progress is not None) else row.progress,
        cancel_requested=bool(row.cancel_requested),
    )


def _step(row: Any) -> Step:
    return Step(
        plan_id=row.plan_id,
        idx=row.idx,
        parent=row.parent,
        action=row.action,
        state=StepState(row.state),
        input=_loads(row.input),
        output=_loads(row.output),
        data=_loads(row.data),
        error=_loads(row.error),
        has_run=bool(row.has_run),
        has_finalize=bool(row.has_finalize),
        idempotent=bool(row.idempotent),
        rescue=row.rescue,
        weight=row.weight,
        progress=row.progress,
        pending_deps=row.pending_deps,
        dependents=tuple(_loads(row.dependents)),
        ref_dependents=tuple(_loads(row.ref_dependents)),
        claimed_by=row.claimed_by,
        attempts=row.attempts,
        started_at=row.started_at,
        ended_at=row.ended_at,
        run_seconds=row.run_seconds,
    )


def _configure_sqlite(engine: AsyncEngine) -> None:
    """WAL, a busy timeout, and explicit BEGIN IMMEDIATE for writes: pysqlite's implicit
    transactions would otherwise upgrade read locks mid-transaction and deadlock."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")
