"""The engine's central rule, ``plan_fate`` (DESIGN §2): what becomes of a running plan
given its steps, by examples and by properties over random step-state combinations."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from mcoflow.engine.action import RescueStrategy
from mcoflow.engine.fate import FINALIZE, RUNS_ON, PlanFate, StepGroup, Verdict, plan_fate
from mcoflow.engine.states import STEP_DONE, PlanResult, StepState, plan_result

S = StepState
R = RescueStrategy

groups_st = st.lists(
    st.builds(
        StepGroup,
        state=st.sampled_from(StepState),
        rescue=st.sampled_from(RescueStrategy),
        ready=st.integers(0, 3),
        finalizers=st.integers(0, 3),
    ),
    max_size=8,
)
# groups with nothing running, waiting or due
idle_st = st.lists(
    st.builds(
        StepGroup,
        state=st.sampled_from([s for s in StepState if s not in (S.RUNNING, S.SUSPENDED)]),
        rescue=st.sampled_from(RescueStrategy),
        finalizers=st.integers(0, 3),
    ),
    max_size=8,
)


def _reference(
    rows: list[tuple[str, str, int, int]], cancel_requested: bool
) -> tuple[str, PlanResult | None]:
    """The rule as ``Store._settle`` wrote it before it had a name, on its rows (state,
    rescue, ready count, finalize count): the oracle for "exactly today's results"."""
    busy = any(r[0] in (S.RUNNING, S.SUSPENDED) or r[2] > 0 for r in rows)
    if busy:
        return "busy", None
    states = [StepState(r[0]) for r in rows]
    result = plan_result(states)
    all_done = all(s in (StepState.SUCCESS, StepState.SKIPPED) for s in states)
    if all_done and any(r[3] for r in rows):
        return "finalize", None
    fails = any(r[0] == StepState.ERROR and r[1] == "fail" for r in rows)
    if result is PlanResult.ERROR and not (fails or cancel_requested):
        return "paused", result
    if result is PlanResult.PENDING:
        result = PlanResult.CANCELLED if cancel_requested else PlanResult.ERROR
    return "stopped", result


_NAMES = {
    Verdict.RUNS_ON: "busy",
    Verdict.FINALIZE: "finalize",
    Verdict.PAUSE: "paused",
    Verdict.STOP: "stopped",
}


@given(groups_st, st.booleans())
def test_the_same_fate_as_the_rule_it_replaced(groups: list[StepGroup], cancel: bool) -> None:
    fate = plan_fate(groups, cancel_requested=cancel)
    rows = [(g.state.value, g.rescue.value, g.ready, g.finalizers) for g in groups]
    verdict, result = _reference(rows, cancel)
    assert _NAMES[fate.verdict] == verdict
    if result is not None:
        assert fate.result is result


@given(groups_st, st.booleans(), st.randoms())
def test_the_order_of_the_groups_does_not_matter(
    groups: list[StepGroup], cancel: bool, rnd: random.Random
) -> None:
    shuffled = list(groups)
    rnd.shuffle(shuffled)
    assert plan_fate(shuffled, cancel_requested=cancel) == plan_fate(
        groups, cancel_requested=cancel
    )


@given(groups_st, st.booleans())
def test_a_plan_with_a_step_running_waiting_or_due_runs_on(
    groups: list[StepGroup], cancel: bool
) -> None:
    busy = any(g.state in (S.RUNNING, S.SUSPENDED) or g.ready for g in groups)
    assert (plan_fate(groups, cancel_requested=cancel) == RUNS_ON) is busy


@given(idle_st, st.booleans())
def test_an_idle_plan_is_decided(groups: list[StepGroup], cancel: bool) -> None:
    assert plan_fate(groups, cancel_requested=cancel).verdict is not Verdict.RUNS_ON


@given(idle_st, st.booleans())
def test_all_done_finalizes_if_some_step_has_a_finalize_phase_else_stops_with_its_result(
    groups: list[StepGroup], cancel: bool
) -> None:
    if not all(g.state in STEP_DONE for g in groups):
        return
    fate = plan_fate(groups, cancel_requested=cancel)
    if any(g.finalizers for g in groups):
        assert fate == FINALIZE
    else:
        expected = PlanResult.WARNING if any(g.state is S.SKIPPED for g in groups) else None
        assert fate == PlanFate(Verdict.STOP, expected or PlanResult.SUCCESS)


@given(idle_st, st.booleans())
def test_a_stopped_plan_never_ends_pending_and_a_pause_is_an_error(
    groups: list[StepGroup], cancel: bool
) -> None:
    fate = plan_fate(groups, cancel_requested=cancel)
    if fate.verdict is Verdict.STOP:
        assert fate.result is not PlanResult.PENDING
    if fate.verdict is Verdict.PAUSE:
        assert fate.result is PlanResult.ERROR
        assert not cancel


@given(idle_st, st.booleans())
def test_a_failed_step_with_rescue_fail_stops_the_plan_in_error(
    groups: list[StepGroup], cancel: bool
) -> None:
    groups = [*groups, StepGroup(S.ERROR, R.FAIL)]
    fate = plan_fate(groups, cancel_requested=cancel)
    cancelled = any(g.state is S.CANCELLED for g in groups)
    assert fate == PlanFate(Verdict.STOP, PlanResult.CANCELLED if cancelled else PlanResult.ERROR)


@given(idle_st)
def test_a_failed_step_pauses_the_plan_unless_it_fails_for_good_or_was_cancelled(
    groups: list[StepGroup],
) -> None:
    groups = [g for g in groups if g.rescue is not R.FAIL and g.state is not S.CANCELLED]
    groups.append(StepGroup(S.ERROR, R.PAUSE))
    assert plan_fate(groups) == PlanFate(Verdict.PAUSE, PlanResult.ERROR)
    assert plan_fate(groups, cancel_requested=True) == PlanFate(Verdict.STOP, PlanResult.ERROR)


def test_examples() -> None:
    assert plan_fate([]) == PlanFate(Verdict.STOP, PlanResult.SUCCESS)
    assert plan_fate([StepGroup(S.SUCCESS, R.PAUSE, finalizers=1)]) == FINALIZE
    assert plan_fate([StepGroup(S.PENDING, R.PAUSE, ready=1)]) == RUNS_ON
    assert plan_fate([StepGroup(S.SUSPENDED, R.PAUSE)], cancel_requested=True) == RUNS_ON
    # pending steps nothing will run (their predecessor failed for good, or a cancel)
    assert plan_fate([StepGroup(S.PENDING, R.PAUSE)]) == PlanFate(Verdict.STOP, PlanResult.ERROR)
    assert plan_fate([StepGroup(S.PENDING, R.PAUSE)], cancel_requested=True) == PlanFate(
        Verdict.STOP, PlanResult.CANCELLED
    )
    # a failed step that fails for good does not finalize, even with finalizers around
    assert plan_fate(
        [StepGroup(S.SUCCESS, R.PAUSE, finalizers=2), StepGroup(S.ERROR, R.FAIL)]
    ) == PlanFate(Verdict.STOP, PlanResult.ERROR)
    assert plan_fate([StepGroup(S.SKIPPED, R.SKIP)]) == PlanFate(Verdict.STOP, PlanResult.WARNING)
