"""One word per child plan (a fleet's host) and the counts of a plan's children, the same
in the CLI, the console and the API."""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from mcoflow.engine.records import Plan
from mcoflow.engine.states import PlanResult, PlanState


class ChildStatus(enum.StrEnum):
    PLANNED = "planned"
    RUNNING = "running"
    SUCCESS = "success"
    WARNING = "warning"
    ERROR = "error"
    CANCELLED = "cancelled"


# what a rerun on the failed hosts takes: errors (paused ones too) and never-run ones
FAILED = frozenset({ChildStatus.ERROR, ChildStatus.CANCELLED})


class HostFilter(enum.StrEnum):
    """The words a host list can be filtered by: one status, or ``failed`` (FAILED)."""

    FAILED = "failed"
    PLANNED = "planned"
    RUNNING = "running"
    SUCCESS = "success"
    WARNING = "warning"
    ERROR = "error"
    CANCELLED = "cancelled"


HOST_FILTERS = tuple(word.value for word in HostFilter)


def statuses_named(word: str) -> frozenset[ChildStatus] | None:
    """``failed`` -> FAILED, ``error`` -> {ERROR}, blank -> None (every host).
    ValueError naming the choices for another word."""
    word = word.strip().lower()
    if not word:
        return None
    if word == "failed":
        return FAILED
    try:
        return frozenset({ChildStatus(word)})
    except ValueError:
        raise ValueError(f"status: {word!r} is not one of {', '.join(HOST_FILTERS)}") from None


_BY_RESULT = {
    PlanResult.SUCCESS: ChildStatus.SUCCESS,
    PlanResult.WARNING: ChildStatus.WARNING,
    PlanResult.ERROR: ChildStatus.ERROR,
}


def child_status(plan: Plan) -> ChildStatus:
    return status_of(plan.state, plan.result)


def status_of(state: PlanState, result: PlanResult) -> ChildStatus:
    """A paused child failed and waits for the operator: it counts as an error. A child
    stopped before it had a result was cancelled."""
    if state is PlanState.STOPPED:
        return _BY_RESULT.get(result, ChildStatus.CANCELLED)
    if state is PlanState.PAUSED:
        return ChildStatus.ERROR
    if state is PlanState.RUNNING:
        return ChildStatus.RUNNING
    return ChildStatus.PLANNED


@dataclass(frozen=True)
class ChildCounts:
    total: int
    planned: int
    running: int
    success: int
    warning: int
    error: int
    cancelled: int
    paused: int  # of the errors, those waiting for the operator (resume or skip them)

    @classmethod
    def of(cls, children: Iterable[Plan]) -> ChildCounts:
        by_status: Counter[ChildStatus] = Counter()
        paused = 0
        for child in children:
            by_status[child_status(child)] += 1
            paused += child.state is PlanState.PAUSED
        return cls(
            total=sum(by_status.values()),
            **{status.value: by_status[status] for status in ChildStatus},
            paused=paused,
        )

    @classmethod
    def from_groups(cls, groups: Iterable[tuple[PlanState, PlanResult, int]]) -> ChildCounts:
        """From counts of children grouped by (state, result), as the store reads them."""
        by_status: Counter[ChildStatus] = Counter()
        paused = 0
        for state, result, n in groups:
            by_status[status_of(state, result)] += n
            paused += n if state is PlanState.PAUSED else 0
        return cls(
            total=sum(by_status.values()),
            **{status.value: by_status[status] for status in ChildStatus},
            paused=paused,
        )

    def matching(self, statuses: Collection[ChildStatus] | None) -> int:
        """How many children have one of ``statuses`` (None: all of them)."""
        if statuses is None:
            return self.total
        return sum(getattr(self, status.value) for status in set(statuses))

    @property
    def failed(self) -> int:
        """Children a rerun on the failed ones would take: errors and never-run ones."""
        return self.error + self.cancelled

    def as_dict(self) -> dict[str, int]:
        return {status.value: getattr(self, status.value) for status in ChildStatus} | {
            "total": self.total,
            "paused": self.paused,
        }

    def summary(self, noun: str = "hosts") -> str:
        """``50 hosts: 0 succeeded, 5 failed, 45 cancelled`` (the others only if any)."""
        succeeded = f"{self.success + self.warning} succeeded"
        if self.warning:
            succeeded += f" ({self.warning} with warnings)"
        parts = [succeeded]
        failed = f"{self.error} failed"
        if self.paused:
            failed += f" ({self.paused} waiting for the operator)"
        parts += [failed, f"{self.cancelled} cancelled"]
        if self.running:
            parts.append(f"{self.running} running")
        if self.planned:
            parts.append(f"{self.planned} not started")
        return f"{self.total} {noun}: " + ", ".join(parts)
