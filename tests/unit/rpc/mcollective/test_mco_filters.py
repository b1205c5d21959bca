"""mcoflow filters as the MCollective filter Hash the Ruby client sends."""

from __future__ import annotations

import pytest

from mcoflow.rpc.filters import Filter, FilterError
from mcoflow.rpc.mcollective.filters import empty_filter, to_mcollective
from mcoflow.rpc.mcollective.marshal import Symbol, dumps, loads
from tests.unit.rpc.mcollective.mco_fixtures import REQUEST_GET_FACT, REQUEST_PING


def sent_filter(request: bytes) -> object:
    outer = loads(request)
    assert isinstance(outer, dict)
    return outer[Symbol("filter")]


def test_empty_filter_is_what_mco_ping_sends() -> None:
    assert to_mcollective(Filter()) == sent_filter(REQUEST_PING)
    assert list(to_mcollective(Filter())) == list(empty_filter())


def test_fact_class_and_agent_as_mco_rpc_sends_them() -> None:
    # mco rpc rpcutil get_fact -F osfamily=Debian -W testclass
    ours = to_mcollective(Filter.parse_cli(["osfamily=Debian", "class:testclass"]), agent="rpcutil")
    theirs = sent_filter(REQUEST_GET_FACT)
    assert ours == theirs
    assert isinstance(theirs, dict)
    # same key order, Symbol keys in the fact entries: identical Marshal bytes
    assert dumps(ours) == dumps(theirs)


def test_operators_and_regexes_pass_through() -> None:
    flt = Filter.parse_cli(["cpus>=4", "hostname=~^web", "class:/^role::/", "agent:/pack/"])
    assert to_mcollective(flt) == {
        "fact": [
            {Symbol("fact"): "cpus", Symbol("value"): "4", Symbol("operator"): ">="},
            {Symbol("fact"): "hostname", Symbol("value"): "^web", Symbol("operator"): "=~"},
        ],
        "cf_class": ["/^role::/"],
        "agent": ["/pack/"],
        "identity": [],
        "compound": [],
    }


def test_slash_inside_an_exact_name_is_fine() -> None:
    assert to_mcollective(Filter(identity=("web/1",), agents=("a/b",)))["identity"] == ["web/1"]


def test_called_agent_is_added_once() -> None:
    assert to_mcollective(Filter(agents=("echo",)), agent="echo")["agent"] == ["echo"]
    assert to_mcollective(Filter(agents=("x",)), agent="echo")["agent"] == ["x", "echo"]


def test_identities() -> None:
    assert to_mcollective(Filter(identity=("a", "b", "a")))["identity"] == ["a", "b"]
    assert to_mcollective(Filter(identity=("/^web/",)))["identity"] == ["/^web/"]
    # a node matching two entries would fail MCollective's "exactly one" rule: one regex instead
    merged = to_mcollective(Filter(identity=("/^node/", "node1.example")))["identity"]
    assert merged == [r"/(?:^node)|(?:^node1\.example$)/"]


@pytest.mark.parametrize(
    "flt",
    [
        Filter(identity=("/a/b/",)),
        Filter(classes=("/x",)),
        Filter(identity=("web/1", "/^db/")),
    ],
)
def test_entries_mcollective_would_misread_are_refused(flt: Filter) -> None:
    with pytest.raises(FilterError, match="cannot be sent to MCollective"):
        to_mcollective(flt)
