"""Command runner, facts, classes and configuration."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from mcoflow.agent.command import run_command
from mcoflow.agent.facts import (
    FactsError,
    builtin_facts,
    load_classes_file,
    load_facts_file,
    os_family,
    parse_os_release,
)
from mcoflow.agent.settings import AgentSettings, ConfigError


async def test_command_captures_output_with_a_small_environment() -> None:
    result = await run_command(
        (sys.executable, "-c", "import os,sys; print(os.environ['LC_ALL']); sys.exit(3)"), 10.0
    )
    assert (result.returncode, result.stdout.strip(), result.ok) == (3, "C", False)


async def test_command_is_not_run_through_a_shell(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    result = await run_command(("echo", f"x; touch {marker}"), 10.0)
    assert result.stdout.strip() == f"x; touch {marker}"
    assert not marker.exists()


async def test_command_time_limit_kills_it() -> None:
    started = time.monotonic()
    result = await run_command(("sleep", "30"), 0.3)
    assert result.timed_out
    assert not result.ok
    assert time.monotonic() - started < 5


async def test_missing_program_is_a_result_not_a_crash() -> None:
    result = await run_command(("/nonexistent/tool",), 5.0)
    assert result.returncode == 127
    assert "cannot execute" in result.stderr


OS_RELEASE = 'ID=ubuntu\nID_LIKE=debian\nVERSION_ID="24.04"\nVERSION_CODENAME=noble\n# comment\n'


def test_os_release_and_family(tmp_path: Path) -> None:
    release = parse_os_release(OS_RELEASE)
    assert release["VERSION_ID"] == "24.04"
    assert os_family(release) == "debian"
    assert os_family({"ID": "rocky", "ID_LIKE": "rhel centos fedora"}) == "redhat"
    path = tmp_path / "os-release"
    path.write_text(OS_RELEASE)
    facts = builtin_facts(path, hostname="h1")
    assert facts["os_family"] == "debian"
    assert facts["os_release"] == "24.04"
    assert facts["hostname"] == "h1"
    assert facts["architecture"]


def test_facts_file_flattens_and_rejects_odd_values(tmp_path: Path) -> None:
    path = tmp_path / "facts.yaml"
    path.write_text("role: web\nrack:\n  row: 3\nenabled: true\ntags: [a, b]\n")
    assert load_facts_file(path) == {"role": "web", "rack.row": 3, "enabled": True, "tags": "a,b"}
    path.write_text("role: !!python/object:os.system {}\n")
    with pytest.raises(FactsError):
        load_facts_file(path)
    path.write_text("- a\n")
    with pytest.raises(FactsError):
        load_facts_file(path)


def test_classes_file(tmp_path: Path) -> None:
    path = tmp_path / "classes.txt"
    path.write_text("webserver\n# comment\n\nnginx\nwebserver\n")
    assert load_classes_file(path) == ("webserver", "nginx")


def test_config_file_with_relative_paths_and_env_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(
        "identity: web1\nkey_file: keys/web1.key\ntrusted_keys: trusted\n"
        "agents: [package]\nfacts: {role: web}\n"
    )
    monkeypatch.setenv("MCOFLOW_AGENT_COLLECTIVE", "prod")
    config = AgentSettings.load(path)
    assert config.key_file == tmp_path / "keys" / "web1.key"
    assert config.trusted_keys == tmp_path / "trusted"
    assert config.collective == "prod"
    assert config.host_identities() == ("web1",)


def test_simulation_stats_file_is_relative_to_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(
        "simulate_hosts: 2\nkey_file: k\ntrusted_keys: t\n"
        "simulation: {stats_file: out/calls.json, stats_interval: 0.5, delay: 0.1}\n"
    )
    simulation = AgentSettings.load(path).simulation
    assert simulation.stats_file == tmp_path / "out" / "calls.json"
    assert (simulation.stats_interval, simulation.delay) == (0.5, 0.1)


def test_simulated_hosts_config(tmp_path: Path) -> None:
    config = AgentSettings(key_file=tmp_path / "k", trusted_keys=tmp_path, simulate_hosts=3)
    assert config.host_identities() == ("sim-00001", "sim-00002", "sim-00003")
    assert config.package_provider.value == "simulated"


@pytest.mark.parametrize(
    "text",
    [
        "identities: [a, b]\nkey_file: k\ntrusted_keys: t\n",
        "identities: [a, a]\nkey_file: k\ntrusted_keys: t\npackage_provider: simulated\n"
        "service_provider: simulated\n",
        "key_file: k\n",
        "key_file: k\ntrusted_keys: t\nsurprise: 1\n",
        "[not, a, mapping]\n",
    ],
)
def test_bad_config_is_a_clear_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError):
        AgentSettings.load(path)
