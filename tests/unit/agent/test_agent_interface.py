from __future__ import annotations

import math

import pytest

from mcoflow.agent.interface import (
    ActionInterface,
    FieldType,
    InputSpec,
    InvalidInput,
    MissingInput,
    OutputSpec,
)
from mcoflow.agent.plugins import PackageAgent, RpcUtilAgent, ServiceAgent

IFACE = ActionInterface(
    "demo",
    inputs=(
        InputSpec("name", pattern=r"[a-z]+", max_length=8),
        InputSpec("count", FieldType.INTEGER, required=False),
        InputSpec("ratio", FieldType.NUMBER, required=False),
        InputSpec("flag", FieldType.BOOLEAN, required=False),
        InputSpec("items", FieldType.LIST, required=False, max_length=2),
        InputSpec("opts", FieldType.DICT, required=False),
    ),
    outputs=(
        OutputSpec("changed", FieldType.BOOLEAN, default=False),
        OutputSpec("out", default=""),
    ),
)


def test_valid_inputs_pass_through() -> None:
    data = {"name": "abc", "count": 3, "ratio": 0.5, "flag": True, "items": [1], "opts": {}}
    assert IFACE.validate_inputs(data) == data


def test_optional_inputs_may_be_absent_or_null() -> None:
    assert IFACE.validate_inputs({"name": "abc", "count": None}) == {"name": "abc"}


def test_missing_required_input_names_the_field() -> None:
    with pytest.raises(MissingInput) as caught:
        IFACE.validate_inputs({"count": 1})
    assert caught.value.field == "name"


@pytest.mark.parametrize(
    ("data", "field", "reason"),
    [
        ({"name": "ABC"}, "name", "does not match"),
        ({"name": "abcdefghi"}, "name", "longer than 8"),
        ({"name": 7}, "name", "must be a string"),
        ({"name": "a", "count": True}, "count", "must be an integer"),
        ({"name": "a", "count": 1.5}, "count", "must be an integer"),
        ({"name": "a", "ratio": math.inf}, "ratio", "finite"),
        ({"name": "a", "ratio": "1"}, "ratio", "must be a number"),
        ({"name": "a", "flag": 1}, "flag", "must be a boolean"),
        ({"name": "a", "items": [1, 2, 3]}, "items", "more than 2"),
        ({"name": "a", "opts": []}, "opts", "must be a mapping"),
        ({"name": "a", "bogus": 1}, "bogus", "is not an input"),
        ({"name": "a\n"}, "name", "does not match"),
    ],
)
def test_invalid_inputs_name_the_field(data: dict[str, object], field: str, reason: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        IFACE.validate_inputs(data)
    assert caught.value.field == field
    assert reason in caught.value.reason


def test_data_that_is_not_a_mapping_is_invalid() -> None:
    with pytest.raises(InvalidInput) as caught:
        IFACE.validate_inputs(["name"])
    assert caught.value.field == "data"


def test_outputs_get_their_defaults() -> None:
    assert IFACE.complete_outputs({"out": "x"}) == {"changed": False, "out": "x"}


def test_agents_declare_the_documented_interfaces() -> None:
    package, service, rpcutil = PackageAgent(), ServiceAgent(), RpcUtilAgent()
    assert set(package.actions) == {"install", "uninstall", "purge", "update", "status"}
    assert set(service.actions) == {"start", "stop", "restart", "status"}
    assert set(rpcutil.actions) == {"ping", "inventory", "get_fact", "agent_interfaces"}
    install = package.describe()["actions"]["install"]
    assert install["inputs"]["package"]["required"] is True
    assert install["inputs"]["version"]["required"] is False
    assert set(install["outputs"]) == {"ensure", "version", "arch", "provider", "changed", "output"}
    assert set(service.describe()["actions"]["restart"]["outputs"]) >= {"status", "changed"}
    assert install["read_only"] is False
    assert package.describe()["actions"]["status"]["read_only"] is True


@pytest.mark.parametrize("name", ["-rf", "../etc", "a b", "pkg;ls", "Pkg", "", "x" * 256])
def test_package_input_refuses_dangerous_names(name: str) -> None:
    interface = PackageAgent().actions["install"].interface
    with pytest.raises((InvalidInput, MissingInput)):
        interface.validate_inputs({"package": name})
