"""The engine's central rule: what becomes of a running plan, decided from its steps
(DESIGN §2). Pure: the store reads the steps, asks ``plan_fate``, and writes the answer.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from mcoflow.engine.action import RescueStrategy
from mcoflow.engine.states import STEP_DONE, PlanResult, StepState, plan_result


class Verdict(enum.Enum):
    RUNS_ON = "runs on"  # a step runs, waits or is due: nothing to decide yet
    FINALIZE = "finalize"  # every step is done and some have a finalize phase to run
    PAUSE = "pause"  # a step failed: the operator decides (resume, skip, cancel)
    STOP = "stop"  # the plan ended, with ``result``


@dataclass(frozen=True)
class StepGroup:
    """Steps of one plan that share a state and a rescue strategy (the store counts
    them with one GROUP BY). Only steps with a run or a finalize phase count."""

    state: StepState
    rescue: RescueStrategy
    ready: int = 0  # how many are due to be claimed
    finalizers: int = 0  # how many have a finalize phase


@dataclass(frozen=True)
class PlanFate:
    verdict: Verdict
    result: PlanResult = PlanResult.PENDING  # for PAUSE and STOP


RUNS_ON = PlanFate(Verdict.RUNS_ON)
FINALIZE = PlanFate(Verdict.FINALIZE)
_BUSY = frozenset({StepState.RUNNING, StepState.SUSPENDED})


def plan_fate(groups: Sequence[StepGroup], *, cancel_requested: bool = False) -> PlanFate:
    """The fate of a running plan: it runs on while a step runs, waits or is due; once
    all are done it finalizes if some step has a finalize phase, else it stops with the
    result of its steps. A failure pauses it for the operator, unless a failed step's
    rescue is ``fail`` or a cancel was requested: then it stops. A plan that stops with
    steps left pending (cut off by a failure or a cancel) ends cancelled or in error."""
    if any(g.state in _BUSY or g.ready > 0 for g in groups):
        return RUNS_ON
    states = [g.state for g in groups]
    result = plan_result(states)
    if all(s in STEP_DONE for s in states) and any(g.finalizers for g in groups):
        return FINALIZE
    fails = any(g.state is StepState.ERROR and g.rescue is RescueStrategy.FAIL for g in groups)
    if result is PlanResult.ERROR and not (fails or cancel_requested):
        return PlanFate(Verdict.PAUSE, result)
    if result is PlanResult.PENDING:
        result = PlanResult.CANCELLED if cancel_requested else PlanResult.ERROR
    return PlanFate(Verdict.STOP, result)
