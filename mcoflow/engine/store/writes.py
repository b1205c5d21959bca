"""The write core every write of the store goes through: locking plans, settling a
plan's fate, setting plan states (and telling parents), history, inserting events and
waking the steps they are for, releasing what waited on finished steps.

Invariant kept by every write: ``steps.ready_at`` is set exactly when a step can be
claimed. Writes that decide a plan's fate lock the plan row first, so two executors never
settle one plan from stale views.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, case, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from mcoflow.engine.action import EventKind, RescueStrategy
from mcoflow.engine.fate import StepGroup, Verdict, plan_fate
from mcoflow.engine.records import NewEvent
from mcoflow.engine.schema import events, history, plans, steps
from mcoflow.engine.states import (
    PlanResult,
    PlanState,
    StepState,
    check_plan_transition,
)
from mcoflow.engine.store.base import dumps, loads
from mcoflow.engine.store.reads import ReadQueries
from mcoflow.engine.store.statements import (
    PG_PLAN_STATES,
    PG_RELEASE,
    PG_WAKE,
    PLAN_STATES,
    WAKE,
    columns,
    dialect_insert,
)


class WriteCore(ReadQueries):
    """What the store's writes share; each runs inside its caller's transaction."""

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
        self, conn: AsyncConnection, finished: list[FinishedStep], now: float
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
            await self._release_dependents(conn, [FinishedStep.skipped_row(r) for r in newly], now)

    async def _settle(
        self,
        conn: AsyncConnection,
        plan_ids: Iterable[str],
        now: float,
        *,
        by: str,
    ) -> bool:
        """Pause or stop running plans that have nothing left to run (``plan_fate``).
        True if some plan became due for its finalize phase (an executor's work)."""
        ids = list(plan_ids)
        if not ids:
            return False
        rows = await conn.execute(
            select(
                steps.c.plan_id,
                steps.c.state,
                steps.c.rescue,
                func.count(steps.c.ready_at).label("ready"),
                func.sum(case((steps.c.has_finalize, 1), else_=0)).label("finalizers"),
                func.sum(
                    case((steps.c.has_run, steps.c.progress * steps.c.weight), else_=0.0)
                ).label("done"),
                func.sum(case((steps.c.has_run, steps.c.weight), else_=0.0)).label("total"),
            )
            .where(self._among(steps.c.plan_id, ids))
            .where(or_(steps.c.has_run, steps.c.has_finalize))
            .group_by(steps.c.plan_id, steps.c.state, steps.c.rescue)
        )
        per_plan: dict[str, list[StepGroup]] = defaultdict(list)
        weighted: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for row in rows:
            per_plan[row.plan_id].append(
                StepGroup(
                    StepState(row.state),
                    RescueStrategy(row.rescue),
                    ready=row.ready,
                    finalizers=row.finalizers or 0,
                )
            )
            weighted[row.plan_id][0] += row.done or 0.0
            weighted[row.plan_id][1] += row.total or 0.0
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
        changes: list[PlanChange] = []
        finalizing = False
        for pid in ids:
            plan = info.get(pid)
            if plan is None or plan.state != PlanState.RUNNING or plan.needs_finalize:
                continue
            fate = plan_fate(per_plan.get(pid, []), cancel_requested=bool(plan.cancel_requested))
            if fate.verdict is Verdict.RUNS_ON:
                continue
            if fate.verdict is Verdict.FINALIZE:
                await conn.execute(
                    update(plans).where(plans.c.id == pid).values(needs_finalize=True, wake_at=now)
                )
                finalizing = True
                continue
            new_state = PlanState.PAUSED if fate.verdict is Verdict.PAUSE else PlanState.STOPPED
            changes.append(
                PlanChange(
                    pid,
                    PlanState.RUNNING,
                    new_state,
                    fate.result,
                    plan.parent_plan_id,
                    plan.parent_step_id,
                )
            )
        await self._set_plan_states(conn, changes, now, by, progress)
        return finalizing

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
        change = PlanChange(plan_id, old, new, result, parent[0], parent[1], detail)
        await self._set_plan_states(conn, [change], now, by)

    async def _set_plan_states(
        self,
        conn: AsyncConnection,
        changes: list[PlanChange],
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
        # children that ended tell their parent's step (it waits for them)
        to_parents = [
            NewEvent(
                c.parent_plan_id,
                c.parent_step_id,
                EventKind.SUB_PLAN,
                {"plan_id": c.plan_id, "state": c.new.value, "result": c.result.value},
                None,
                now,
            )
            for c in changes
            if c.parent_plan_id is not None and c.parent_step_id is not None
        ]
        if not to_parents:
            return
        await self._lock_plans(conn, sorted({e.plan_id for e in to_parents}))
        await conn.execute(insert(events), [event_row(e, now) for e in to_parents])
        await self._wake_steps(conn, {(e.plan_id, e.step_idx): now for e in to_parents})

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
            event_row(
                NewEvent(plan_id, idx, EventKind.CANCEL, {}, _cancel_key(plan_id, idx), now), now
            )
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


@dataclass(frozen=True)
class FinishedStep:
    """A step that finished (success or skipped) with what depends on it."""

    plan_id: str
    idx: int
    skipped: bool
    dependents: tuple[int, ...]
    ref_dependents: tuple[int, ...]

    @classmethod
    def skipped_row(cls, row: Any) -> FinishedStep:
        return cls(
            row.plan_id,
            row.idx,
            True,
            tuple(loads(row.dependents)),
            tuple(loads(row.ref_dependents)),
        )


@dataclass(frozen=True)
class PlanChange:
    plan_id: str
    old: PlanState
    new: PlanState
    result: PlanResult
    parent_plan_id: str | None
    parent_step_id: int | None
    detail: str | None = None


def event_row(event: NewEvent, created_at: float) -> dict[str, Any]:
    """The ``events`` row of an event."""
    return {
        "plan_id": event.plan_id,
        "step_idx": event.step_idx,
        "kind": event.kind.value,
        "payload": dumps(event.payload),
        "dedupe_key": event.dedupe_key,
        "due_at": event.due_at,
        "created_at": created_at,
    }


def _cancel_key(plan_id: str, step_idx: int) -> str:
    return f"cancel:{plan_id}:{step_idx}"
