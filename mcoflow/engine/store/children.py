"""A plan's children (a fleet's hosts) a page at a time: the counts by status in one
grouped query, a page of rows in label order (optionally of some statuses only), and the
first error of each failed child on that page in one more query. Never every row."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, func, or_, select

from mcoflow.engine.child_status import FAILED, ChildCounts, ChildStatus, status_of
from mcoflow.engine.records import run_duration
from mcoflow.engine.schema import plans, steps
from mcoflow.engine.states import PlanResult, PlanState, StepState
from mcoflow.engine.store.base import StoreBase, loads

_RESULTS_WITH_STATUS = (PlanResult.SUCCESS.value, PlanResult.WARNING.value, PlanResult.ERROR.value)
_STATES_WITH_STATUS = (PlanState.STOPPED.value, PlanState.PAUSED.value, PlanState.RUNNING.value)


@dataclass(frozen=True)
class ChildRow:
    """One child plan as a host list shows it."""

    plan_id: str
    label: str
    state: PlanState
    result: PlanResult
    started_at: float | None
    ended_at: float | None
    message: str  # the child's error, else the first error of its steps (failed ones only)

    @property
    def status(self) -> ChildStatus:
        return status_of(self.state, self.result)

    @property
    def duration(self) -> float | None:
        return run_duration(self.started_at, self.ended_at)


@dataclass(frozen=True)
class ChildPage:
    rows: list[ChildRow]
    counts: ChildCounts  # of all the children, whatever the filter
    matching: int  # children the filter selects (all of them without one)
    offset: int
    limit: int

    @property
    def has_more(self) -> bool:
        return self.offset + len(self.rows) < self.matching


def status_condition(statuses: Collection[ChildStatus]) -> Any:
    """The SQL twin of ``child_status.status_of``: children with one of ``statuses``."""
    state, result = plans.c.state, plans.c.result
    stopped = state == PlanState.STOPPED.value
    one = {
        ChildStatus.SUCCESS: and_(stopped, result == PlanResult.SUCCESS.value),
        ChildStatus.WARNING: and_(stopped, result == PlanResult.WARNING.value),
        ChildStatus.ERROR: or_(
            state == PlanState.PAUSED.value, and_(stopped, result == PlanResult.ERROR.value)
        ),
        ChildStatus.CANCELLED: and_(stopped, result.not_in(_RESULTS_WITH_STATUS)),
        ChildStatus.RUNNING: state == PlanState.RUNNING.value,
        ChildStatus.PLANNED: state.not_in(_STATES_WITH_STATUS),
    }
    return or_(*(one[status] for status in sorted(set(statuses))))


class ChildQueries(StoreBase):
    """Reads of a plan's children that stay cheap with 100,000 of them."""

    async def child_counts(self, plan_id: str) -> ChildCounts:
        async with self._read() as conn:
            rows = await conn.execute(
                select(plans.c.state, plans.c.result, func.count())
                .where(plans.c.parent_plan_id == plan_id)
                .group_by(plans.c.state, plans.c.result)
            )
            return ChildCounts.from_groups(
                (PlanState(state), PlanResult(result), n) for state, result, n in rows
            )

    async def child_page(
        self,
        plan_id: str,
        *,
        statuses: Collection[ChildStatus] | None = None,
        offset: int = 0,
        limit: int = 100,
        after: tuple[str, str] | None = None,
        failed_first: bool = False,
    ) -> ChildPage:
        """Children ``offset`` to ``offset + limit`` in (label, id) order, or those after
        the (label, id) key ``after`` (keyset: constant cost however deep). With
        ``failed_first``, the FAILED ones come first."""
        if limit < 1 or offset < 0:
            raise ValueError("limit must be ≥ 1 and offset ≥ 0")
        counts = await self.child_counts(plan_id)
        conds: list[Any] = [plans.c.parent_plan_id == plan_id]
        if statuses is not None:
            conds.append(status_condition(statuses))
        if after is not None:
            label, child_id = after
            conds.append(
                or_(plans.c.label > label, and_(plans.c.label == label, plans.c.id > child_id))
            )
        order: list[Any] = [plans.c.label, plans.c.id]
        if failed_first:
            order.insert(0, case((status_condition(FAILED), 0), else_=1))
        query = (
            select(
                plans.c.id,
                plans.c.label,
                plans.c.state,
                plans.c.result,
                plans.c.started_at,
                plans.c.ended_at,
                plans.c.error,
            )
            .where(*conds)
            .order_by(*order)
            .offset(offset)
            .limit(limit)
        )
        async with self._read() as conn:
            found = (await conn.execute(query)).all()
            wanting = [
                r.id
                for r in found
                if not r.error
                and status_of(PlanState(r.state), PlanResult(r.result)) is not ChildStatus.SUCCESS
                and r.state != PlanState.RUNNING.value
            ]
            messages = await self._first_errors(conn, wanting)
        rows = [
            ChildRow(
                plan_id=r.id,
                label=r.label,
                state=PlanState(r.state),
                result=PlanResult(r.result),
                started_at=r.started_at,
                ended_at=r.ended_at,
                message=r.error or messages.get(r.id, ""),
            )
            for r in found
        ]
        return ChildPage(rows, counts, counts.matching(statuses), offset, limit)

    async def _first_errors(self, conn: Any, plan_ids: list[str]) -> dict[str, str]:
        """Each plan's first step error (a step in error before a skipped one), in one
        query for all of them."""
        if not plan_ids:
            return {}
        rows = await conn.execute(
            select(steps.c.plan_id, steps.c.state, steps.c.error)
            .where(self._among(steps.c.plan_id, plan_ids), steps.c.error.is_not(None))
            .order_by(steps.c.plan_id, steps.c.idx)
        )
        best: dict[str, tuple[bool, str]] = {}
        for plan_id, state, error in rows:
            in_error = state == StepState.ERROR.value
            known = best.get(plan_id)
            if known is None or (in_error and not known[0]):
                message = loads(error)
                text = str(message.get("message", "")) if isinstance(message, dict) else ""
                best[plan_id] = (in_error, text)
        return {plan_id: text for plan_id, (_, text) in best.items()}

    async def child_labels(self, plan_id: str, statuses: Collection[ChildStatus]) -> list[str]:
        """The labels (host names) of every child with one of ``statuses``, sorted: only
        that column is read."""
        async with self._read() as conn:
            rows = await conn.execute(
                select(plans.c.label)
                .where(plans.c.parent_plan_id == plan_id, status_condition(statuses))
                .order_by(plans.c.label)
            )
            return list(rows.scalars())
