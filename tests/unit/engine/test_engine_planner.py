"""The plan phase (mcoflow.engine.planner): flows, dependencies and input validation."""

from __future__ import annotations

import time
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field

from mcoflow.engine import Action, Event, InputError, PlanResult, PlanState, StepState
from mcoflow.engine.flow import flow_steps
from mcoflow.engine.planner import NewPlan, Planner
from mcoflow.testing import EngineHarness

# ---- actions ---------------------------------------------------------------------------


class Add(Action):
    class Input(BaseModel):
        a: int
        b: int = 0

    class Output(BaseModel):
        sum: int

    def run(self, event: Event | None = None) -> None:
        self.output["sum"] = self.input.a + self.input.b


class Echo(Action):
    """Input without a schema: any JSON."""

    def run(self, event: Event | None = None) -> None:
        self.output.update(self.input)


class Strict(Action):
    class Input(BaseModel):
        model_config = ConfigDict(extra="forbid")
        hosts: list[str]
        count: int = Field(default=1, gt=0)
        note: Any = None

    def run(self, event: Event | None = None) -> None:
        self.output["hosts"] = self.input.hosts


class NoRun(Action):
    def plan(self) -> None:
        pass


class Chain(Action):
    def plan(self, n: int) -> None:
        first = self.plan_action(Add, a=1, b=n)
        second = self.plan_action(Add, a=first.output["sum"], b=10)
        self.plan_action(Add, a=second.output["sum"], b=100)


class SeqOfConc(Action):
    def plan(self) -> None:
        with self.sequence():
            with self.concurrence():
                self.plan_action(Add, a=1)
                self.plan_action(Add, a=2)
            self.plan_action(Add, a=3)


class Inner(Action):
    """Plans two concurrent steps, in a block of the kind it is given."""

    def plan(self, kind: str) -> None:
        block = self.sequence() if kind == "S" else self.concurrence()
        with block:
            self.plan_action(Add, a=10)
            self.plan_action(Add, a=20)


class Outer(Action):
    def plan(self, kind: str) -> None:
        with self.sequence():
            self.plan_action(Add, a=1)
            self.plan_action(Inner, kind=kind)
            self.plan_action(Add, a=2)


class SelfAfterChild(Action):
    def plan(self, n: int) -> None:
        with self.sequence():
            child = self.plan_action(Add, a=n)
            self.plan_self(total=child.output["sum"])

    def run(self, event: Event | None = None) -> None:
        self.output["total"] = self.input["total"]


class SelfBesideChild(Action):
    def plan(self) -> None:
        self.plan_action(Add, a=1)
        self.plan_self(x=1)

    def run(self, event: Event | None = None) -> None:
        pass


class DefaultPlan(Action):
    """No plan(): the default plans itself with the trigger arguments."""

    class Input(BaseModel):
        a: int

    def run(self, event: Event | None = None) -> None:
        pass


class FanIn(Action):
    """Two concurrent producers, one consumer referencing both, one unrelated step."""

    def plan(self) -> None:
        left = self.plan_action(Add, a=1)
        right = self.plan_action(Add, a=2)
        self.plan_action(Echo, values=[left.output["sum"], right.output], fixed=3)
        self.plan_action(Add, a=4)


class RaisesInPlan(Action):
    def plan(self, n: int) -> None:
        self.plan_action(Add, a=n)
        raise RuntimeError("cannot plan this")


class ParentOfRaiser(Action):
    def plan(self) -> None:
        self.plan_action(Add, a=1)
        self.plan_action(RaisesInPlan, n=2)
        self.plan_action(Add, a=3)  # never reached


class RefersToNoRun(Action):
    def plan(self) -> None:
        nothing = self.plan_action(NoRun)
        self.plan_action(Echo, value=nothing.output)


class BadChildInput(Action):
    def plan(self) -> None:
        self.plan_action(Add, a="not a number")


class RefAndBadConstant(Action):
    """One field holds a reference (checked at run time); another is plainly wrong."""

    def plan(self, count: int) -> None:
        hosts = self.plan_action(Echo, hosts=["h1"])
        self.plan_action(Strict, hosts=hosts.output["hosts"], count=count)


class RefAndExtraField(Action):
    def plan(self) -> None:
        hosts = self.plan_action(Echo, hosts=["h1"])
        self.plan_action(Strict, hosts=hosts.output["hosts"], bogus=1)


class RefAndMissingField(Action):
    def plan(self) -> None:
        note = self.plan_action(Echo, note="x")
        self.plan_action(Strict, note=note.output["note"])


class RefToWord(Action):
    """Gives Add's int field a reference to a string: only run time can tell."""

    def plan(self, word: str) -> None:
        producer = self.plan_action(Echo, word=word)
        self.plan_action(Add, a=producer.output["word"], b=1)


class ForwardRawReference(Action):
    """A child placed first in a sequence refers (by hand) to its parent's own step,
    which plan_self places after it: a deadlock."""

    def plan(self) -> None:
        with self.sequence():
            self.plan_action(Echo, value={"$ref": [1]})
            self.plan_self(x=1)

    def run(self, event: Event | None = None) -> None:
        pass


class UnknownRawReference(Action):
    def plan(self) -> None:
        self.plan_action(Echo, value={"$ref": [99]})


class LaterRawReference(Action):
    """A hand-written reference to a step that is planned only afterwards."""

    def plan(self) -> None:
        with self.sequence():
            self.plan_action(Echo, value={"$ref": [3]})
            self.plan_action(Echo, value=1)


class RunWithoutPlanSelf(Action):
    """Has a run phase but its plan() never calls plan_self."""

    def plan(self) -> None:
        pass

    def run(self, event: Event | None = None) -> None:
        self.output["ran"] = True


class SeqWithUnplannedRun(Action):
    def plan(self) -> None:
        with self.sequence():
            self.plan_action(Add, a=1)
            self.plan_action(RunWithoutPlanSelf)


class PlanSelfTwice(Action):
    def plan(self, kind: str) -> None:
        with self.sequence() if kind == "S" else self.concurrence():
            self.plan_self(n=1)
            self.plan_action(Add, a=1)
            self.plan_self(n=2)

    def run(self, event: Event | None = None) -> None:
        pass


def plan_of(cls: type[Action], **args: Any) -> NewPlan:
    return Planner().plan(cls, args)


def step(plan: NewPlan, idx: int) -> Any:
    (found,) = [s for s in plan.steps if s.idx == idx]
    return found


def deps(plan: NewPlan) -> dict[int, tuple[int, tuple[int, ...], tuple[int, ...]]]:
    """idx -> (pending_deps, dependents, ref_dependents) of every step with a run phase."""
    return {
        s.idx: (s.pending_deps, s.dependents, s.ref_dependents) for s in plan.steps if s.has_run
    }


# ---- flows -------------------------------------------------------------------------------


def test_sequence_of_a_concurrence_then_a_step() -> None:
    plan = plan_of(SeqOfConc)
    assert (plan.state, plan.result, plan.error) == (PlanState.PLANNED, PlanResult.PENDING, None)
    assert plan.flow == ["S", ["C", 2, 3], 4]
    assert deps(plan) == {2: (0, (4,), ()), 3: (0, (4,), ()), 4: (2, (), ())}
    assert plan.runnable_steps == [2, 3]
    root = step(plan, 1)
    assert (root.has_run, root.state) == (False, StepState.SUCCESS)  # plan-only action
    assert [s.parent for s in plan.steps] == [None, 1, 1, 1]


def test_references_alone_order_a_chain_in_a_concurrence() -> None:
    plan = plan_of(Chain, n=5)
    assert plan.flow == ["C", 2, 3, 4]
    assert step(plan, 3).input == {"a": {"$ref": [2, "sum"]}, "b": 10}
    assert step(plan, 4).input == {"a": {"$ref": [3, "sum"]}, "b": 100}
    assert deps(plan) == {2: (0, (3,), (3,)), 3: (1, (4,), (4,)), 4: (1, (), ())}
    assert plan.runnable_steps == [2]


def test_consumer_of_two_references_waits_for_both_and_bystander_runs_at_once() -> None:
    plan = plan_of(FanIn)
    assert plan.flow == ["C", 2, 3, 4, 5]
    assert step(plan, 4).input == {
        "values": [{"$ref": [2, "sum"]}, {"$ref": [3]}],
        "fixed": 3,
    }
    assert deps(plan) == {
        2: (0, (4,), (4,)),
        3: (0, (4,), (4,)),
        4: (2, (), ()),
        5: (0, (), ()),
    }
    assert plan.runnable_steps == [2, 3, 5]


@pytest.mark.parametrize(
    ("kind", "flow", "expected"),
    [
        # a sequence in a sequence flattens into it
        ("S", ["S", 2, 4, 5, 6], {2: (0, (4,)), 4: (1, (5,)), 5: (1, (6,)), 6: (1, ())}),
        ("C", ["S", 2, ["C", 4, 5], 6], {2: (0, (4, 5)), 4: (1, (6,)), 5: (1, (6,)), 6: (2, ())}),
    ],
)
def test_child_action_blocks_nest_in_the_parents_sequence(
    kind: str, flow: list[Any], expected: dict[int, tuple[int, tuple[int, ...]]]
) -> None:
    plan = plan_of(Outer, kind=kind)
    assert plan.flow == flow
    assert {i: (p, d) for i, (p, d, _) in deps(plan).items()} == expected
    inner = step(plan, 3)
    assert (inner.action, inner.has_run, inner.parent) == (Inner.name, False, 1)
    assert [step(plan, i).parent for i in (4, 5)] == [3, 3]


def test_plan_self_after_a_child_in_a_sequence_runs_last_with_its_reference() -> None:
    plan = plan_of(SelfAfterChild, n=4)
    assert plan.flow == ["S", 2, 1]
    assert step(plan, 1).input == {"total": {"$ref": [2, "sum"]}}
    # ordering and reference name the same producer: one pending dependency, not two
    assert deps(plan) == {1: (1, (), ()), 2: (0, (1,), (1,))}
    assert plan.runnable_steps == [2]


def test_plan_self_without_a_block_is_concurrent_with_children() -> None:
    plan = plan_of(SelfBesideChild)
    assert plan.flow == ["C", 2, 1]
    assert plan.runnable_steps == [1, 2]


def test_default_plan_plans_itself_with_the_validated_input() -> None:
    plan = plan_of(DefaultPlan, a="7")
    assert plan.flow == 1
    assert plan.args == {"a": 7}
    assert step(plan, 1).input == {"a": 7}
    assert plan.runnable_steps == [1]
    assert plan.label == "DefaultPlan(a=7)"


def test_plan_with_nothing_to_run_has_no_flow() -> None:
    plan = plan_of(NoRun)
    assert (plan.state, plan.flow, plan.runnable_steps) == (PlanState.PLANNED, None, [])
    assert step(plan, 1).state is StepState.SUCCESS


def test_history_records_planning() -> None:
    assert plan_of(Chain, n=1).history == [("planned", "4 actions")]


# ---- input validation --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"a": "x"}, r"invalid input for .*\.Add: a: Input should be a valid integer"),
        ({"b": 1}, r"a: Field required"),
    ],
)
def test_bad_input_at_trigger_is_an_input_error_naming_the_field(
    args: dict[str, Any], message: str
) -> None:
    with pytest.raises(InputError, match=message) as caught:
        plan_of(Add, **args)
    assert caught.value.action == Add.name
    assert caught.value.problems[0][0] == "a"


def test_input_error_names_nested_and_extra_fields() -> None:
    with pytest.raises(InputError, match=r"hosts\.1: Input should be a valid string"):
        plan_of(Strict, hosts=["web1", 3])
    with pytest.raises(InputError, match="bogus: Extra inputs are not permitted"):
        plan_of(Strict, hosts=["web1"], bogus=True)
    with pytest.raises(InputError, match="count: Input should be greater than 0") as caught:
        plan_of(Strict, hosts=["web1"], count=0)
    assert caught.value.problems == [("count", "Input should be greater than 0")]


def test_input_is_coerced_and_defaults_filled_at_trigger() -> None:
    plan = plan_of(Strict, hosts=("web1", "web2"), count="3")
    assert plan.args == {"hosts": ["web1", "web2"], "count": 3, "note": None}


@pytest.mark.parametrize(
    "args",
    [
        {"value": {"$ref": [1]}},
        {"value": [1, {"nested": {"$ref": [2, "sum"]}}]},
    ],
)
def test_ref_key_in_user_input_is_refused(args: dict[str, Any]) -> None:
    with pytest.raises(InputError, match=r"value: '\$ref' is reserved for output references"):
        plan_of(Echo, **args)


def test_a_dict_with_ref_and_other_keys_is_ordinary_data() -> None:
    plan = plan_of(Echo, value={"$ref": [1], "other": 2})
    assert step(plan, 1).input == {"value": {"$ref": [1], "other": 2}}
    assert deps(plan) == {1: (0, (), ())}


def test_reference_in_a_typed_field_is_kept_for_run_time_validation() -> None:
    plan = plan_of(RefToWord, word="abc")
    assert plan.state is PlanState.PLANNED
    # Add.a is an int: the reference is stored as is, the default for b is filled at run time
    assert step(plan, 3).input == {"a": {"$ref": [2, "word"]}, "b": 1}


def test_child_input_error_fails_planning_on_the_parent_that_planned_it() -> None:
    plan = plan_of(BadChildInput)
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.ERROR)
    assert plan.error is not None and "a: Input should be a valid integer" in plan.error
    assert [s.idx for s in plan.steps] == [1]  # the bad child was never planned
    assert step(plan, 1).state is StepState.ERROR


def test_extra_field_next_to_a_reference_is_refused_at_plan_time() -> None:
    plan = plan_of(RefAndExtraField)
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.ERROR)
    assert plan.error is not None and "bogus: extra inputs are not permitted" in plan.error


def test_missing_field_next_to_a_reference_is_refused_at_plan_time() -> None:
    plan = plan_of(RefAndMissingField)
    assert plan.state is PlanState.STOPPED
    assert plan.error is not None and "hosts: field required" in plan.error


def test_constraint_on_a_plain_field_is_checked_even_when_another_field_is_a_reference() -> None:
    good = plan_of(RefAndBadConstant, count=2)
    assert good.state is PlanState.PLANNED
    assert step(good, 3).input == {"hosts": {"$ref": [2, "hosts"]}, "count": 2}
    # count=0 violates Field(gt=0) exactly as it would without the reference next to it
    bad = plan_of(RefAndBadConstant, count=0)
    assert bad.error is not None and "count" in bad.error, (
        f"count=0 was accepted at plan time: state={bad.state}, error={bad.error!r}"
    )
    assert (bad.state, bad.result) == (PlanState.STOPPED, PlanResult.ERROR)


# ---- planning failures -----------------------------------------------------------------------


def test_exception_in_plan_stops_the_plan_with_the_error_on_the_raiser() -> None:
    plan = plan_of(ParentOfRaiser)
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.ERROR)
    assert plan.error == "planning failed: RuntimeError: cannot plan this"
    assert plan.history == [("planning failed", plan.error)]
    states = {s.idx: (s.action, s.state) for s in plan.steps}
    assert states == {
        1: (ParentOfRaiser.name, StepState.CANCELLED),
        2: (Add.name, StepState.CANCELLED),
        3: (RaisesInPlan.name, StepState.ERROR),
        4: (Add.name, StepState.CANCELLED),  # planned by the raiser before it raised
    }
    error = step(plan, 3).error
    assert error["type"] == "RuntimeError"
    assert error["message"] == "cannot plan this"
    assert "Traceback" in error["traceback"] and "cannot plan this" in error["traceback"]
    assert all(s.error is None for s in plan.steps if s.idx != 3)
    assert plan.runnable_steps == [2, 4]  # pending_deps untouched; the store must not run them


def test_exception_in_the_root_plan_lands_on_the_root() -> None:
    plan = plan_of(RaisesInPlan, n=1)
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.ERROR)
    assert step(plan, 1).state is StepState.ERROR
    assert step(plan, 2).state is StepState.CANCELLED


def test_referencing_output_of_an_action_without_run_phase_is_refused() -> None:
    plan = plan_of(RefersToNoRun)
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.ERROR)
    assert plan.error is not None and "NoRun has no run phase, so it has no output" in plan.error
    assert step(plan, 1).state is StepState.ERROR  # the action that asked for the output


def test_forward_reference_in_a_sequence_is_refused_as_a_cycle() -> None:
    plan = plan_of(ForwardRawReference)
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.ERROR)
    assert plan.error is not None and "dependency cycle through steps [1, 2]" in plan.error
    assert step(plan, 1).error is not None  # the error is recorded somewhere visible


def test_reference_to_a_step_planned_later_is_refused() -> None:
    plan = plan_of(LaterRawReference)
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.ERROR)
    assert plan.error == "planning failed: ValueError: step 2 refers to unknown step 3"


def test_reference_to_a_step_that_does_not_exist_is_refused() -> None:
    plan = plan_of(UnknownRawReference)
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.ERROR)
    assert plan.error == "planning failed: ValueError: step 2 refers to unknown step 99"


def test_plan_action_outside_plan_is_refused() -> None:
    with pytest.raises(RuntimeError, match="only allowed in plan"):
        Add(1).plan_action(Add, a=1)


def test_planning_something_that_is_not_an_action_is_refused() -> None:
    with pytest.raises(TypeError, match="is not a concrete Action"):
        Planner().plan(dict, {})  # type: ignore[arg-type]


def test_a_step_with_a_run_phase_that_is_not_in_the_flow_never_becomes_runnable() -> None:
    # RunWithoutPlanSelf overrides plan() without plan_self: it planned no run step, so
    # it must not run — least of all ignoring the sequence it was planned in.
    plan = plan_of(SeqWithUnplannedRun)
    in_flow = set(flow_steps(plan.flow))
    assert plan.flow == 2
    stray = [s.idx for s in plan.steps if s.idx in plan.runnable_steps and s.idx not in in_flow]
    assert stray == [], f"steps {stray} would run outside the flow {plan.flow}"


@pytest.mark.parametrize("kind", ["S", "C"])
def test_plan_self_twice_does_not_put_a_step_twice_in_the_flow(kind: str) -> None:
    plan = plan_of(PlanSelfTwice, kind=kind)
    listed = list(flow_steps(plan.flow))
    assert plan.state is PlanState.STOPPED or len(listed) == len(set(listed)), (
        f"flow {plan.flow} lists a step twice; error={plan.error!r}"
    )


async def test_run_phase_not_planned_with_plan_self_is_not_run(harness: EngineHarness) -> None:
    plan = await harness.run(SeqWithUnplannedRun)
    assert plan.state is PlanState.STOPPED
    steps = {s.idx: s for s in await harness.world.steps(plan.id)}
    assert steps[2].output == {"sum": 1}
    assert steps[3].output is None, (
        f"run() of an action that never called plan_self ran: output {steps[3].output}, "
        f"started {steps[3].started_at} while the step before it in the sequence "
        f"ran {steps[2].started_at}..{steps[2].ended_at}"
    )


async def test_ref_key_in_the_input_of_a_delayed_plan_is_refused_when_delayed(
    harness: EngineHarness,
) -> None:
    # trigger refuses it at once; delay must too, not accept it and fail at start time
    with pytest.raises(InputError, match=r"\$ref"):
        await harness.world.delay(Echo, start_at=time.time() + 3600, value={"$ref": [1]})
    page = await harness.world.list_plans()
    assert page.total == 0, "the delayed plan was stored with a reference in its input"


# ---- run-time validation of referenced values (on the real engine) --------------------------


async def test_referenced_value_is_validated_and_coerced_at_run_time(
    harness: EngineHarness,
) -> None:
    plan = await harness.run(RefToWord, word="41")
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    steps = {s.idx: s for s in await harness.world.steps(plan.id)}
    assert steps[3].output == {"sum": 42}  # "41" coerced to the declared int


async def test_referenced_value_of_the_wrong_type_errors_the_step_naming_the_field(
    harness: EngineHarness,
) -> None:
    plan = await harness.run(RefToWord, word="abc")
    assert (plan.state, plan.result) == (PlanState.PAUSED, PlanResult.ERROR)
    steps = {s.idx: s for s in await harness.world.steps(plan.id)}
    assert steps[2].state is StepState.SUCCESS
    assert steps[3].state is StepState.ERROR
    assert steps[3].error is not None
    assert steps[3].error["type"] == "InputError"
    assert "a: Input should be a valid integer" in steps[3].error["message"]
