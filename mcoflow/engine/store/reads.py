"""The store's reads: plans, steps, history, events and executors for the console,
the CLI and the executor's loops. Nothing here writes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from mcoflow.engine.action import EventKind
from mcoflow.engine.records import (
    EngineStats,
    ExecutorInfo,
    HistoryEntry,
    Plan,
    Step,
    SubPlanCounts,
)
from mcoflow.engine.schema import events, executors, history, outbox, plans, steps
from mcoflow.engine.states import PlanResult, PlanState, StepState
from mcoflow.engine.store.base import PlanNotFound, StoreBase, loads


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


class ReadQueries(StoreBase):
    """Queries that only read."""

    async def get_plan(self, plan_id: str) -> Plan | None:
        async with self._read() as conn:
            row = (await conn.execute(select(plans).where(plans.c.id == plan_id))).first()
            if row is None:
                return None
            progress = await self._progress(conn, [plan_id])
        return plan_from_row(row, progress.get(plan_id))

    async def plan_ids_starting(self, prefix: str, limit: int) -> list[str]:
        """Up to ``limit`` ids of plans that start with ``prefix``, in id order."""
        async with self._read() as conn:
            exact = await conn.execute(select(plans.c.id).where(plans.c.id == prefix))
            if exact.first() is not None:
                return [prefix]
            pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = (
                select(plans.c.id)
                .where(plans.c.id.like(pattern + "%", escape="\\"))
                .order_by(plans.c.id)
                .limit(limit)
            )
            ids = list((await conn.execute(query)).scalars())
        # SQLite's LIKE ignores case; ids are matched as written, on either database
        return [i for i in ids if i.startswith(prefix)]

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
        return Page([plan_from_row(r, progress.get(r.id)) for r in rows], total, offset, limit)

    async def _progress(self, conn: AsyncConnection, plan_ids: list[str]) -> dict[str, float]:
        if not plan_ids:
            return {}
        rows = await conn.execute(
            select(
                steps.c.plan_id,
                func.sum(steps.c.progress * steps.c.weight),
                func.sum(steps.c.weight),
                func.avg(steps.c.progress),
            )
            .where(self._among(steps.c.plan_id, plan_ids), steps.c.has_run)
            .group_by(steps.c.plan_id)
        )
        # weightless steps alone (a discovery on its own): their plain mean
        return {
            pid: (done or 0.0) / weight if weight else float(mean or 0.0)
            for pid, done, weight, mean in rows
        }

    async def get_steps(self, plan_id: str) -> list[Step]:
        async with self._read() as conn:
            rows = await conn.execute(
                select(steps).where(steps.c.plan_id == plan_id).order_by(steps.c.idx)
            )
            return [step_from_row(r) for r in rows]

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
            return [dict(r._mapping) | {"payload": loads(r.payload)} for r in rows]

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

    async def next_wake(self) -> float | None:
        """Earliest time a step becomes due (for the executor's sleep)."""
        async with self._read() as conn:
            return (await conn.execute(select(func.min(steps.c.ready_at)))).scalar()  # type: ignore[no-any-return]

    async def next_plan_wake(self) -> float | None:
        """Earliest time a plan needs an executor itself (delayed start, finalize)."""
        async with self._read() as conn:
            return (await conn.execute(select(func.min(plans.c.wake_at)))).scalar()  # type: ignore[no-any-return]

    async def finalize_steps(self, plan_id: str) -> list[Step]:
        async with self._read() as conn:
            rows = await conn.execute(
                select(steps)
                .where(steps.c.plan_id == plan_id, steps.c.has_finalize)
                .order_by(steps.c.idx)
            )
            return [step_from_row(r) for r in rows]

    async def list_executors(self) -> list[ExecutorInfo]:
        async with self._read() as conn:
            return await self._executors(conn)

    async def _executors(self, conn: AsyncConnection) -> list[ExecutorInfo]:
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
            ExecutorInfo(r.id, r.host, r.pid, r.started_at, r.heartbeat_at, claimed.get(r.id, 0))
            for r in rows
        ]

    async def engine_stats(self) -> EngineStats:
        """One read of the totals monitoring shows: a handful of grouped counts (their
        cost grows with the tables; ``mcoflow clean`` keeps those bounded)."""
        async with self._read() as conn:
            plan_counts = await conn.execute(
                select(plans.c.state, plans.c.result, func.count()).group_by(
                    plans.c.state, plans.c.result
                )
            )
            step_counts = await conn.execute(
                select(steps.c.state, func.count()).group_by(steps.c.state)
            )
            waiting = await conn.scalar(
                select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
            )
            event_counts = await conn.execute(
                select(events.c.kind, func.count()).group_by(events.c.kind)
            )
            timeouts = await conn.scalar(
                select(func.count())
                .select_from(events)
                .where(events.c.kind == EventKind.TIMEOUT.value)
                .where(events.c.consumed_at.is_not(None))
            )
            durations = await conn.execute(
                select(
                    steps.c.action,
                    func.count(),
                    func.coalesce(func.sum(steps.c.ended_at - steps.c.started_at), 0.0),
                )
                .where(steps.c.ended_at.is_not(None), steps.c.started_at.is_not(None))
                .group_by(steps.c.action)
            )
            return EngineStats(
                plans={(state, result): n for state, result, n in plan_counts},
                steps={state: n for state, n in step_counts},
                outbox_waiting=waiting or 0,
                events={kind: n for kind, n in event_counts},
                timeouts=timeouts or 0,
                step_seconds={action: (n, float(total)) for action, n, total in durations},
                executors=await self._executors(conn),
            )

    async def outbox_messages(self, plan_id: str | None = None) -> list[dict[str, Any]]:
        query = select(outbox).order_by(outbox.c.id)
        if plan_id is not None:
            query = query.where(outbox.c.plan_id == plan_id)
        async with self._read() as conn:
            return [
                dict(r._mapping) | {"message": loads(r.message)} for r in await conn.execute(query)
            ]

    async def _plan_row(self, conn: AsyncConnection, plan_id: str) -> Any:
        row = (await conn.execute(select(plans).where(plans.c.id == plan_id))).first()
        if row is None:
            raise PlanNotFound(f"no plan {plan_id}")
        return row


def plan_from_row(row: Any, progress: float | None) -> Plan:
    live = row.state != PlanState.STOPPED
    return Plan(
        id=row.id,
        action=row.action,
        label=row.label,
        args=loads(row.args) or {},
        state=PlanState(row.state),
        result=PlanResult(row.result),
        flow=loads(row.flow),
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


def step_from_row(row: Any) -> Step:
    return Step(
        plan_id=row.plan_id,
        idx=row.idx,
        parent=row.parent,
        action=row.action,
        state=StepState(row.state),
        input=loads(row.input),
        output=loads(row.output),
        data=loads(row.data),
        error=loads(row.error),
        has_run=bool(row.has_run),
        has_finalize=bool(row.has_finalize),
        idempotent=bool(row.idempotent),
        rescue=row.rescue,
        weight=row.weight,
        progress=row.progress,
        pending_deps=row.pending_deps,
        dependents=tuple(loads(row.dependents)),
        ref_dependents=tuple(loads(row.ref_dependents)),
        claimed_by=row.claimed_by,
        attempts=row.attempts,
        started_at=row.started_at,
        ended_at=row.ended_at,
        run_seconds=row.run_seconds,
    )
