"""End to end on a real Debian host: a real agent process, real apt, a real SysV service.

Runs only as root on Debian with apt; skipped with the reason elsewhere. Under CI
(env CI set) on a root Debian host, anything missing (broker, package lists, the
SysV service) is a failure, not a skip. Needs: `apt-get update` done, the `cron`
package installed (it ships /etc/init.d/cron), and RabbitMQ or NATS reachable.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from mcoflow.rpc.messages import StatusCode
from mcoflow.rpc.security import Signer, Verifier, generate_keypair, load_public_key
from mcoflow.rpc.transports import transport_from_url
from mcoflow.testing import LoggedProcess
from mcoflow.testing.rpc import DirectClient
from tests.rpc_fixtures import drop_reply_queues

pytestmark = pytest.mark.root

PACKAGE = "hello"  # tiny, depends on libc6 only
SERVICE = "cron"  # ships a SysV init script that works without systemd
REPO = Path(__file__).resolve().parents[3]
BROKERS = (
    os.environ.get("MCOFLOW_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    os.environ.get("MCOFLOW_TEST_NATS_URL", "nats://127.0.0.1:4222"),
)


def _is_root_debian() -> bool:
    return (
        os.geteuid() == 0
        and Path("/etc/debian_version").exists()
        and shutil.which("apt-get") is not None
        and shutil.which("dpkg-query") is not None
    )


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} — CI is set on a root Debian host, so this is a failure")
    pytest.skip(reason)


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    port = parts.port or (5672 if parts.scheme.startswith("amqp") else 4222)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env, check=False)


def _installed(package: str) -> bool:
    result = _run("dpkg-query", "-W", "-f", "${db:Status-Abbrev}", package)
    return result.returncode == 0 and result.stdout[1:2] == "i"


def _service_running(service: str) -> bool:
    return _run("service", service, "status").returncode == 0


@dataclass
class Host:
    identity: str
    client: DirectClient
    process: LoggedProcess
    log: Path


@pytest.fixture
def debian_host() -> Iterator[str]:
    """Check the preconditions; restore the package and service state afterwards."""
    if not _is_root_debian():
        pytest.skip("needs root on Debian with apt-get and dpkg-query")
    url = next((u for u in BROKERS if _reachable(u)), None)
    if url is None:
        _missing(f"no broker reachable at {' or '.join(BROKERS)}")
    candidate = _run("apt-cache", "policy", PACKAGE).stdout
    if "Candidate:" not in candidate or "Candidate: (none)" in candidate:
        _missing(f"apt has no candidate for {PACKAGE}: run `apt-get update` first")
    if not Path(f"/etc/init.d/{SERVICE}").is_file() or shutil.which("service") is None:
        _missing(f"the SysV service {SERVICE} is not installed (apt-get install -y {SERVICE})")
    had_package = _installed(PACKAGE)
    service_was_running = _service_running(SERVICE)
    if had_package:
        assert _run("apt-get", "-y", "remove", PACKAGE).returncode == 0
    assert url is not None
    try:
        yield url
    finally:
        if _installed(PACKAGE) and not had_package:
            _run("apt-get", "-y", "remove", PACKAGE)
        elif had_package and not _installed(PACKAGE):
            _run("apt-get", "-y", "install", PACKAGE)
        if not service_was_running and _service_running(SERVICE):
            _run("service", SERVICE, "stop")


@pytest.fixture
async def agent(debian_host: str, tmp_path: Path) -> AsyncIterator[Host]:
    url, identity = debian_host, f"e2e-{uuid.uuid4().hex[:8]}"
    collective = f"e2e{uuid.uuid4().hex[:8]}"
    keys, trusted = tmp_path / "keys", tmp_path / "trusted"
    trusted.mkdir()
    caller_key, caller_pub = generate_keypair(keys, "ops")
    _, host_pub = generate_keypair(keys, "host")
    (trusted / "ops.pub").write_bytes(caller_pub.read_bytes())
    config = tmp_path / "agent.yaml"
    config.write_text(
        f"identity: {identity}\ncollective: {collective}\nbroker_url: '{url}'\n"
        "key_file: keys/host.key\ntrusted_keys: trusted\njournal_file: journal.sqlite\n"
        "agents: [package, service]\ncommand_timeout: 600\n"
    )
    log = tmp_path / "agent.log"
    process = LoggedProcess(
        [sys.executable, "-m", "mcoflow.agent", "--config", str(config)],
        log=log,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
    )
    transport = transport_from_url(url)
    await transport.connect()
    reply_to = f"mcoflow-test.e2e.{uuid.uuid4().hex[:8]}"
    client = DirectClient(
        transport,
        Signer.from_file(caller_key),
        collective=collective,
        reply_to=reply_to,
        verifier=Verifier({"host": load_public_key(host_pub)}),
    )
    await client.start()
    try:
        deadline = time.monotonic() + 60
        while not await client.discover(timeout=1.0, expect=1):
            assert process.alive(), f"agent exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"agent never answered:\n{log.read_text()}"
        yield Host(identity, client, process, log)
    finally:
        await client.close()
        process.stop(timeout=30)
        with contextlib.suppress(Exception):
            await transport.forget_host(identity=identity, collective=collective)
        await transport.close()
        await drop_reply_queues(url, [reply_to])


async def _call(host: Host, agent: str, action: str, data: dict[str, str]) -> dict[str, object]:
    result = await host.client.call(agent, action, data, identities=[host.identity], timeout=600)
    outcome = result.result_for(host.identity)
    assert outcome.statuscode is StatusCode.OK, (
        f"{agent}.{action}: {outcome.statuscode} {outcome.statusmsg}\n{host.log.read_text()}"
    )
    return outcome.data


async def test_real_apt_install_uninstall_and_sysv_restart(agent: Host) -> None:
    first = await _call(agent, "package", "install", {"package": PACKAGE})
    assert (first["changed"], first["ensure"], first["provider"]) == (True, "installed", "apt")
    assert first["version"]
    assert _installed(PACKAGE)
    assert _run(f"/usr/bin/{PACKAGE}").stdout.strip() == "Hello, world!"

    again = await _call(agent, "package", "install", {"package": PACKAGE})
    assert (again["changed"], again["version"]) == (False, first["version"])

    removed = await _call(agent, "package", "uninstall", {"package": PACKAGE})
    assert (removed["changed"], removed["ensure"]) == (True, "absent")
    assert not _installed(PACKAGE)

    restarted = await _call(agent, "service", "restart", {"service": SERVICE})
    assert (restarted["status"], restarted["changed"]) == ("running", True)
    assert _service_running(SERVICE)
    status = await _call(agent, "service", "status", {"service": SERVICE})
    assert status["status"] == "running"

    assert agent.process.stop(timeout=30) == 0  # SIGTERM
    assert "agent stopped" in agent.log.read_text()
