"""Plan and step states, their allowed transitions, and the plan-result rule."""

from __future__ import annotations

import enum
from collections.abc import Iterable


class InvalidTransition(RuntimeError):
    """A state change the state machine does not allow: always a bug."""


class PlanState(enum.StrEnum):
    PENDING = "pending"
    SCHEDULED = "scheduled"
    PLANNING = "planning"
    PLANNED = "planned"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


class PlanResult(enum.StrEnum):
    PENDING = "pending"
    SUCCESS = "success"
    WARNING = "warning"
    ERROR = "error"
    CANCELLED = "cancelled"


class StepState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUSPENDED = "suspended"
    SUCCESS = "success"
    ERROR = "error"
    SKIPPING = "skipping"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in _FINISHED_STEPS


_FINISHED_STEPS = frozenset({StepState.SUCCESS, StepState.SKIPPED, StepState.CANCELLED})

# A step that is done for the purpose of what comes after it in the flow.
STEP_DONE = frozenset({StepState.SUCCESS, StepState.SKIPPED})

PLAN_TRANSITIONS: dict[PlanState, frozenset[PlanState]] = {
    PlanState.PENDING: frozenset({PlanState.PLANNING, PlanState.SCHEDULED, PlanState.STOPPED}),
    PlanState.SCHEDULED: frozenset({PlanState.PLANNING, PlanState.STOPPED}),
    PlanState.PLANNING: frozenset({PlanState.PLANNED, PlanState.STOPPED, PlanState.SCHEDULED}),
    PlanState.PLANNED: frozenset({PlanState.RUNNING, PlanState.STOPPED}),
    PlanState.RUNNING: frozenset({PlanState.PAUSED, PlanState.STOPPED}),
    PlanState.PAUSED: frozenset({PlanState.RUNNING, PlanState.STOPPED}),
    PlanState.STOPPED: frozenset(),
}

STEP_TRANSITIONS: dict[StepState, frozenset[StepState]] = {
    StepState.PENDING: frozenset({StepState.RUNNING, StepState.SKIPPED, StepState.CANCELLED}),
    StepState.RUNNING: frozenset(
        {
            StepState.SUCCESS,
            StepState.ERROR,
            StepState.SUSPENDED,
            StepState.SKIPPED,
            StepState.CANCELLED,
            # released after its executor died: re-run (idempotent) from where it was
            StepState.PENDING,
        }
    ),
    StepState.SUSPENDED: frozenset({StepState.RUNNING, StepState.CANCELLED}),
    StepState.ERROR: frozenset({StepState.RUNNING, StepState.SKIPPING, StepState.CANCELLED}),
    StepState.SKIPPING: frozenset({StepState.SKIPPED}),
    StepState.SKIPPED: frozenset(),
    StepState.SUCCESS: frozenset(),
    StepState.CANCELLED: frozenset(),
}


def check_plan_transition(current: PlanState, new: PlanState) -> None:
    if new not in PLAN_TRANSITIONS[current]:
        raise InvalidTransition(f"plan cannot go from {current.value} to {new.value}")


def check_step_transition(current: StepState, new: StepState) -> None:
    if new not in STEP_TRANSITIONS[current]:
        raise InvalidTransition(f"step cannot go from {current.value} to {new.value}")


def plan_result(step_states: Iterable[StepState]) -> PlanResult:
    """Cancelled if any step was cancelled, else error if any errored, else warning
    if any was skipped, else success."""
    seen = set(step_states)
    if StepState.CANCELLED in seen:
        return PlanResult.CANCELLED
    if StepState.ERROR in seen:
        return PlanResult.ERROR
    if seen & {StepState.SKIPPED, StepState.SKIPPING}:
        return PlanResult.WARNING
    if seen - {StepState.SUCCESS}:
        return PlanResult.PENDING
    return PlanResult.SUCCESS
