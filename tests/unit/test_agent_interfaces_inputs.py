"""The operator's inputs checked against a declared interface before anything is sent:
key=value words typed by the interface, JSON values as they are, each error naming the
input."""

from __future__ import annotations

from typing import Any

import pytest

from mcoflow.actions.agent_interfaces import (
    AgentSpec,
    InterfaceFormatError,
    check_inputs,
    find_action,
    parse_assignments,
)
from mcoflow.agent.interface import ActionInterface, FieldType, InputSpec
from mcoflow.agent.plugins import make_agents
from mcoflow.agent.plugins.base import Agent, AgentAction
from mcoflow.job_request import JobInputError


class KitchenSink(Agent):
    """One input of every type."""

    name = "sink"

    def declare(self) -> dict[str, AgentAction]:
        inputs = (
            InputSpec("name", pattern=r"[a-z]+", max_length=8),
            InputSpec("count", FieldType.INTEGER, required=False),
            InputSpec("ratio", FieldType.NUMBER, required=False),
            InputSpec("force", FieldType.BOOLEAN, required=False),
            InputSpec("tags", FieldType.LIST, required=False),
            InputSpec("extra", FieldType.DICT, required=False),
        )
        return {"go": AgentAction(ActionInterface("go", "do it", inputs=inputs), self.go)}

    async def go(self, host: Any, inputs: dict[str, Any]) -> dict[str, Any]:
        return {}


SINK = AgentSpec.from_description("sink", KitchenSink().describe())
GO = SINK.actions["go"]


def test_text_is_typed_as_declared() -> None:
    words = [
        "name=web", "count=3", "ratio=0.5", "force=yes", "tags=a, b,,c", 'extra={"k": 1}',
    ]  # fmt: skip
    assert check_inputs(GO, parse_assignments(words), as_text=True) == {
        "name": "web",
        "count": 3,
        "ratio": 0.5,
        "force": True,
        "tags": ["a", "b", "c"],
        "extra": {"k": 1},
    }
    assert check_inputs(GO, {"name": "x", "tags": '["a,b"]', "force": "off"}, as_text=True) == {
        "name": "x",
        "tags": ["a,b"],
        "force": False,
    }


@pytest.mark.parametrize(
    ("values", "field", "words"),
    [
        ({"name": "web", "count": "three"}, "inputs.count", "must be an integer, got 'three'"),
        ({"name": "web", "ratio": "nan"}, "inputs.ratio", "must be a finite number"),
        ({"name": "web", "ratio": "x"}, "inputs.ratio", "must be a number"),
        ({"name": "web", "force": "maybe"}, "inputs.force", "must be true or false"),
        ({"name": "web", "extra": "[1]"}, "inputs.extra", "must be a JSON object"),
        ({"name": "web", "tags": "[1"}, "inputs.tags", "must be a JSON list"),
        ({"name": "Web"}, "inputs.name", "does not match [a-z]+"),
        ({"name": "abcdefghi"}, "inputs.name", "is longer than 8 characters"),
        ({}, "inputs.name", "is required (sink.go takes: name (string, required), count"),
        ({"name": "web", "colour": "red"}, "inputs.colour", "is not an input of sink.go"),
    ],
)
def test_each_bad_text_input_is_named(values: dict[str, str], field: str, words: str) -> None:
    with pytest.raises(JobInputError) as caught:
        check_inputs(GO, values, as_text=True)
    assert caught.value.field == field
    assert words in caught.value.message


def test_json_values_are_checked_as_they_are() -> None:
    assert check_inputs(GO, {"name": "a", "count": 2}, as_text=False) == {"name": "a", "count": 2}
    with pytest.raises(JobInputError) as caught:
        check_inputs(GO, {"name": "a", "count": "2"}, as_text=False)
    assert (caught.value.field, caught.value.message.split(" (")[0]) == (
        "inputs.count",
        "must be an integer, got str",
    )


@pytest.mark.parametrize(
    ("words", "field", "message"),
    [
        (["name"], "inputs", "'name' is not key=value"),
        (["=x"], "inputs", "'=x' is not key=value"),
        (["a=1", "a=2"], "inputs.a", "given twice"),
    ],
)
def test_assignments_are_key_value_once(words: list[str], field: str, message: str) -> None:
    with pytest.raises(JobInputError) as caught:
        parse_assignments(words)
    assert (caught.value.field, caught.value.message) == (field, message)


def test_a_value_may_hold_equals_signs_and_be_empty() -> None:
    assert parse_assignments(["q=a=b", "e="]) == {"q": "a=b", "e": ""}


def test_the_shipped_agents_read_back_with_read_only_marked() -> None:
    agents = {n: AgentSpec.from_description(n, a.describe()) for n, a in make_agents([]).items()}
    agents |= {
        n: AgentSpec.from_description(n, a.describe())
        for n, a in make_agents(["package", "service"]).items()
    }
    assert find_action(agents, "package", "status").read_only
    assert not find_action(agents, "service", "restart").read_only
    assert agents["package"].describe()["actions"]["status"]["read_only"] is True
    with pytest.raises(JobInputError) as caught:
        find_action(agents, "service", "reload")
    assert caught.value.field == "action"
    assert "its actions: restart, start, status, stop" in caught.value.message


def test_a_malformed_interface_is_refused_naming_the_agent() -> None:
    with pytest.raises(InterfaceFormatError, match="agent odd: malformed interface"):
        AgentSpec.from_description("odd", {"actions": {"go": {"inputs": {"x": {"type": "blob"}}}}})
