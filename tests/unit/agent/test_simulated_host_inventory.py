"""Simulated hosts' own classes and facts (the `simulation` setting's host_classes and
host_facts), by identity exact or /regex/; a bad regex is refused naming it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mcoflow.agent.providers import SimulationSettings


def test_rules_by_identity_exact_or_regex_later_ones_win() -> None:
    settings = SimulationSettings(
        host_facts={"/[13579]$/": {"cpus": 2, "tier": "small"}, "sim-3": {"cpus": 8}},
        host_classes={"/^sim-[12]$/": ("web", "base"), "/^sim-/": ("base", "all")},
    )
    assert settings.facts_of("sim-1") == {"cpus": 2, "tier": "small"}
    assert settings.facts_of("sim-3") == {"cpus": 8, "tier": "small"}
    assert settings.facts_of("sim-2") == {}
    assert settings.classes_of("sim-1") == ("web", "base", "all")
    assert settings.classes_of("sim-4") == ("base", "all")
    assert settings.classes_of("db-1") == ()


def test_a_bad_identity_regex_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"invalid regular expression '\('"):
        SimulationSettings(host_classes={"/(/": ("web",)})
