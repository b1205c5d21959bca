from __future__ import annotations

from pathlib import Path

import pytest

from mcoflow.agent.policy import Policy, PolicyError

POLICY = """
rules:
  - deny: {caller: ops-intern, agent: package}
  - allow:
      caller: "ops-*"
      agent: package
      action: [install, status]
  - effect: allow
    caller: "*"
    agent: rpcutil
"""


def _load(tmp_path: Path, text: str) -> Policy:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return Policy.from_file(path)


@pytest.fixture
def policy(tmp_path: Path) -> Policy:
    return _load(tmp_path, POLICY)


@pytest.mark.parametrize(
    ("caller", "agent", "action", "allowed", "reason"),
    [
        ("ops-alice", "package", "install", True, "rule 2"),
        ("ops-alice", "package", "status", True, "rule 2"),
        ("ops-alice", "package", "uninstall", False, "default"),
        ("ops-intern", "package", "install", False, "rule 1"),
        ("ops-intern", "rpcutil", "ping", True, "rule 3"),
        ("guest", "rpcutil", "inventory", True, "rule 3"),
        ("guest", "service", "restart", False, "default"),
        ("xops-alice", "package", "install", False, "default"),
    ],
)
def test_first_matching_rule_wins_and_default_is_deny(
    policy: Policy, caller: str, agent: str, action: str, allowed: bool, reason: str
) -> None:
    decision = policy.check(caller=caller, agent=agent, action=action)
    assert decision.allowed is allowed
    assert reason in decision.reason


def test_no_policy_allows_everything() -> None:
    assert Policy.allow_all().check(caller="anyone", agent="package", action="purge").allowed


def test_default_can_be_allow(tmp_path: Path) -> None:
    policy = _load(tmp_path, "default: allow\nrules:\n  - deny: {agent: service, action: stop}\n")
    assert policy.check(caller="a", agent="service", action="restart").allowed
    assert not policy.check(caller="a", agent="service", action="stop").allowed


def test_empty_file_denies_everything(tmp_path: Path) -> None:
    assert not _load(tmp_path, "").check(caller="a", agent="rpcutil", action="ping").allowed


def test_glob_characters_other_than_star_are_literal(tmp_path: Path) -> None:
    policy = _load(tmp_path, "rules:\n  - allow: {caller: 'a.b?'}\n")
    assert policy.check(caller="a.b?", agent="x", action="y").allowed
    assert not policy.check(caller="axb?", agent="x", action="y").allowed
    assert not policy.check(caller="a.bc", agent="x", action="y").allowed


@pytest.mark.parametrize(
    "text",
    [
        "rules:\n  - allow: {caller: ops, colour: red}\n",
        "rules:\n  - effect: maybe\n",
        "rules:\n  - allow: {caller: ''}\n",
        "default: perhaps\n",
        "rules: [unclosed\n",
        "- just a list\n",
    ],
)
def test_malformed_policy_is_an_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(PolicyError):
        _load(tmp_path, text)
