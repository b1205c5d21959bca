"""Hypothesis: random plans run on the real engine respect ordering and references.

Each example builds a random tree of sequence/concurrence blocks and child actions
(some with their own run step placed by ``plan_self``), gives random leaves references
to the outputs of steps planned before them, triggers it on the engine and checks,
from what every step recorded while it ran, that each step

* ran exactly once (a process-wide run counter and ``attempts == 1``),
* started after every step it references had finished, and got their real output,
* started after every step the blocks order before it had finished.

The expected order is computed here from the tree, independently of the engine's flow code.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcoflow.engine import Action, Event, PlannedAction, PlanResult, PlanState, StepState
from mcoflow.testing import EngineHarness

# process-wide: the executor runs in this process, so these see every run
CLOCK = itertools.count(1)
RUNS: Counter[tuple[str, str]] = Counter()
# handles of what has been planned so far, by label; only used while a plan is planned
PLANNED: dict[str, PlannedAction] = {}


class Recorder(Action):
    abstract = True

    async def run(self, event: Event | None = None) -> None:
        started = next(CLOCK)
        await asyncio.sleep(0)  # let concurrent steps interleave
        RUNS[(self.plan_id, self.input["label"])] += 1
        self.output.update(
            label=self.input["label"],
            start=started,
            saw=self.input["refs"],
            end=next(CLOCK),
        )


class Leaf(Recorder):
    pass


def _refs(label: str, refs: dict[str, list[list[str]]]) -> dict[str, Any]:
    wanted: dict[str, Any] = {}
    for producer, how in refs.get(label, []):
        planned = PLANNED[producer]
        wanted[producer] = planned.output if how == "whole" else planned.output[how]
    return wanted


def _plan_children(action: Action, children: list[dict[str, Any]], refs: Any) -> None:
    for node in children:
        kind = node["t"]
        if kind == "leaf":
            PLANNED[node["label"]] = action.plan_action(
                Leaf, label=node["label"], refs=_refs(node["label"], refs)
            )
        elif kind == "self":
            PLANNED[node["label"]] = action.plan_self(
                label=node["label"], refs=_refs(node["label"], refs)
            )
        elif kind == "act":
            cls = CompositeWithRun if node["run"] else Composite
            action.plan_action(cls, node=node, refs=refs)
        else:
            with action.sequence() if kind == "S" else action.concurrence():
                _plan_children(action, node["c"], refs)


class Composite(Action):
    """A child action that plans its children in a block of the given kind (or none)."""

    def plan(self, node: dict[str, Any], refs: Any) -> None:
        if node["block"] is None:
            _plan_children(self, node["c"], refs)
        else:
            with self.sequence() if node["block"] == "S" else self.concurrence():
                _plan_children(self, node["c"], refs)


class CompositeWithRun(Composite, Recorder):
    """The same, with its own run step placed where its children list says "self"."""


class RandomPlan(Action):
    def plan(self, tree: dict[str, Any], refs: Any) -> None:
        PLANNED.clear()
        try:
            _plan_children(self, [tree], refs)
        finally:
            PLANNED.clear()


# ---- random trees -------------------------------------------------------------------------

LEAF: dict[str, Any] = {"t": "leaf"}


def _composite(run: bool, block: str | None, children: list[Any], at: int) -> dict[str, Any]:
    children = list(children)
    if run:
        children.insert(at % (len(children) + 1), {"t": "self"})
    return {"t": "act", "run": run, "block": block, "c": children}


def _extend(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    kids = st.lists(inner, min_size=1, max_size=4)
    block = st.builds(lambda t, c: {"t": t, "c": c}, st.sampled_from("SC"), kids)
    # a composite may plan nothing at all: empty blocks vanish from the flow
    act = st.builds(
        _composite,
        st.booleans(),
        st.sampled_from(["S", "C", None]),
        st.lists(inner, max_size=4),
        st.integers(0, 4),
    )
    return block | act


TREES = st.recursive(st.just(LEAF), _extend, max_leaves=16)


def _label(tree: Any, order: list[str]) -> Any:
    """Copy ``tree`` with labels on run steps, in planning order (depth first)."""
    if tree["t"] in ("leaf", "self"):
        order.append(f"s{len(order)}")
        return {"t": tree["t"], "label": order[-1]}
    return {**tree, "c": [_label(c, order) for c in tree["c"]]}


@st.composite
def random_plans(draw: st.DrawFn) -> tuple[dict[str, Any], list[str], dict[str, list[list[str]]]]:
    order: list[str] = []
    tree = _label(draw(TREES), order)
    refs: dict[str, list[list[str]]] = {}
    for i, label in enumerate(order[1:], start=1):
        producers = draw(st.sets(st.sampled_from(order[:i]), max_size=3))
        if producers:
            refs[label] = [
                [p, draw(st.sampled_from(["whole", "end", "label"]))] for p in sorted(producers)
            ]
    return tree, order, refs


def _sequence_order(node: Any, pairs: set[tuple[str, str]]) -> list[str]:
    """Labels inside ``node``; adds (before, after) for every pair a sequence orders."""
    if node["t"] in ("leaf", "self"):
        return [node["label"]]
    groups = [_sequence_order(c, pairs) for c in node["c"]]
    ordered = node["t"] == "S" or (node["t"] == "act" and node["block"] == "S")
    if ordered:
        for i, early in enumerate(groups):
            for late in groups[i + 1 :]:
                pairs.update((a, b) for a in early for b in late)
    return [label for group in groups for label in group]


# ---- the property ----------------------------------------------------------------------------


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(random_plans())
async def test_random_plans_run_every_step_once_after_its_references_and_predecessors(
    harness: EngineHarness,
    example: tuple[dict[str, Any], list[str], dict[str, list[list[str]]]],
) -> None:
    tree, labels, refs = example
    plan = await harness.run(RandomPlan, tree=tree, refs=refs, timeout=30)
    assert (plan.state, plan.result, plan.error) == (
        PlanState.STOPPED,
        PlanResult.SUCCESS,
        None,
    ), f"flow {plan.flow}"

    steps = await harness.world.steps(plan.id)
    runs = [s for s in steps if s.has_run]
    assert len(runs) == len(labels), f"{len(runs)} run steps for {len(labels)} planned runs"
    assert all(s.output for s in runs), [s for s in runs if not s.output]
    out = {s.output["label"]: s.output for s in runs if s.output}
    assert sorted(out) == sorted(labels), f"ran {sorted(out)}, planned {sorted(labels)}"
    for s in runs:
        label = s.output["label"]
        assert (s.state, s.attempts) == (StepState.SUCCESS, 1), f"{label}: {s}"
        assert RUNS[(plan.id, label)] == 1, f"{label} ran {RUNS[(plan.id, label)]} times"

    for label, wanted in refs.items():
        for producer, how in wanted:
            assert out[label]["start"] > out[producer]["end"], (
                f"{label} started before {producer}, whose output it references, finished; "
                f"flow {plan.flow}"
            )
            expected = out[producer] if how == "whole" else out[producer][how]
            assert out[label]["saw"][producer] == expected

    pairs: set[tuple[str, str]] = set()
    _sequence_order(tree, pairs)
    for before, after in sorted(pairs):
        assert out[after]["start"] > out[before]["end"], (
            f"{after} started before {before}, which a sequence puts first, finished; "
            f"flow {plan.flow}"
        )
