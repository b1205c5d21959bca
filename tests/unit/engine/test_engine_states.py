"""Plan and step state machines and the plan-result rule (DESIGN §2)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcoflow.engine import PlanResult, PlanState, StepState
from mcoflow.engine.states import (
    STEP_DONE,
    InvalidTransition,
    check_plan_transition,
    check_step_transition,
    plan_result,
)

P = PlanState
T = StepState

# Written out here, not imported: a change to the engine's tables must show up as a
# failing test. Beyond DESIGN's main line (pending → planning → planned → running ↔
# paused → stopped, scheduled for delayed plans), a plan can stop from anywhere before
# it finishes (planning failed, missed start_before, cancel) and planning can defer to
# scheduled.
ALLOWED_PLAN = {
    (P.PENDING, P.PLANNING),
    (P.PENDING, P.SCHEDULED),
    (P.PENDING, P.STOPPED),
    (P.SCHEDULED, P.PLANNING),
    (P.SCHEDULED, P.STOPPED),
    (P.PLANNING, P.PLANNED),
    (P.PLANNING, P.STOPPED),
    (P.PLANNING, P.SCHEDULED),
    (P.PLANNED, P.RUNNING),
    (P.PLANNED, P.STOPPED),
    (P.RUNNING, P.PAUSED),
    (P.RUNNING, P.STOPPED),
    (P.PAUSED, P.RUNNING),
    (P.PAUSED, P.STOPPED),
}

ALLOWED_STEP = {
    (T.PENDING, T.RUNNING),  # claimed
    (T.PENDING, T.SKIPPED),  # needed the output of a skipped step
    (T.PENDING, T.CANCELLED),  # plan cancelled before it ran
    (T.RUNNING, T.SUCCESS),
    (T.RUNNING, T.ERROR),
    (T.RUNNING, T.SUSPENDED),
    (T.RUNNING, T.SKIPPED),  # rescue strategy Skip
    (T.RUNNING, T.CANCELLED),
    (T.RUNNING, T.PENDING),  # released after its executor died (idempotent re-run)
    (T.SUSPENDED, T.RUNNING),  # woken by an event or timer
    (T.SUSPENDED, T.CANCELLED),
    (T.ERROR, T.RUNNING),  # resume
    (T.ERROR, T.SKIPPING),  # operator skip
    (T.ERROR, T.CANCELLED),
    (T.SKIPPING, T.SKIPPED),
}

ALL_PLAN_PAIRS = list(itertools.product(PlanState, PlanState))
ALL_STEP_PAIRS = list(itertools.product(StepState, StepState))


def _id(pair: tuple[PlanState | StepState, PlanState | StepState]) -> str:
    return f"{pair[0].value}->{pair[1].value}"


@pytest.mark.parametrize("pair", sorted(ALLOWED_PLAN), ids=_id)
def test_allowed_plan_transition_passes(pair: tuple[PlanState, PlanState]) -> None:
    check_plan_transition(*pair)  # raises if refused


@pytest.mark.parametrize("pair", [p for p in ALL_PLAN_PAIRS if p not in ALLOWED_PLAN], ids=_id)
def test_disallowed_plan_transition_raises(pair: tuple[PlanState, PlanState]) -> None:
    current, new = pair
    with pytest.raises(InvalidTransition, match=f"plan cannot go from {current} to {new}"):
        check_plan_transition(current, new)


@pytest.mark.parametrize("pair", sorted(ALLOWED_STEP), ids=_id)
def test_allowed_step_transition_passes(pair: tuple[StepState, StepState]) -> None:
    check_step_transition(*pair)


@pytest.mark.parametrize("pair", [p for p in ALL_STEP_PAIRS if p not in ALLOWED_STEP], ids=_id)
def test_disallowed_step_transition_raises(pair: tuple[StepState, StepState]) -> None:
    current, new = pair
    with pytest.raises(InvalidTransition, match=f"step cannot go from {current} to {new}"):
        check_step_transition(current, new)


def test_design_main_line_of_a_plan_is_a_valid_walk() -> None:
    walk = [P.PENDING, P.PLANNING, P.PLANNED, P.RUNNING, P.PAUSED, P.RUNNING, P.STOPPED]
    for current, new in itertools.pairwise(walk):
        check_plan_transition(current, new)
    delayed = [P.PENDING, P.SCHEDULED, P.PLANNING, P.PLANNED, P.RUNNING, P.STOPPED]
    for current, new in itertools.pairwise(delayed):
        check_plan_transition(current, new)


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (P.RUNNING, P.PLANNING),  # no re-planning of a running plan
        (P.PAUSED, P.PLANNED),
        (P.PENDING, P.RUNNING),  # nothing runs before it is planned
        (P.SCHEDULED, P.RUNNING),
        (P.PLANNED, P.PAUSED),
    ],
)
def test_sample_of_plan_shortcuts_are_bugs(current: PlanState, new: PlanState) -> None:
    with pytest.raises(InvalidTransition):
        check_plan_transition(current, new)


def test_stopped_plan_and_finished_steps_are_terminal() -> None:
    for new in PlanState:
        with pytest.raises(InvalidTransition):
            check_plan_transition(P.STOPPED, new)
    for done in (T.SUCCESS, T.SKIPPED, T.CANCELLED):
        for new in StepState:
            with pytest.raises(InvalidTransition):
                check_step_transition(done, new)


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (T.PENDING, T.SUCCESS),  # a step cannot succeed without running
        (T.PENDING, T.SUSPENDED),
        (T.SUSPENDED, T.SUCCESS),  # it must be woken (running) first
        (T.SUSPENDED, T.ERROR),
        (T.ERROR, T.SUCCESS),
        (T.ERROR, T.SKIPPED),  # skipping goes through "skipping"
        (T.SKIPPING, T.RUNNING),
        (T.RUNNING, T.RUNNING),
    ],
)
def test_sample_of_step_shortcuts_are_bugs(current: StepState, new: StepState) -> None:
    with pytest.raises(InvalidTransition):
        check_step_transition(current, new)


def test_invalid_transition_is_a_runtime_error() -> None:
    assert issubclass(InvalidTransition, RuntimeError)


def test_finished_and_done_step_sets() -> None:
    assert {s for s in StepState if s.finished} == {T.SUCCESS, T.SKIPPED, T.CANCELLED}
    assert frozenset({T.SUCCESS, T.SKIPPED}) == STEP_DONE


# ---- plan result: cancelled > error > warning (skipped) > success -------------------------


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ([], PlanResult.SUCCESS),  # nothing to run
        ([T.SUCCESS], PlanResult.SUCCESS),
        ([T.SUCCESS, T.SUCCESS, T.SUCCESS], PlanResult.SUCCESS),
        ([T.SUCCESS, T.SKIPPED], PlanResult.WARNING),
        ([T.SKIPPED], PlanResult.WARNING),
        ([T.SUCCESS, T.ERROR], PlanResult.ERROR),
        ([T.SKIPPED, T.ERROR, T.SUCCESS], PlanResult.ERROR),
        ([T.ERROR, T.CANCELLED], PlanResult.CANCELLED),
        ([T.SKIPPED, T.CANCELLED, T.SUCCESS], PlanResult.CANCELLED),
        ([T.CANCELLED, T.SKIPPED, T.ERROR, T.SUCCESS], PlanResult.CANCELLED),
    ],
)
def test_plan_result_rule(states: list[StepState], expected: PlanResult) -> None:
    assert plan_result(states) is expected
    assert plan_result(reversed(states)) is expected  # order does not matter
    assert plan_result(iter(states)) is expected  # any iterable, consumed once


def test_a_step_being_skipped_already_makes_a_warning() -> None:
    assert plan_result([T.SUCCESS, T.SKIPPING]) is PlanResult.WARNING


@pytest.mark.parametrize("unfinished", [T.PENDING, T.RUNNING, T.SUSPENDED])
def test_unfinished_steps_give_pending_unless_a_stronger_result_is_known(
    unfinished: StepState,
) -> None:
    assert plan_result([T.SUCCESS, unfinished]) is PlanResult.PENDING
    assert plan_result([unfinished, T.SKIPPED]) is PlanResult.WARNING
    assert plan_result([unfinished, T.ERROR]) is PlanResult.ERROR
    assert plan_result([unfinished, T.CANCELLED]) is PlanResult.CANCELLED


_FINAL_STEP_STATES = st.lists(st.sampled_from([T.SUCCESS, T.ERROR, T.SKIPPED, T.CANCELLED]))


@given(_FINAL_STEP_STATES)
def test_plan_result_of_any_mix_of_final_states_follows_the_priority(
    states: list[StepState],
) -> None:
    if T.CANCELLED in states:
        expected = PlanResult.CANCELLED
    elif T.ERROR in states:
        expected = PlanResult.ERROR
    elif T.SKIPPED in states:
        expected = PlanResult.WARNING
    else:
        expected = PlanResult.SUCCESS
    assert plan_result(states) is expected
