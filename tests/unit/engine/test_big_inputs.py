"""Inputs of many hosts (issue 16): a fleet's chunk of sub-plans is made without making
those before it again, and the reference walks skip plain lists in one pass without
missing a reference among them."""

from __future__ import annotations

from typing import Any

from mcoflow.engine import Action, SubPlan
from mcoflow.engine.flow import (
    contains_reference,
    encode_references,
    referenced_steps,
    resolve_references,
)
from mcoflow.engine.subplans import LazySubPlans


class Noop(Action):
    name = "test.big_inputs.noop"


def test_a_chunk_makes_only_its_own_sub_plans() -> None:
    made: list[str] = []

    def make(host: str) -> SubPlan:
        made.append(host)
        return SubPlan(Noop, {"host": host}, label=host)

    plans = LazySubPlans([f"h{n}" for n in range(100_000)], make)
    assert len(plans) == 100_000
    assert made == []
    chunk = plans[99_000:99_003]
    assert [p.label for p in chunk] == ["h99000", "h99001", "h99002"]
    assert made == ["h99000", "h99001", "h99002"]
    assert plans[5].args == {"host": "h5"}


def test_plain_lists_are_copied_and_hold_no_reference() -> None:
    hosts: list[Any] = [f"h{n}" for n in range(1000)] + [1, 2.5, True, None]
    value = {"hosts": hosts}
    assert not contains_reference(value)
    assert referenced_steps(value) == set()
    for walked in (encode_references(value), resolve_references(value, {})):
        assert walked == value
        assert walked["hosts"] is not hosts  # a copy, as for any other list


def test_a_reference_among_plain_items_is_still_found_and_resolved() -> None:
    ref = {"$ref": [2, "hosts"]}
    value = {"hosts": ["h1", ref, "h2"]}
    assert contains_reference(value)
    assert referenced_steps(value) == {2}
    assert resolve_references(value, {2: {"hosts": ["x"]}}) == {"hosts": ["h1", ["x"], "h2"]}
