from __future__ import annotations

import pytest
from pydantic import ValidationError

from mcoflow.rpc import FactFilter, Filter

FACTS: dict[str, object] = {
    "os_family": "debian",
    "release": "12",
    "cpus": 8,
    "memory_gb": "15.5",
    "virtual": True,
    "hostname": "web1",
}


def matches(flt: Filter, identity: str = "web1.example.com") -> bool:
    return flt.matches(
        identity=identity,
        facts=FACTS,
        classes=["role::web", "base"],
        agents=["package", "service", "rpcutil"],
    )


def fact(expression: str) -> Filter:
    return Filter(facts=(FactFilter.parse(expression),))


def test_empty_filter_matches_every_host() -> None:
    assert Filter().empty
    assert matches(Filter())


@pytest.mark.parametrize(
    ("identities", "expected"),
    [
        (("web1.example.com",), True),
        (("web2.example.com",), False),
        (("web2.example.com", "web1.example.com"), True),  # ORed
        (("/^web\\d/",), True),
        (("/^db/",), False),
        (("web1",), False),  # exact match is exact, not a prefix
    ],
)
def test_identity_exact_or_regex_ored(identities: tuple[str, ...], expected: bool) -> None:
    assert matches(Filter(identity=identities)) is expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("os_family=debian", True),
        ("os_family==debian", True),
        ("os_family!=debian", False),
        ("os_family=redhat", False),
        ("os_family=~^deb", True),
        ("os_family=~/^red/", False),
        ("cpus>4", True),
        ("cpus>=8", True),
        ("cpus<8", False),
        ("cpus<=8.0", True),
        ("cpus==8.0", True),  # numeric when both sides are numbers
        ("cpus>10", False),  # numeric, not "8" > "10" as strings
        ("memory_gb<16", True),
        ("release>=11", True),
        ("os_family>cat", True),  # string comparison otherwise
        ("virtual=true", True),
        ("missing=anything", False),
        ("missing!=anything", False),  # an absent fact never matches
    ],
)
def test_fact_operators(expression: str, expected: bool) -> None:
    assert matches(fact(expression)) is expected


def test_facts_classes_agents_are_anded() -> None:
    both = Filter(facts=(FactFilter.parse("cpus>4"), FactFilter.parse("os_family=redhat")))
    assert not matches(both)
    assert matches(Filter(classes=("role::web", "/^ba/")))
    assert not matches(Filter(classes=("role::web", "role::db")))
    assert matches(Filter(agents=("package", "service")))
    assert not matches(Filter(agents=("package", "puppet")))
    mixed = Filter(identity=("/web/",), facts=(FactFilter.parse("cpus=8"),), classes=("base",))
    assert matches(mixed)
    assert not matches(mixed, identity="db1")


def test_invalid_regex_is_rejected_at_parse_time() -> None:
    with pytest.raises(ValidationError, match="invalid regular expression"):
        Filter(identity=("/[oops/",))
    with pytest.raises(ValidationError, match="invalid regular expression"):
        Filter(classes=("/(/",))
    with pytest.raises(ValidationError, match="invalid regular expression"):
        FactFilter(fact="a", operator="=~", value="(")


def test_a_literal_identity_with_regex_characters_is_not_compiled() -> None:
    assert Filter(identity=("weird[name",)).identity == ("weird[name",)


def test_parse_cli_reads_prefixes_and_operators() -> None:
    flt = Filter.parse_cli(
        ["identity:web1", "class:role::web", "agent:package", "cpus>=4", "os=~deb"],
        identity=["web2"],
    )
    assert flt.identity == ("web2", "web1")
    assert flt.classes == ("role::web",)
    assert flt.agents == ("package",)
    assert [(f.fact, f.operator, f.value) for f in flt.facts] == [
        ("cpus", ">=", "4"),
        ("os", "=~", "deb"),
    ]


@pytest.mark.parametrize("bad", ["novalue", "=value", ""])
def test_parse_cli_rejects_words_without_operator(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid fact filter"):
        FactFilter.parse(bad)
