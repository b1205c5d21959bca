"""The README's "Deploying on a fleet" walkthrough, command by command, on one machine:
machine B (executor and web console) and two hosts (agents) are three directories with
their own settings, keys and processes, against the real PostgreSQL and RabbitMQ
(machine A). Whatever the README tells a reader to run, in its order, must work here.

Differences from the README, each because one machine plays them all: a fresh database
of the test suite instead of `createdb` and a role; the broker's default vhost and
user, with a collective and reply queue of this test's own so that other tests on the
broker are not disturbed; paths under a temporary folder instead of /etc; processes
started as the systemd units name them instead of systemctl; simulated providers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from mcoflow.testing import assert_eventually
from tests.acceptance.web.serve_process import free_port
from tests.conftest import missing
from tests.rpc_fixtures import require_amqp

pytestmark = [pytest.mark.postgresql, pytest.mark.rabbitmq]

MCOFLOW = str(Path(sys.executable).parent / "mcoflow")
HOSTS = ("web1", "web2")
COMMAND_SECONDS = 60
STOP_SECONDS = 30


@dataclass
class Machine:
    """A folder standing for a machine's root, and the environment of its commands."""

    root: Path
    env: dict[str, str]

    @property
    def etc(self) -> Path:
        return self.root / "etc" / "mcoflow"

    def run(self, *args: str, stdin: str = "", cwd: Path | None = None) -> str:
        """``mcoflow ARGS``, which must succeed; its standard output."""
        done = subprocess.run(
            [MCOFLOW, *args],
            cwd=cwd or self.root,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=COMMAND_SECONDS,
            check=False,
        )
        assert done.returncode == 0, f"mcoflow {' '.join(args)}:\n{done.stdout}{done.stderr}"
        assert "Traceback" not in done.stdout + done.stderr
        return done.stdout


def clean_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("MCOFLOW_")}


def sourced(env_file: Path) -> dict[str, str]:
    """What `set -a; . FILE; set +a` exports from a file of NAME=value lines."""
    found = {}
    for line in env_file.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            found[name.strip()] = value.strip()
    return found


class Processes:
    """The long-running commands of the units, each with its log; SIGTERM at the end."""

    def __init__(self) -> None:
        self.started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, machine: Machine, log: Path, *args: str, cwd: Path) -> Path:
        with log.open("wb") as out:
            process = subprocess.Popen(
                [MCOFLOW, *args],
                cwd=cwd,
                env={**machine.env, "PYTHONUNBUFFERED": "1"},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.started.append((process, log))
        return log

    def alive(self) -> None:
        for process, log in self.started:
            assert process.poll() is None, f"{process.args} exited:\n{log.read_text()}"

    def stop(self) -> None:
        for process, _ in self.started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process, log in self.started:
            try:
                process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                pytest.fail(f"{process.args} did not stop on SIGTERM:\n{log.read_text()}")


@pytest.fixture
def processes() -> Iterator[Processes]:
    running = Processes()
    try:
        yield running
    finally:
        running.stop()


def api(port: int, path: str, token: str | None, body: dict[str, Any] | None = None) -> Any:
    """The REST API's answer (JSON), or its HTTP status when it refused."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"} if body is not None else {},
    )
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.load(answer)
    except urllib.error.HTTPError as exc:
        return exc.code


def make_host_key_with_openssl(key: Path, public: Path) -> None:
    """The README's `openssl genpkey` and `openssl pkey -pubout` on the host."""
    old = os.umask(0o077)
    try:
        subprocess.run(
            ["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(key)], check=True
        )
    finally:
        os.umask(old)
    subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(public)], check=True)


async def test_the_readme_walkthrough_from_zero_to_a_job_on_two_hosts(
    tmp_path: Path, pg_url: str, processes: Processes
) -> None:
    amqp_url = require_amqp()
    if shutil.which("openssl") is None:
        missing("the walkthrough makes a host key with openssl, which is not installed")
    port = free_port()
    own = uuid.uuid4().hex[:8]  # queues of this test only, on a shared broker

    # -- machine B: settings, schema, caller key, web login -------------------------
    b = Machine(tmp_path / "b", {})
    b.etc.mkdir(parents=True)
    state = b.root / "var" / "lib" / "mcoflow" / "orchestrator"  # the units' working dir
    state.mkdir(parents=True)
    config = b.etc / "mcoflow.yaml"
    settings: dict[str, Any] = {
        "keys_dir": str(b.etc / "keys"),
        "listen": f"127.0.0.1:{port}",
        "trusted_proxies": ["127.0.0.1"],
        "collective": f"walk{own}",
        "reply_to": f"walk{own}.replies",
    }
    config.write_text(yaml.safe_dump(settings))
    env_file = b.etc / "mcoflow.env"
    env_file.write_text(f"MCOFLOW_DATABASE_URL={pg_url}\nMCOFLOW_TRANSPORT_URL={amqp_url}\n")
    env_file.chmod(0o600)
    b.env = {**clean_environment(), **sourced(env_file), "MCOFLOW_CONFIG": str(config)}

    shown = b.run("config")
    assert f"keys_dir = {b.etc / 'keys'}  (file)" in shown
    assert "(MCOFLOW_DATABASE_URL)" in shown and "(MCOFLOW_TRANSPORT_URL)" in shown
    assert "database at revision" in b.run("db", "upgrade")
    b.run("keys", "init")
    assert (b.etc / "keys" / "callers" / "mcoflow.pub").exists()

    user_line = b.run("web", "hash-password", "admin", stdin="walkthrough-pw\n" * 2)
    token_output = b.run("web", "new-token", "--name", "ci")
    token = token_output.split("token: ", 1)[1].split()[0]
    token_line = token_output.split("web_api_tokens line: ", 1)[1].strip()
    settings |= {"web_users": [user_line.strip()], "web_api_tokens": [token_line]}
    config.write_text(yaml.safe_dump(settings))

    # -- the hosts' keys: web1's pair made on B, web2's made on the host ------------
    hosts = {name: Machine(tmp_path / name, clean_environment()) for name in HOSTS}
    for host in hosts.values():
        (host.etc / "keys").mkdir(parents=True, mode=0o700)
        (host.etc / "trusted").mkdir(mode=0o700)
    b.run("keys", "host", "web1")
    made_on_b = b.etc / "keys" / "host-keys" / "web1.key"
    shutil.copyfile(made_on_b, hosts["web1"].etc / "keys" / "web1.key")
    (hosts["web1"].etc / "keys" / "web1.key").chmod(0o600)
    made_on_b.unlink()
    web2_key, web2_pub = hosts["web2"].etc / "keys" / "web2.key", hosts["web2"].root / "web2.pub"
    make_host_key_with_openssl(web2_key, web2_pub)
    assert stat.S_IMODE(web2_key.stat().st_mode) == 0o600
    b.run("keys", "host", "web2", "--public-key", str(web2_pub))
    for host in hosts.values():
        for public in (b.etc / "keys" / "callers").glob("*.pub"):
            shutil.copyfile(public, host.etc / "trusted" / public.name)
    listed = b.run("keys", "list", "--json")
    assert sorted(json.loads(line)["name"] for line in listed.splitlines()) == [
        "mcoflow", "web1", "web2",
    ]  # fmt: skip

    # -- B: check, then start what the units start -----------------------------------
    assert "mcoflow executor --check: all 8 checks passed" in b.run("executor", "--check")
    processes.start(b, b.root / "executor.log", "executor", cwd=state)
    serve_log = processes.start(b, b.root / "serve.log", "serve", cwd=state)

    # -- the hosts: agent.yaml, check, start -----------------------------------------
    for name, host in hosts.items():
        agent_config = host.etc / "agent.yaml"
        agent_config.write_text(
            yaml.safe_dump(
                {
                    "identity": name,
                    "broker_url": amqp_url,
                    "key_file": f"keys/{name}.key",
                    "trusted_keys": "trusted",
                    "package_provider": "simulated",
                    "service_provider": "simulated",
                    "collective": f"walk{own}",
                    # the units' StateDirectory; the default is under /var/lib for root
                    "journal_file": str(host.root / "var" / "journal.sqlite"),
                }
            )
        )
        agent_config.chmod(0o600)
        checked = host.run("agent", "--config", str(agent_config), "--check")
        assert "mcoflow agent --check: all 10 checks passed" in checked
        assert f"signs replies as '{name}'" in checked
        processes.start(host, host.root / "agent.log", "agent", "--config", str(agent_config),
                        cwd=host.root)  # fmt: skip

    def serving() -> bool:
        processes.alive()
        return "mcoflow serving:" in serve_log.read_text()

    await assert_eventually(serving, timeout=COMMAND_SECONDS, interval=0.2)
    ready = serve_log.read_text()
    assert ":guest@" not in ready and ":***@" in ready  # no password in the logs

    # -- a first job ---------------------------------------------------------------------
    def discovered() -> bool:
        found = b.run("discover", cwd=state)
        return found.split() == ["web1", "web2", "2", "hosts"]

    await assert_eventually(discovered, timeout=COMMAND_SECONDS, interval=0.5)
    installed = b.run("install", "web1,web2", "nginx", cwd=state)
    assert installed.count("success") >= 3, installed  # the job and each host
    assert "plans 1-" in b.run("plans", "list", cwd=state)
    inventory = json.loads(b.run("hosts", "--json", cwd=state))
    assert sorted(host["identity"] for host in inventory) == ["web1", "web2"]

    assert api(port, "/api/v1/hosts", None) == 401
    known = api(port, "/api/v1/hosts", token)
    assert sorted(h["identity"] for h in known["hosts"]) == ["web1", "web2"]
    job = {"kind": "restart", "hosts": ["web1", "web2"], "parameter": "nginx"}
    plan = api(port, "/api/v1/jobs", token, job)
    assert isinstance(plan, dict), plan

    def restarted() -> bool:
        shown = api(port, f"/api/v1/plans/{plan['id']}", token)
        assert shown["result"] in ("pending", "success"), shown
        return bool(shown["result"] == "success")

    await assert_eventually(restarted, timeout=COMMAND_SECONDS, interval=0.2)
    counts = api(port, f"/api/v1/plans/{plan['id']}", token)["host_counts"]
    assert (counts["total"], counts["success"]) == (2, 2), counts
    processes.alive()
