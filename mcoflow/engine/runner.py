"""Running one claimed step: rebuild its action, deliver its events, record the outcome."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from mcoflow.engine.action import (
    Action,
    Event,
    EventKind,
    RescueStrategy,
    registered_action,
)
from mcoflow.engine.flow import resolve_references
from mcoflow.engine.planner import NewPlan, Planner, error_record
from mcoflow.engine.records import ClaimedStep, ScheduledEvent, Step, StepOutcome, SubPlanCounts
from mcoflow.engine.states import StepState

# kept in the step's data so a cancellable step that finishes later still ends cancelled
CANCEL_RECEIVED = "__cancel_received__"

CountsFn = Callable[[str, int], Awaitable[SubPlanCounts]]
Clock = Callable[[], float]


@dataclass
class RunContext:
    """What a running action may touch; collected into a StepOutcome afterwards."""

    plan_id: str
    step_idx: int
    output: dict[str, Any]
    data: dict[str, Any]
    progress: float
    counts: CountsFn | None = None
    clock: Clock = time.time  # what timers are due against (a test's own clock)
    suspended: bool = False
    new_events: list[ScheduledEvent] = field(default_factory=list)
    messages: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    sub_plans: list[NewPlan] = field(default_factory=list)
    start_sub_plans: int | None = None
    start_unless_failed: int | None = None
    cancel_sub_plans: bool = False
    cancel_paused_sub_plans: bool = False

    def schedule(self, kind: EventKind, payload: dict[str, Any], after: float) -> None:
        if after < 0:
            raise ValueError(f"after: must not be negative, got {after}")
        self.new_events.append(ScheduledEvent(kind, payload, self.clock() + after))

    def plan_sub_plan(
        self, action: type[Action], args: dict[str, Any], label: str | None
    ) -> NewPlan:
        """A child plan of this step, planned but not added (touches nothing shared: it
        may run in a worker thread)."""
        return Planner().plan(
            action, args, label=label, parent_plan_id=self.plan_id, parent_step_id=self.step_idx
        )

    async def sub_plan_counts(self) -> SubPlanCounts:
        if self.counts is None:
            raise RuntimeError("sub-plan counts are not available here")
        return await self.counts(self.plan_id, self.step_idx)

    def start_children(self, up_to: int, *, unless_failed: int | None) -> None:
        """Once this run commits, start children until ``up_to`` of them run, unless
        ``unless_failed`` (if given) have failed by then."""
        self.start_sub_plans, self.start_unless_failed = up_to, unless_failed

    def cancel_children(self, *, paused_too: bool = False) -> None:
        """Once this run commits, cancel the children not stopped (``paused_too``: also
        those paused for the operator)."""
        self.cancel_sub_plans = True
        self.cancel_paused_sub_plans = self.cancel_paused_sub_plans or paused_too


def _finish_state(cls: type[Action], failed: bool) -> StepState:
    if not failed:
        return StepState.SUCCESS
    return StepState.SKIPPED if cls.rescue is RescueStrategy.SKIP else StepState.ERROR


def _coalesce(
    events: list[Event | None], kinds: frozenset[EventKind]
) -> tuple[list[Event | None], list[int]]:
    """Keep only the last of each run of consecutive events of a coalescable kind;
    return the kept events and the ids of the dropped ones (consumed unseen)."""
    if not kinds:
        return events, []
    kept: list[Event | None] = []
    dropped: list[int] = []
    for event in events:
        last = kept[-1] if kept else None
        if (
            event is not None
            and last is not None
            and event.kind in kinds
            and last.kind is event.kind
        ):
            if last.id is not None:
                dropped.append(last.id)
            kept[-1] = event
        else:
            kept.append(event)
    return kept, dropped


class TimeLimitExceeded(Exception):
    """An action's run or finalize outlived its ``time_limit``."""


async def within_time_limit(cls: type[Action], result: Any, what: str) -> None:
    """Wait for what ``run`` or ``finalize`` returned (if it is awaitable) up to the
    action's ``time_limit``, cancelling it then. A TimeoutError of the action's own
    (an HTTP client's, say) passes through as itself."""
    if not inspect.isawaitable(result):
        return
    limit = cls.time_limit
    if limit is None:
        await result
        return
    try:
        async with asyncio.timeout(limit) as deadline:
            await result
    except TimeoutError:
        if not deadline.expired():
            raise
        raise TimeLimitExceeded(
            f"{what} did not finish within its time limit of {limit:g} s"
            " (an action that waits for something should suspend)"
        ) from None


def _unserialisable(ctx: RunContext) -> dict[str, Any] | None:
    """Output, data, messages and scheduled events are stored as JSON: refuse anything
    else here, so one bad step cannot fail the whole batch's commit."""
    parts = (
        ("output", ctx.output),
        ("data", ctx.data),
        ("messages", ctx.messages),
        ("scheduled events", [e.payload for e in ctx.new_events]),
    )
    for what, value in parts:
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            return {"type": type(exc).__name__, "message": f"{what} is not JSON: {exc}"}
    return None


def _forget_run(ctx: RunContext, claimed: ClaimedStep) -> None:
    """Back to what the step had stored before this claim: what its runs left cannot be
    stored (the error outcome would fail as well, and the step stay claimed)."""
    ctx.output = dict(claimed.output or {})
    ctx.data = dict(claimed.data or {})
    ctx.messages.clear()
    ctx.sub_plans.clear()
    ctx.new_events.clear()


async def run_step(
    claimed: ClaimedStep, counts: CountsFn | None = None, *, clock: Clock = time.time
) -> StepOutcome:
    started = time.perf_counter()
    ctx = RunContext(
        plan_id=claimed.plan_id,
        step_idx=claimed.idx,
        output=dict(claimed.output or {}),
        data=dict(claimed.data or {}),
        progress=0.0,
        counts=counts,
        clock=clock,
    )
    error: dict[str, Any] | None = None
    consumed: list[int] = []
    marks = (0, 0)
    current: Event | None = None
    cls: type[Action] | None = None
    try:
        cls = registered_action(claimed.action)
        action = cls(claimed.idx, resolve_references(claimed.input, claimed.ref_outputs))
        action._enter(ctx)
        # a resumed or fresh step starts over; a woken one gets its events in order
        deliveries: list[Event | None] = (
            list(claimed.events) if claimed.claimed_from is StepState.SUSPENDED else [None]
        )
        if not deliveries:
            # woken with nothing due (e.g. re-run after its executor died): run again
            deliveries = [None]
        deliveries, skipped = _coalesce(deliveries, cls.coalesce_events)
        consumed.extend(skipped)
        for event in deliveries:
            current = event
            marks = (len(ctx.messages), len(ctx.sub_plans))
            ctx.suspended = False
            if event is not None and event.kind is EventKind.CANCEL and cls.cancellable:
                ctx.data[CANCEL_RECEIVED] = True
            await within_time_limit(cls, action.run(event), "run")
            if event is not None and event.id is not None:
                consumed.append(event.id)
            if not ctx.suspended:
                break
        if not ctx.suspended and cls.Output is not None:
            ctx.output = cls.Output.model_validate(ctx.output).model_dump(mode="json")
    except ValidationError as exc:
        error = error_record(exc)
        error["message"] = f"invalid output: {exc}"
    except Exception as exc:
        error = error_record(exc)
        # the event that made it fail is handled: a resume must not see it again
        if current is not None and current.id is not None and current.id not in consumed:
            consumed.append(current.id)
        # what earlier events of this claim produced stands; the failed run's does not
        del ctx.messages[marks[0] :]
        del ctx.sub_plans[marks[1] :]
    # also after a failed run: it may have left such a value in the data first
    not_json = _unserialisable(ctx)
    if not_json is not None:
        _forget_run(ctx, claimed)
        error = error or not_json
    if error is not None:
        state = _finish_state(cls, True) if cls is not None else StepState.ERROR
    elif ctx.suspended:
        state = StepState.SUSPENDED
    elif ctx.data.get(CANCEL_RECEIVED):
        state = StepState.CANCELLED
    else:
        state = StepState.SUCCESS
    return StepOutcome(
        plan_id=claimed.plan_id,
        idx=claimed.idx,
        action=claimed.action,
        state=state,
        output=ctx.output if state is StepState.SUCCESS else (ctx.output or None),
        data=ctx.data,
        error=error,
        progress=ctx.progress,
        run_seconds=time.perf_counter() - started,
        consumed_events=consumed,
        # timers of a step that did not stay suspended would never be delivered
        new_events=ctx.new_events if state is StepState.SUSPENDED else [],
        messages=ctx.messages,
        sub_plans=ctx.sub_plans,
        start_sub_plans=ctx.start_sub_plans if error is None else None,
        start_unless_failed=ctx.start_unless_failed,
        dependents=claimed.dependents,
        ref_dependents=claimed.ref_dependents,
        cancel_sub_plans=ctx.cancel_sub_plans and error is None,
        cancel_paused_sub_plans=ctx.cancel_paused_sub_plans and error is None,
    )


async def finalize_step(step: Step) -> None:
    """Run one step's ``finalize`` (within its time limit); raises what it raised."""
    cls = registered_action(step.action)
    action = cls(step.idx, step.input)
    action._enter(
        RunContext(
            step.plan_id, step.idx, dict(step.output or {}), dict(step.data or {}), step.progress
        )
    )
    await within_time_limit(cls, action.finalize(), "finalize")


def unstorable(outcome: StepOutcome, exc: BaseException) -> StepOutcome:
    """``outcome`` reduced to an error that says why it could not be stored; what it
    asked for (messages, events, sub-plans) is dropped with it."""
    return dataclasses.replace(
        outcome,
        state=StepState.ERROR,
        output=None,
        error={
            **error_record(exc),
            "message": f"storing the step's outcome failed: {type(exc).__name__}: {exc}",
        },
        new_events=[],
        messages=[],
        sub_plans=[],
        start_sub_plans=None,
        cancel_sub_plans=False,
        cancel_paused_sub_plans=False,
    )
