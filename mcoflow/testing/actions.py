"""Run one action's ``run(event)`` without an executor or a database.

``ActionEnvironment`` drives the action through the engine's own runner (``run_step``),
so what it does there is what it would do on an executor: events delivered in order,
output validated, timers kept only while the step stays suspended, what a failed run
sent dropped. Between runs it keeps what the store would: the step's state, output and
data (through JSON, as stored), and the events not delivered yet. The clock is its own:
``advance`` moves it and delivers the timers that fall due.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mcoflow.actions.remote import RPC_DESTINATION, reply_payload
from mcoflow.engine.action import Action, Event, EventKind
from mcoflow.engine.records import ClaimedStep, ScheduledEvent, StepOutcome, SubPlanCounts
from mcoflow.engine.runner import run_step
from mcoflow.engine.states import StepState
from mcoflow.rpc.messages import Reply, StatusCode

_FINISHED = frozenset({StepState.SUCCESS, StepState.SKIPPED, StepState.CANCELLED})
# runs in a row woken by events due at once, before the environment calls it a loop
_MAX_RUNS_AT_ONCE = 10_000


class ManualClock:
    """A clock that moves only when told to (``advance``)."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"seconds: must not be negative, got {seconds}")
        self.now += seconds


@dataclass(frozen=True)
class _Queued:
    due_at: float
    event: Event
    scheduled: bool  # by the action itself (a timer), not delivered from outside


def _stored(value: Any) -> Any:
    """``value`` as it reads back from the database (JSON)."""
    return json.loads(json.dumps(value))


class ActionEnvironment:
    """One step of ``action`` with ``input``, run as the engine runs it.

    ``start()`` runs it the first time; while it is suspended, ``deliver(event)``,
    ``reply(...)`` (a host's answer to the latest request it sent), ``advance(seconds)``
    (timers that fall due) and ``cancel()`` wake it; ``resume()`` runs a step in error
    again, as an operator's resume does. Each returns the run's ``StepOutcome`` (None when
    nothing ran). What the step sent, scheduled and holds is in ``sent``, ``requests``,
    ``scheduled``, ``timers``, ``state``, ``output``, ``data`` and ``error``.
    """

    def __init__(
        self,
        action: type[Action],
        /,
        input: Mapping[str, Any] | None = None,
        *,
        plan_id: str = "plan-1",
        step_idx: int = 1,
        clock: ManualClock | None = None,
        sub_plan_counts: SubPlanCounts | None = None,
    ) -> None:
        self.action = action
        # as planning stores it: validated, in JSON form
        self.input = _stored(action.validate_input(dict(input or {})))
        self.plan_id = plan_id
        self.step_idx = step_idx
        self.clock = clock or ManualClock()
        # what a WithSubPlans action counts among its children (None: it may not ask)
        self.sub_plan_counts = sub_plan_counts
        self.state = StepState.PENDING
        self.output: dict[str, Any] = {}
        self.data: dict[str, Any] = {}
        self.error: dict[str, Any] | None = None
        self.progress = 0.0
        self.sent: list[tuple[str, dict[str, Any]]] = []  # every message, in order
        self.scheduled: list[ScheduledEvent] = []  # every event it scheduled, in order
        self.outcomes: list[StepOutcome] = []
        self._queue: list[_Queued] = []
        self._next_id = 1
        self._cancelled = False

    # ---- what the step did ---------------------------------------------------------

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The RPC requests it sent (``RemoteAction`` and the like), in order."""
        return [message for destination, message in self.sent if destination == RPC_DESTINATION]

    @property
    def timers(self) -> list[ScheduledEvent]:
        """What it scheduled and was not delivered yet, soonest first."""
        return [
            ScheduledEvent(q.event.kind, dict(q.event.payload), q.due_at)
            for q in self._ordered()
            if q.scheduled
        ]

    # ---- waking it -----------------------------------------------------------------

    async def start(self) -> StepOutcome:
        """The step's first run (``run(None)``)."""
        if self.state is not StepState.PENDING:
            raise RuntimeError(f"the step has started already (it is {self.state.value})")
        return await self._run(StepState.PENDING, ())

    async def resume(self) -> StepOutcome:
        """Run a step in error again, from the start (``run(None)``)."""
        if self.state is not StepState.ERROR:
            raise RuntimeError(f"only a step in error is resumed (it is {self.state.value})")
        return await self._run(StepState.ERROR, ())

    async def deliver(self, event: Event) -> StepOutcome:
        """``event`` arrives now; the suspended step gets it after any event due before."""
        self._require_suspended()
        self._enqueue(event.kind, event.payload, self.clock.now, scheduled=False)
        outcome = await self._wake()
        assert outcome is not None
        return outcome

    async def reply(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        statuscode: StatusCode = StatusCode.OK,
        statusmsg: str = "OK",
        sender: str | None = None,
        request_id: str | None = None,
    ) -> StepOutcome:
        """A host's reply to the latest request the step sent, delivered as the reply
        router delivers it (``sender``: the request's first identity by default)."""
        if not self.requests:
            raise RuntimeError("the step sent no request to reply to")
        request = self.requests[-1]
        identities = request.get("identities") or ["host.example"]
        reply = Reply(
            request_id=request_id or request["id"],
            sender=sender or identities[0],
            agent=request["agent"],
            action=request["action"],
            statuscode=statuscode,
            statusmsg=statusmsg,
            data=dict(data or {}),
            time=self.clock.now,
        )
        return await self.deliver(Event(EventKind.USER, reply_payload(reply)))

    async def advance(self, seconds: float) -> StepOutcome | None:
        """Move the clock on; the step gets the timers that fall due (None if none did)."""
        self.clock.advance(seconds)
        if self.state is not StepState.SUSPENDED:
            return None
        return await self._wake()

    async def cancel(self) -> StepOutcome | None:
        """The operator cancels the plan: a suspended cancellable step gets a Cancel event
        (once); any other step not finished is cancelled without running (None)."""
        if self.state in _FINISHED:
            raise RuntimeError(f"the step is {self.state.value} already")
        if self.state is StepState.SUSPENDED and self.action.cancellable:
            if self._cancelled:
                return None  # one Cancel event per step, however often asked
            self._cancelled = True
            return await self.deliver(Event(EventKind.CANCEL))
        self.state = StepState.CANCELLED
        return None

    # ---- the engine's part ---------------------------------------------------------

    def _require_suspended(self) -> None:
        if self.state is not StepState.SUSPENDED:
            raise RuntimeError(f"only a suspended step gets events (it is {self.state.value})")

    def _enqueue(
        self, kind: EventKind, payload: Mapping[str, Any], due_at: float, *, scheduled: bool
    ) -> None:
        event = Event(kind, _stored(dict(payload)), self._next_id)
        self._next_id += 1
        self._queue.append(_Queued(due_at, event, scheduled))

    def _ordered(self) -> list[_Queued]:
        return sorted(self._queue, key=lambda q: (q.due_at, q.event.id or 0))

    def _due(self) -> tuple[Event, ...]:
        return tuple(q.event for q in self._ordered() if q.due_at <= self.clock.now)

    async def _wake(self) -> StepOutcome | None:
        due = self._due()
        if not due:
            return None
        return await self._run(StepState.SUSPENDED, due)

    async def _run(self, claimed_from: StepState, events: tuple[Event, ...]) -> StepOutcome:
        outcome = await self._claim(claimed_from, events)
        # as on an executor, where a step whose events are due is woken once its run commits
        for _ in range(_MAX_RUNS_AT_ONCE):
            due = self._due()
            if self.state is not StepState.SUSPENDED or not due:
                return outcome
            outcome = await self._claim(StepState.SUSPENDED, due)
        raise RuntimeError(f"the step keeps scheduling events due at once ({self.action.name})")

    async def _claim(self, claimed_from: StepState, events: tuple[Event, ...]) -> StepOutcome:
        claimed = ClaimedStep(
            plan_id=self.plan_id,
            idx=self.step_idx,
            action=self.action.name,
            input=self.input,
            output=_stored(self.output) if self.output else None,
            data=_stored(self.data),
            claimed_from=claimed_from,
            attempts=len(self.outcomes) + 1,
            events=events,
        )
        outcome = await run_step(claimed, self._counts, clock=self.clock)
        self.outcomes.append(outcome)
        consumed = set(outcome.consumed_events)
        self._queue = [q for q in self._queue if q.event.id not in consumed]
        for scheduled in outcome.new_events:
            self._enqueue(scheduled.kind, scheduled.payload, scheduled.due_at, scheduled=True)
        self.scheduled.extend(outcome.new_events)
        self.sent.extend(outcome.messages)
        self.state = outcome.state
        self.output = _stored(outcome.output or {})
        self.data = _stored(outcome.data or {})
        self.error = outcome.error
        self.progress = outcome.progress
        return outcome

    async def _counts(self, plan_id: str, step_idx: int) -> SubPlanCounts:
        if self.sub_plan_counts is None:
            raise RuntimeError("the action asked for its sub-plans' counts: pass sub_plan_counts")
        return self.sub_plan_counts
