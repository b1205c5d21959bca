"""The filter grammar (mcoflow.rpc.targeting): old texts keep their meaning, and/or/not
and parentheses combine them, @groups expand, errors name the column and the word; any
text parses or fails with a FilterError (hypothesis)."""

from __future__ import annotations

import json
from collections.abc import Mapping

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcoflow.rpc import Filter
from mcoflow.rpc.filters import AllOf, FilterError, NotOf
from mcoflow.rpc.mcollective import to_mcollective
from mcoflow.rpc.messages import Request
from mcoflow.rpc.targeting import group_names, parse

HOSTS: dict[str, tuple[dict[str, object], tuple[str, ...]]] = {
    "web1": ({"os_family": "debian", "cpus": 8, "release": "12"}, ("web",)),
    "web2": ({"os_family": "redhat", "cpus": 2, "release": "9"}, ("web", "legacy")),
    "db1": ({"os_family": "debian", "cpus": 16, "release": "11"}, ("db",)),
    "db2": ({"os_family": "debian", "cpus": 10}, ("db", "legacy")),
}


def selected(text: str, groups: Mapping[str, str] | None = None) -> list[str]:
    flt = parse(text, groups)
    return [
        name
        for name, (facts, classes) in HOSTS.items()
        if flt.matches(identity=name, facts=facts, classes=classes, agents=("package",))
    ]


@pytest.mark.parametrize(
    "text",
    [
        "os_family=debian",
        "identity:/^web/ os_family=debian class:web agent:package cpus>=4",
        "identity:web1 identity:db1",
        "hostname=~^web(1|2) release!=11",
        "cpus>=4 memory<=2.5 kernel=~/^6\\./",
        "identity:/^(a|b)$/",
    ],
)
def test_old_texts_mean_what_they_meant(text: str) -> None:
    assert parse(text) == Filter.parse_cli(text.split())
    assert parse(text).expression is None


@pytest.mark.parametrize(
    ("text", "hosts"),
    [
        ("identity:web1 identity:db1", ["web1", "db1"]),  # identities side by side: ORed
        ("identity:web1 identity:db1 class:db", ["db1"]),
        ("class:web and os_family=debian", ["web1"]),
        ("class:web or cpus>=16", ["web1", "web2", "db1"]),
        ("not class:legacy", ["web1", "db1"]),
        ("NOT class:legacy AND os_family=debian", ["web1", "db1"]),
        ("(class:web or class:db) and not os_family=redhat and cpus>4", ["web1", "db1", "db2"]),
        ("class:db and (cpus>12 or not release=11)", ["db1", "db2"]),
        ("cpus>9", ["db1", "db2"]),  # numbers compare as numbers ("10" > "9")
        ("cpus<10", ["web1", "web2"]),
        ("release>=11", ["web1", "db1"]),
        ("identity:/^web/ and identity:/2$/", ["web2"]),
        ("identity:web1 or (class:db cpus=10)", ["web1", "db2"]),
        ("not not class:db", ["db1", "db2"]),
        ("(((class:db)))", ["db1", "db2"]),
        ("class:db (not class:legacy)", ["db1"]),
        ("os_family!=debian", ["web2"]),
        ("not release=12", ["web2", "db1", "db2"]),  # db2 has no release: not (false)
    ],
)
def test_selects(text: str, hosts: list[str]) -> None:
    assert selected(text) == hosts


def test_anded_words_stay_a_plain_filter() -> None:
    flt = parse("class:web and os_family=debian and identity:/^w/")
    assert flt == Filter.parse_cli(["identity:/^w/", "os_family=debian", "class:web"])
    assert flt.expression is None


def test_compound_filter_is_json_and_reaches_the_agent_intact() -> None:
    flt = parse("(class:web or class:db) and not identity:db2")
    assert isinstance(flt.expression, AllOf)
    data = json.loads(flt.model_dump_json())
    assert Filter.model_validate(data) == flt
    assert data["expression"]["all"][1] == {
        "not": {"match": {"identity": ["db2"], "facts": [], "classes": [], "agents": []}}
    }
    request = Request.model_validate(
        {"id": "a" * 32, "sender": "s", "caller": "c", "collective": "mc", "agent": "rpcutil",
         "action": "ping", "data": {}, "filter": data, "ttl": 10, "time": 1.0, "reply_to": "r"}
    )  # fmt: skip
    assert request.filter == flt


def test_a_plain_filter_serialises_as_before() -> None:
    assert Filter(classes=("web",)).model_dump(mode="json") == {
        "identity": [], "facts": [], "classes": ["web"], "agents": []
    }  # fmt: skip


def test_groups_expand_and_refuse_cycles_and_unknown_names() -> None:
    groups = {"web": "class:web", "debian_web": "@web and os_family=debian", "big": "cpus>=10"}
    assert selected("@debian_web", groups) == ["web1"]
    assert selected("@web or @big", groups) == ["web1", "web2", "db1", "db2"]
    assert selected("not @web", groups) == ["db1", "db2"]
    assert group_names("@web or (@big and @web)") == ["web", "big"]

    with pytest.raises(FilterError) as unknown:
        parse("class:db or @nope", groups)
    assert unknown.value.column == 13 and unknown.value.token == "@nope"
    assert "no saved group named 'nope'" in str(unknown.value)

    cyclic = {"a": "class:x or @b", "b": "@a"}
    with pytest.raises(FilterError) as cycle:
        parse("@a", cyclic)
    assert "@a -> @b -> @a" in str(cycle.value)

    with pytest.raises(FilterError) as inside:
        parse("@broken", {"broken": "class:x or"})
    assert str(inside.value).startswith("column 1 ('@broken'): in group @broken: column 11")

    with pytest.raises(FilterError, match="only known where a job starts"):
        parse("@web")


def test_a_group_used_many_times_cannot_blow_up() -> None:
    groups = {f"g{n}": f"@g{n + 1} or @g{n + 1}" for n in range(30)} | {"g30": "class:x"}
    with pytest.raises(FilterError, match="more than 1000 terms"):
        parse("@g0", groups)


@pytest.mark.parametrize(
    ("text", "column", "token"),
    [
        ("class:web and", 14, "end of filter"),
        ("class:web or or class:db", 14, "or"),
        ("(class:web", 11, "end of filter"),
        ("class:web)", 10, ")"),
        ("()", 2, ")"),
        ("class:web identity:/(/", 11, "identity:/(/"),
        ("not", 4, "end of filter"),
        ("os_family", 1, "os_family"),
        ("class: or x=1", 1, "class:"),
        ("@-bad", 1, "@-bad"),
        ("(" * 40 + "class:x" + ")" * 40, 33, "("),
    ],
)
def test_errors_name_the_column_and_the_word(text: str, column: int, token: str) -> None:
    with pytest.raises(FilterError) as caught:
        parse(text)
    assert (caught.value.column, caught.value.token) == (column, token)
    shown = token if token == "end of filter" else repr(token)
    assert str(caught.value).startswith(f"column {column} ({shown}): ") or str(
        caught.value
    ).endswith(f"(column {column})")
    assert shown in str(caught.value)


def test_mcollective_refuses_compound_filters_but_takes_anded_words() -> None:
    with pytest.raises(FilterError, match="not supported on MCollective"):
        to_mcollective(parse("class:web or class:db"))
    assert to_mcollective(parse("class:web and os_family=debian"))["cf_class"] == ["web"]


def test_json_expression_limits() -> None:
    deep: dict[str, object] = {"match": {"classes": ["x"]}}
    for _ in range(40):
        deep = {"not": deep}
    with pytest.raises(FilterError, match="nested at most 32"):
        Filter.from_json({"expression": deep})
    with pytest.raises(FilterError):
        Filter.from_json({"expression": {"all": [], "any": []}})
    with pytest.raises(FilterError, match="at least one entry"):
        Filter.from_json({"expression": {"match": {}}})
    negated = Filter.from_json({"expression": {"not": {"match": {"classes": ["x"]}}}})
    assert isinstance(negated.expression, NotOf)


WORDS = ["and ", "or ", "not ", "identity:", "class:", "agent:", "cpus", "@g", "(", ")"]
ALPHABET = st.sampled_from([*"abcxyz019 ()/@!=<>~:^$.*|\\\t\n", *WORDS])
TEXTS = st.one_of(st.text(max_size=80), st.lists(ALPHABET, max_size=30).map("".join))
GROUPS = {"g": "class:web or cpus>2", "h": "@g and not identity:/^x/", "loop": "@loop"}


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(TEXTS)
def test_any_text_parses_or_names_the_wrong_place(text: str) -> None:
    outcome = _outcome(text)
    if isinstance(outcome, FilterError):
        column, token = outcome.column, outcome.token
        assert column is not None and 1 <= column <= len(text) + 1, outcome
        assert token, outcome
        assert token == "end of filter" or text[column - 1 :].startswith(token), (text, outcome)
        message = str(outcome)
        assert f"column {column}" in message, outcome
        assert token == "end of filter" or repr(token) in message, outcome
        return
    # what parses evaluates without error, renders back to itself, and is JSON
    outcome.matches(identity="web1", facts={"cpus": 4}, classes=("web",), agents=())
    assert parse(outcome.to_cli()) == outcome
    assert Filter.model_validate_json(outcome.model_dump_json()) == outcome


def _outcome(text: str) -> Filter | FilterError:
    try:
        return parse(text, GROUPS)
    except FilterError as exc:
        return exc
