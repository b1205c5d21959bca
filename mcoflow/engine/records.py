"""Read-only records the store hands out, and the outcome records the executor writes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mcoflow.engine.action import Event, EventKind
from mcoflow.engine.flow import FlowJSON
from mcoflow.engine.planner import NewPlan
from mcoflow.engine.states import PlanResult, PlanState, StepState


@dataclass(frozen=True)
class Plan:
    id: str
    action: str
    label: str
    args: dict[str, Any]
    state: PlanState
    result: PlanResult
    flow: FlowJSON | None
    error: str | None
    parent_plan_id: str | None
    parent_step_id: int | None
    created_at: float
    started_at: float | None
    ended_at: float | None
    start_at: float | None
    start_before: float | None
    progress: float
    cancel_requested: bool

    @property
    def finished(self) -> bool:
        return self.state is PlanState.STOPPED

    @property
    def duration(self) -> float | None:
        return run_duration(self.started_at, self.ended_at)


@dataclass(frozen=True)
class Step:
    plan_id: str
    idx: int
    parent: int | None
    action: str
    state: StepState
    input: dict[str, Any]
    output: dict[str, Any] | None
    data: dict[str, Any] | None
    error: dict[str, Any] | None
    has_run: bool
    has_finalize: bool
    idempotent: bool
    rescue: str
    weight: float
    progress: float
    pending_deps: int
    dependents: tuple[int, ...]
    ref_dependents: tuple[int, ...]
    claimed_by: str | None
    attempts: int
    started_at: float | None
    ended_at: float | None
    run_seconds: float


@dataclass(frozen=True)
class HistoryEntry:
    at: float
    what: str
    detail: str | None
    by: str


@dataclass(frozen=True)
class ExecutorInfo:
    id: str
    host: str
    pid: int
    started_at: float
    heartbeat_at: float
    claimed_steps: int


@dataclass(frozen=True)
class EngineStats:
    """Totals over the whole database, for monitoring (``/metrics``)."""

    plans: dict[tuple[str, str | None], int]  # (state, result) -> plans
    steps: dict[str, int]  # state -> steps
    outbox_waiting: int  # messages not yet confirmed by the broker
    events: dict[str, int]  # kind -> events delivered to steps (user: host replies, ...)
    timeouts: int  # timers that fired (a host that stayed silent, among others)
    # action -> (finished steps, their seconds from first start to end)
    step_seconds: dict[str, tuple[int, float]]
    executors: list[ExecutorInfo]


@dataclass(frozen=True)
class SubPlanCounts:
    total: int
    planned: int  # created, not started yet
    running: int
    paused: int
    success: int
    warning: int
    error: int
    cancelled: int

    @property
    def failed(self) -> int:
        """Children that ran and failed (paused for the operator or stopped in error)."""
        return self.paused + self.error

    @property
    def finished(self) -> int:
        return self.success + self.warning + self.error + self.cancelled

    @property
    def settled(self) -> bool:
        """Nothing is left to run: every child stopped or paused."""
        return self.planned == 0 and self.running == 0


@dataclass(frozen=True)
class ClaimedStep:
    plan_id: str
    idx: int
    action: str
    input: dict[str, Any]
    output: dict[str, Any] | None
    data: dict[str, Any] | None
    claimed_from: StepState
    attempts: int
    events: tuple[Event, ...] = ()
    ref_outputs: dict[int, Any] = field(default_factory=dict)
    dependents: tuple[int, ...] = ()
    ref_dependents: tuple[int, ...] = ()


@dataclass(frozen=True)
class ScheduledEvent:
    """An event a step schedules for itself (a timeout), stored with its outcome."""

    kind: EventKind
    payload: dict[str, Any]
    due_at: float
    dedupe_key: str | None = None


@dataclass(frozen=True)
class NewEvent:
    """An event delivered to a step from outside the executor (a reply, an operator's
    event); a second one with the same ``dedupe_key`` is dropped."""

    plan_id: str
    step_idx: int
    kind: EventKind
    payload: dict[str, Any]
    dedupe_key: str | None
    due_at: float


@dataclass(frozen=True)
class ClaimedPlan:
    """A plan an executor claimed to work on itself: a delayed start or a finalize phase."""

    id: str
    state: PlanState
    needs_finalize: bool


@dataclass(frozen=True)
class OutboxMessage:
    """An outbox message claimed for publishing."""

    id: int
    destination: str
    message: dict[str, Any]


@dataclass
class StepOutcome:
    """Everything one run of a step produced, committed in one transaction."""

    plan_id: str
    idx: int
    action: str
    state: StepState
    output: dict[str, Any] | None
    data: dict[str, Any] | None
    error: dict[str, Any] | None
    progress: float
    run_seconds: float
    consumed_events: list[int] = field(default_factory=list)
    new_events: list[ScheduledEvent] = field(default_factory=list)
    messages: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    sub_plans: list[NewPlan] = field(default_factory=list)
    start_sub_plans: int | None = None  # keep at most this many children running
    # ... unless this many have failed by the time the outcome commits
    start_unless_failed: int | None = None
    dependents: tuple[int, ...] = ()
    ref_dependents: tuple[int, ...] = ()
    cancel_sub_plans: bool = False
    # an operator's cancel also stops children paused for the operator; a threshold does not
    cancel_paused_sub_plans: bool = False


def run_duration(started_at: float | None, ended_at: float | None) -> float | None:
    """None until it started, 0 while it has not ended (a plan, a fleet's host)."""
    if started_at is None:
        return None
    return (ended_at or started_at) - started_at
