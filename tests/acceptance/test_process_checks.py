"""`mcoflow agent --check` and `mcoflow executor --check` as real processes against the
real PostgreSQL and RabbitMQ, and the systemd units of contrib/systemd: the commands they
name take their arguments, and `systemd-analyze verify` finds nothing to say."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import yaml
from sqlalchemy.engine import make_url

from mcoflow.agent.settings import AgentSettings
from mcoflow.cli.processes import EXIT_EXECUTOR_FAILED
from mcoflow.engine.migrate import head_revision, upgrade
from mcoflow.orchestrator import ensure_caller_key, ensure_host_key
from tests.rpc_fixtures import require_amqp, require_nats

MCOFLOW = str(Path(sys.executable).parent / "mcoflow")
UNITS = Path(__file__).resolve().parents[2] / "contrib" / "systemd"
UNIT_NAMES = ("mcoflow-agent.service", "mcoflow-executor.service", "mcoflow-serve.service")
CLOSED_BROKER = "amqp://guest:guest@127.0.0.1:1/"
# `mcoflow executor` stops in up to 30 s (running steps) + 30 s (results being written)
EXECUTOR_STOP_SECONDS = 60

pytestmark = [pytest.mark.postgresql, pytest.mark.rabbitmq]


def mcoflow(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MCOFLOW_")}
    return subprocess.run(
        [MCOFLOW, *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=90,
    )


def lines(done: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """Each check's name → its status and detail, from the output's lines."""
    found = {}
    for line in done.stdout.splitlines():
        name, colon, rest = line.partition(":")
        if colon and rest.strip().startswith(("ok ", "FAILED ")):
            found[name] = rest.strip()
    return found


def failed(
    done: subprocess.CompletedProcess[str], status: int, check: str, not_checked: str = ""
) -> str:
    """The one failed check's detail; the run stopped after its area, with ``status``,
    and says on stderr which areas it did ``not_checked``."""
    assert done.returncode == status, (done.stdout, done.stderr)
    assert "Traceback" not in done.stdout + done.stderr
    results = lines(done)
    assert [name for name, line in results.items() if line.startswith("FAILED")] == [check]
    (error,) = done.stderr.splitlines()
    assert error.startswith("error: "), done.stderr
    if not_checked:
        assert error.endswith(f" (not checked: {not_checked})"), error
    else:
        assert "not checked" not in error, error
    return results[check].removeprefix("FAILED").strip()


# -- a setup as `mcoflow keys` makes it -----------------------------------------------


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    keys = tmp_path / "keys"
    ensure_caller_key(keys, "mcoflow")
    ensure_host_key(keys, "web1")
    return keys


def executor_env(tmp_path: Path, **settings: object) -> dict[str, str]:
    config = tmp_path / "mcoflow.yaml"
    config.write_text(yaml.safe_dump({k: str(v) for k, v in settings.items()}))
    return {"MCOFLOW_CONFIG": str(config)}


@pytest.fixture
def executor_settings(tmp_path: Path, keys: Path, pg_url: str) -> dict[str, object]:
    return {"database_url": pg_url, "transport_url": require_amqp(), "keys_dir": keys}


def executor_check(tmp_path: Path, **settings: object) -> subprocess.CompletedProcess[str]:
    return mcoflow("executor", "--check", cwd=tmp_path, env=executor_env(tmp_path, **settings))


def agent_check(tmp_path: Path, config: Path) -> subprocess.CompletedProcess[str]:
    return mcoflow("agent", "--config", str(config), "--check", cwd=tmp_path)


def upgraded(url: str, tmp_path: Path) -> str:
    done = mcoflow("db", "upgrade", "--db", url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return url


def agent_config(tmp_path: Path, keys: Path, **changes: object) -> Path:
    values: dict[str, object] = {
        "identity": "web1",
        "broker_url": require_amqp(),
        "key_file": str(keys / "host-keys" / "web1.key"),
        "trusted_keys": str(keys / "callers"),
        "journal_file": str(tmp_path / "agent" / "journal.sqlite"),
        "package_provider": "none",
        "service_provider": "none",
    }
    values.update(changes)
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in values.items() if v is not None}))
    return path


# -- a ready setup passes -----------------------------------------------------------


def test_a_ready_executor_passes_every_check_and_serves_nothing(
    tmp_path: Path, executor_settings: dict[str, object]
) -> None:
    url = upgraded(str(executor_settings["database_url"]), tmp_path)
    done = executor_check(tmp_path, **executor_settings)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert done.stderr == ""
    results = lines(done)
    assert list(results) == [
        "settings", "transport_url", "database_url", "imports",
        "caller key", "host keys", "broker", "database",
    ]  # fmt: skip
    assert all(line.startswith("ok ") for line in results.values()), done.stdout
    assert "guest:***@" in results["broker"] and ":guest@" not in done.stdout
    assert results["database"].endswith(f": schema at revision {head_revision()}")
    assert done.stdout.splitlines()[-1] == "mcoflow executor --check: all 8 checks passed"
    with psycopg.connect(url) as conn:  # no executor registered: it never started
        assert conn.execute("SELECT count(*) FROM executors").fetchone() == (0,)


@pytest.mark.parametrize("broker", ["amqp", pytest.param("nats", marks=pytest.mark.nats)])
def test_a_ready_agent_passes_every_check(tmp_path: Path, keys: Path, broker: str) -> None:
    url = require_amqp() if broker == "amqp" else require_nats()
    config = agent_config(tmp_path, keys, broker_url=url)
    done = agent_check(tmp_path, config)
    assert done.returncode == 0, (done.stdout, done.stderr)
    results = lines(done)
    assert list(results) == [
        "config", "broker_url", "agents", "policy_file", "facts", "journal_file",
        "providers", "key_file", "trusted_keys", "broker",
    ]  # fmt: skip
    assert all(line.startswith("ok ") for line in results.values()), done.stdout
    assert "trusted_keys" in results and results["trusted_keys"].endswith(": mcoflow")
    assert not (tmp_path / "agent").exists()  # the journal's folder: a check writes nothing
    # the agent's own entry point takes --check too
    module = subprocess.run(
        [sys.executable, "-m", "mcoflow.agent", "--config", str(config), "--check"],
        capture_output=True, text=True, timeout=90, cwd=tmp_path,
    )  # fmt: skip
    assert module.returncode == 0, module.stderr


# -- each failure class, with its reason ------------------------------------------------


def test_a_wrong_broker_port_fails_at_the_broker(
    tmp_path: Path, keys: Path, executor_settings: dict[str, object]
) -> None:
    done = executor_check(tmp_path, **{**executor_settings, "transport_url": CLOSED_BROKER})
    reason = failed(done, 1, "broker", not_checked="database")
    assert reason == (
        "transport_url: cannot connect to the broker amqp://guest:***@127.0.0.1:1/: "
        "connection refused; is RabbitMQ running and listening on 127.0.0.1:1?"
    )

    config = agent_config(tmp_path, keys, broker_url=CLOSED_BROKER)
    done = agent_check(tmp_path, config)
    assert failed(done, 1, "broker").startswith("broker_url: cannot connect to the broker")


def test_a_missing_key_fails_with_what_to_do(
    tmp_path: Path, keys: Path, executor_settings: dict[str, object]
) -> None:
    (keys / "orchestrator" / "mcoflow.key").unlink()
    done = executor_check(tmp_path, **executor_settings)
    assert failed(done, 2, "caller key", not_checked="broker, database") == (
        f"keys_dir: {keys}/orchestrator/mcoflow.key does not exist; create it with "
        "`mcoflow keys init` (same keys_dir and caller)"
    )

    missing = tmp_path / "nowhere" / "web1.key"
    done = agent_check(tmp_path, agent_config(tmp_path, keys, key_file=str(missing)))
    assert failed(done, 2, "key_file", not_checked="broker").startswith(
        f"key_file: {missing} does not exist; create it"
    )

    for pub in (keys / "callers").glob("*.pub"):
        pub.unlink()
    done = agent_check(tmp_path, agent_config(tmp_path, keys))
    assert failed(done, 2, "trusted_keys", not_checked="broker").startswith(
        f"trusted_keys: no *.pub in {keys}/callers;"
    )


def test_a_caller_key_that_agents_do_not_trust_fails(
    tmp_path: Path, keys: Path, executor_settings: dict[str, object]
) -> None:
    caller_pub = keys / "callers" / "mcoflow.pub"
    revoked = keys / "callers" / "revoked"
    revoked.mkdir()
    shutil.copyfile(caller_pub, revoked / "mcoflow.pub")
    done = executor_check(tmp_path, **executor_settings)
    assert "is revoked (in callers/revoked/)" in failed(done, 2, "caller key", "broker, database")

    shutil.rmtree(revoked)
    shutil.copyfile(keys / "hosts" / "web1.pub", caller_pub)  # another key
    done = executor_check(tmp_path, **executor_settings)
    assert failed(done, 2, "caller key", "broker, database").startswith(
        f"keys_dir: the public half of {keys}/orchestrator/mcoflow.key is not in "
        f"{keys}/callers: agents given that folder refuse its requests;"
    )


def test_a_bad_setting_is_named(
    tmp_path: Path, keys: Path, executor_settings: dict[str, object]
) -> None:
    done = executor_check(tmp_path, **{**executor_settings, "poll_interval": 0})
    assert failed(done, 2, "settings", not_checked="keys, broker, database") == (
        "invalid settings: poll_interval: Input should be greater than 0"
    )

    done = executor_check(tmp_path, **{**executor_settings, "transport_url": "memory://"})
    assert failed(done, 2, "transport_url", "keys, broker, database").startswith(
        "transport_url: memory:// is the in-process broker of `mcoflow serve`"
    )

    config = agent_config(tmp_path, keys, broker_ur=require_amqp())  # a typo
    done = agent_check(tmp_path, config)
    assert (
        failed(done, 2, "config", "keys, broker")
        == f"{config}: broker_ur: Extra inputs are not permitted"
    )

    config = agent_config(tmp_path, keys, broker_tls_ca=str(tmp_path / "ca.pem"))
    done = agent_check(tmp_path, config)  # TLS settings beside a plain-text URL
    assert failed(done, 2, "config", "keys, broker") == (
        f"{config}: TLS settings (broker_tls_*) are set but amqp:// is not TLS: use "
        "amqps:// or tls://"
    )

    config = agent_config(tmp_path, keys, agents=["package", "pakage"])
    done = agent_check(tmp_path, config)
    assert failed(done, 2, "agents", "keys, broker").startswith(
        "agents: unknown agents: pakage (known:"
    )


def test_an_unmigrated_database_fails(tmp_path: Path, executor_settings: dict[str, object]) -> None:
    url = str(executor_settings["database_url"])
    shown = make_url(url).render_as_string(hide_password=True)
    done = executor_check(tmp_path, **executor_settings)
    assert failed(done, 1, "database") == (
        f"database_url: {shown} has no mcoflow schema; run `mcoflow db upgrade` with the "
        "same settings"
    )

    upgrade(make_url(url).set(drivername="postgresql+psycopg"), "0001")
    done = executor_check(tmp_path, **executor_settings)
    assert failed(done, 1, "database").startswith(
        f"database_url: {shown}: schema at revision 0001, this mcoflow's is {head_revision()}; "
    )


# -- the systemd units ----------------------------------------------------------------------


def unit(name: str) -> dict[str, list[str]]:
    """A unit file's settings: each key's values in order (a key may repeat)."""
    values: dict[str, list[str]] = {}
    for raw in (UNITS / name).read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def seconds(value: str) -> float:
    number, unit_name = re.fullmatch(r"([0-9.]+)\s*(s|min|)", value).groups()  # type: ignore[union-attr]
    return float(number) * (60 if unit_name == "min" else 1)


@pytest.mark.parametrize("name", UNIT_NAMES)
def test_each_unit_runs_a_command_that_takes_its_arguments(name: str, tmp_path: Path) -> None:
    settings = unit(name)
    (exec_start,) = settings["ExecStart"]
    program, *args = shlex.split(exec_start)
    assert Path(program).name == "mcoflow" and Path(program).is_absolute()
    # --help last: an option the command does not take would be refused before it
    done = mcoflow(*args, "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"Usage: mcoflow {args[0]} ")
    assert "--check" in done.stdout or args[0] == "serve"

    assert settings["Restart"] == ["on-failure"]
    assert settings["RestartPreventExitStatus"] == ["2"]  # settings errors: no retry loop
    assert str(EXIT_EXECUTOR_FAILED) not in settings["RestartPreventExitStatus"][0].split()
    assert settings["KillSignal"] == ["SIGTERM"]
    assert all(v.startswith("-/etc/mcoflow/") for v in settings["EnvironmentFile"])


def test_the_agent_runs_as_root_and_outlasts_its_shutdown_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mcoflow.agent import settings as agent_settings

    settings = unit("mcoflow-agent.service")
    assert "User" not in settings  # root: it installs packages
    for option in ("ProtectSystem", "NoNewPrivileges", "SystemCallFilter", "PrivateTmp"):
        assert option not in settings, f"{option} would stop package installs"
    assert settings["KillMode"] == ["mixed"]  # SIGTERM to the agent, not to its apt-get
    grace = AgentSettings.model_fields["shutdown_grace"].default
    assert seconds(settings["TimeoutStopSec"][0]) > grace
    monkeypatch.setattr(agent_settings.os, "geteuid", lambda: 0)
    (state,) = settings["StateDirectory"]
    assert Path("/var/lib", state) == agent_settings.default_journal_file().parent


@pytest.mark.parametrize("name", ["mcoflow-executor.service", "mcoflow-serve.service"])
def test_executor_and_serve_run_hardened_as_the_mcoflow_user(name: str) -> None:
    settings = unit(name)
    sysusers = (UNITS / "mcoflow.sysusers").read_text().split("\n")
    (user_line,) = [line for line in sysusers if line.startswith("u ")]
    assert settings["User"] == [user_line.split()[1]] == ["mcoflow"]
    assert settings["ProtectSystem"] == ["strict"]
    assert settings["NoNewPrivileges"] == ["yes"]
    assert settings["ProtectHome"] == ["yes"] and settings["PrivateTmp"] == ["yes"]
    assert "@system-service" in settings["SystemCallFilter"]
    (state,) = settings["StateDirectory"]
    assert settings["WorkingDirectory"] == [f"/var/lib/{state}"]  # where relative paths land
    assert seconds(settings["TimeoutStopSec"][0]) > EXECUTOR_STOP_SECONDS


def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed here")
    # the units name /usr/local/bin/mcoflow, which verify requires to exist: this one
    for name in UNIT_NAMES:
        text = (UNITS / name).read_text().replace("/usr/local/bin/mcoflow", MCOFLOW)
        (tmp_path / name).write_text(text)
    files = [str(tmp_path / name) for name in UNIT_NAMES]
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *files],
        capture_output=True,
        text=True,
        timeout=60,
    )
    about_ours = [
        line for line in (done.stdout + done.stderr).splitlines()
        if str(tmp_path) in line or any(name in line for name in UNIT_NAMES)
    ]  # fmt: skip
    assert done.returncode == 0 and about_ours == [], done.stdout + done.stderr

    for name in ("mcoflow-executor.service", "mcoflow-serve.service"):
        rated = subprocess.run(
            ["systemd-analyze", "security", "--offline=yes", str(tmp_path / name)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if rated.returncode != 0 and "offline" in rated.stderr:
            pytest.skip("this systemd-analyze cannot rate a unit file offline (before 250)")
        exposure = re.search(r"Overall exposure level for \S+: ([0-9.]+)", rated.stdout)
        assert exposure is not None, rated.stdout + rated.stderr
        assert float(exposure.group(1)) <= 2.0, rated.stdout
