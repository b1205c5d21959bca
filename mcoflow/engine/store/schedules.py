"""Recurring jobs' schedules and the occurrences they fired.

An occurrence fires once however many executors look: the executor that fires it
advances the schedule's ``next_at`` only from the value it read (a compare-and-set on the
row, which PostgreSQL re-checks after waiting for a concurrent writer's commit), inserts
the occurrence's ``schedule_runs`` row (its key is the claim) and inserts the plan, all in
one transaction. Whoever loses the race changes nothing; a crash before the commit leaves
the occurrence due, one after it leaves the plan started and recorded.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from mcoflow.engine.planner import NewPlan
from mcoflow.engine.schema import plans, schedule_runs, schedules
from mcoflow.engine.states import PlanResult, PlanState
from mcoflow.engine.store.base import InvalidOperation, dumps, loads
from mcoflow.engine.store.plans import PlanWrites
from mcoflow.engine.store.statements import dialect_insert


class ScheduleState(enum.StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    ENDED = "ended"  # past its end time or its maximum of runs: never fires again


class ScheduleNotFound(LookupError):
    """No schedule of that name."""


class ScheduleExists(ValueError):
    """A schedule of that name exists already."""


@dataclass(frozen=True)
class ScheduleRun:
    """One occurrence fired: its plan, or why it started none; ``skipped`` earlier
    occurrences (missed while no executor ran) collapsed into it."""

    schedule_id: str
    occurrence_at: float
    at: float
    plan_id: str | None
    skipped: int
    error: str | None
    # the plan's, while it is kept (None once retention deleted it)
    plan_state: PlanState | None = None
    plan_result: PlanResult | None = None


@dataclass(frozen=True)
class NewSchedule:
    id: str
    name: str
    job: dict[str, Any]
    cron: str
    timezone: str
    end_at: float | None
    max_runs: int | None
    state: ScheduleState
    next_at: float | None
    created_at: float
    created_by: str


@dataclass(frozen=True)
class ScheduleRecord:
    id: str
    name: str
    job: dict[str, Any]
    cron: str
    timezone: str
    end_at: float | None
    max_runs: int | None
    state: ScheduleState
    next_at: float | None
    runs: int
    skipped: int
    last_at: float | None
    last_plan_id: str | None
    created_at: float
    created_by: str
    last_run: ScheduleRun | None = None


@dataclass(frozen=True)
class FiredOccurrence:
    """What firing one occurrence writes. ``due`` is the schedule's ``next_at`` as the
    executor read it: the write happens only if it is still that. ``ran``: the
    occurrence counts as a run (its plan started, or its job no longer planned); not
    when it was given up (its end time passed while no executor ran)."""

    schedule_id: str
    due: float
    occurrence_at: float
    skipped: int
    next_at: float | None
    state: ScheduleState
    plan: NewPlan | None
    error: str | None
    ran: bool
    by: str


class _Lost(Exception):
    """Another executor fired the occurrence first: roll back."""


class ScheduleQueries(PlanWrites):
    """Schedules: created, listed, paused, resumed, deleted, and their occurrences fired."""

    async def insert_schedule(self, new: NewSchedule) -> None:
        row = {**new.__dict__, "job": dumps(new.job), "state": new.state.value}
        try:
            async with self._write() as conn:
                await conn.execute(insert(schedules), [row])
        except IntegrityError:
            raise ScheduleExists(f"a schedule named {new.name!r} exists") from None

    async def list_schedules(self) -> list[ScheduleRecord]:
        """Every schedule by name, each with its last run."""
        async with self._read() as conn:
            rows = list(await conn.execute(select(schedules).order_by(schedules.c.name)))
            last = await self._runs_at(
                conn, [(r.id, r.last_at) for r in rows if r.last_at is not None]
            )
        return [_record(row, last.get((row.id, row.last_at))) for row in rows]

    async def get_schedule(self, name_or_id: str) -> ScheduleRecord:
        """The schedule of that name (or id); ScheduleNotFound if none."""
        async with self._read() as conn:
            query = select(schedules).where(schedules.c.name == name_or_id)
            row = (await conn.execute(query)).first()
            if row is None:
                query = select(schedules).where(schedules.c.id == name_or_id)
                row = (await conn.execute(query)).first()
            if row is None:
                raise ScheduleNotFound(f"no schedule named {name_or_id!r}")
            last = await self._runs_at(conn, [(row.id, row.last_at)] if row.last_at else [])
        return _record(row, last.get((row.id, row.last_at)))

    async def schedule_runs(self, schedule_id: str, *, limit: int = 20) -> list[ScheduleRun]:
        """A schedule's latest runs, newest first."""
        query = (
            _runs_query()
            .where(schedule_runs.c.schedule_id == schedule_id)
            .order_by(schedule_runs.c.occurrence_at.desc())
            .limit(limit)
        )
        async with self._read() as conn:
            return [_run(row) for row in await conn.execute(query)]

    async def _runs_at(
        self, conn: AsyncConnection, keys: Sequence[tuple[str, float]]
    ) -> dict[tuple[str, float], ScheduleRun]:
        if not keys:
            return {}
        key = (schedule_runs.c.schedule_id, schedule_runs.c.occurrence_at)
        rows = await conn.execute(_runs_query().where(self._pairs_among(*key, keys)))
        return {(r.schedule_id, r.occurrence_at): _run(r) for r in rows}

    async def change_schedule_state(
        self,
        schedule_id: str,
        *,
        was: ScheduleState,
        now: ScheduleState,
        next_at: float | None,
    ) -> None:
        """Move a schedule from state ``was`` to ``now`` with its next occurrence;
        InvalidOperation when it is not in state ``was`` (any more)."""
        stmt = (
            update(schedules)
            .where(schedules.c.id == schedule_id, schedules.c.state == was.value)
            .values(state=now.value, next_at=next_at)
        )
        async with self._write() as conn:
            changed = (await conn.execute(stmt)).rowcount
        if not changed:
            current = await self.get_schedule(schedule_id)
            raise InvalidOperation(f"schedule {current.name!r} is {current.state.value}")

    async def delete_schedule(self, schedule_id: str) -> None:
        """Delete a schedule and its runs' records (not the plans it started)."""
        async with self._write() as conn:
            await conn.execute(
                delete(schedule_runs).where(schedule_runs.c.schedule_id == schedule_id)
            )
            gone = await conn.execute(delete(schedules).where(schedules.c.id == schedule_id))
        if not gone.rowcount:
            raise ScheduleNotFound(f"no schedule with id {schedule_id!r}")

    async def due_schedules(self, now: float, limit: int = 100) -> list[ScheduleRecord]:
        """Active schedules whose next occurrence is not after ``now``, earliest first."""
        query = (
            select(schedules)
            .where(schedules.c.state == ScheduleState.ACTIVE.value, schedules.c.next_at <= now)
            .order_by(schedules.c.next_at)
            .limit(limit)
        )
        async with self._read() as conn:
            return [_record(row, None) for row in await conn.execute(query)]

    async def earliest_occurrence(self) -> float | None:
        """The earliest next occurrence of any active schedule."""
        query = select(func.min(schedules.c.next_at)).where(
            schedules.c.state == ScheduleState.ACTIVE.value
        )
        async with self._read() as conn:
            value = (await conn.execute(query)).scalar()
        return None if value is None else float(value)

    async def fire_occurrence(self, fired: FiredOccurrence) -> bool:
        """Advance the schedule, record the occurrence and insert its plan (started) in
        one transaction; False, with nothing written, when another executor fired it."""
        try:
            await self._retrying(self._fire, fired)
        except _Lost:
            return False
        return True

    async def _fire(self, conn: AsyncConnection, fired: FiredOccurrence) -> None:
        now = time.time()
        plan_id = fired.plan.id if fired.plan is not None else None
        advanced = await conn.execute(
            update(schedules)
            .where(
                schedules.c.id == fired.schedule_id,
                schedules.c.state == ScheduleState.ACTIVE.value,
                schedules.c.next_at == fired.due,
            )
            .values(
                next_at=fired.next_at,
                state=fired.state.value,
                runs=schedules.c.runs + (1 if fired.ran else 0),
                skipped=schedules.c.skipped + fired.skipped,
                last_at=fired.occurrence_at,
                last_plan_id=plan_id,
            )
        )
        if not advanced.rowcount:
            raise _Lost
        claim = (
            dialect_insert(self.is_postgresql)(schedule_runs)
            .values(
                schedule_id=fired.schedule_id,
                occurrence_at=fired.occurrence_at,
                plan_id=plan_id,
                skipped=fired.skipped,
                at=now,
                error=fired.error,
            )
            .on_conflict_do_nothing()
        )
        if not (await conn.execute(claim)).rowcount:
            raise _Lost
        if fired.plan is not None:
            await self._insert_plans(conn, [fired.plan], start=True, by=fired.by, now=now)


def _runs_query() -> Any:
    return select(
        schedule_runs,
        plans.c.state.label("plan_state"),
        plans.c.result.label("plan_result"),
    ).select_from(schedule_runs.outerjoin(plans, plans.c.id == schedule_runs.c.plan_id))


def _run(row: Any) -> ScheduleRun:
    return ScheduleRun(
        schedule_id=row.schedule_id,
        occurrence_at=row.occurrence_at,
        at=row.at,
        plan_id=row.plan_id,
        skipped=row.skipped,
        error=row.error,
        plan_state=PlanState(row.plan_state) if row.plan_state else None,
        plan_result=PlanResult(row.plan_result) if row.plan_result else None,
    )


def _record(row: Any, last_run: ScheduleRun | None) -> ScheduleRecord:
    return ScheduleRecord(
        id=row.id,
        name=row.name,
        job=loads(row.job),
        cron=row.cron,
        timezone=row.timezone,
        end_at=row.end_at,
        max_runs=row.max_runs,
        state=ScheduleState(row.state),
        next_at=row.next_at,
        runs=row.runs,
        skipped=row.skipped,
        last_at=row.last_at,
        last_plan_id=row.last_plan_id,
        created_at=row.created_at,
        created_by=row.created_by,
        last_run=last_run,
    )
