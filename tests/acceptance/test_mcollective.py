"""mcoflow on an existing MCollective collective, through its real command line: two real
`mcollectived` nodes (tests/mco_nodes.py) with different facts, and `mcoflow serve` on a
SQLite file with MCOFLOW_TRANSPORT_URL=stomp+mcollective://… and the nodes' psk. No
mcoflow agent runs anywhere: the nodes answer with their own package and service agents.

web1 runs them for real (apt-get, service(8)); its test needs root on Debian with the
`hello` and `cron` packages reachable (skipped elsewhere, a failure under CI). db1 is
simulated, its package changes taking DELAY seconds: long enough to kill it mid-install
or to let a step's timeout go by first.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from mcoflow.testing import assert_eventually
from tests.acceptance.web.serve_process import mcoflow_serve, run_mcoflow, serve_env
from tests.conftest import missing
from tests.mco_broker import run_async
from tests.mco_nodes import McoCollective, McoNode, NodeSpec, require_mcollective
from tests.rpc_fixtures import drop_reply_queues

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

DELAY = 4.0  # seconds each package change takes on db1
PASSWORD = "mcollective acceptance"
PACKAGE, SERVICE = "hello", "cron"  # web1's real ones: tiny, and a SysV service


@dataclass(frozen=True)
class Mcoflow:
    """A running `mcoflow serve` and the environment its commands share."""

    directory: Path
    env: dict[str, str]
    url: str

    def run(self, *args: str) -> str:
        done = run_mcoflow(list(args), self.directory, self.env | {"COLUMNS": "200"})
        out = done.stdout + done.stderr
        assert done.returncode == 0, f"mcoflow {' '.join(args)}:\n{out}"
        assert "Traceback" not in done.stderr, out
        return out

    def start(self, *args: str) -> str:
        """Trigger a job without following it; its plan id."""
        found = re.search(r"^plan ([0-9a-f]{32}):", self.run(*args, "--no-wait"), re.M)
        assert found, args
        return found[1]

    def plan(self, plan_id: str) -> dict[str, Any]:
        shown: dict[str, Any] = json.loads(self.run("plans", "show", plan_id, "--json"))
        return shown

    async def wait(self, plan_id: str, state: str, timeout: float = 30) -> dict[str, Any]:
        def reached() -> dict[str, Any]:
            plan = self.plan(plan_id)
            assert plan["state"] == state, (plan["state"], plan["error"])
            return plan

        return await assert_eventually(reached, timeout=timeout, interval=0.3)

    def page(self, path: str) -> str:
        """A console page's text, logged in as the configured user."""
        with httpx.Client(base_url=self.url, headers={"Origin": self.url}) as client:
            login = client.get("/login")
            token = re.search(r'name="csrf_token" value="([^"]+)"', login.text)
            assert token, login.text
            form = {"csrf_token": token[1], "username": "alice", "password": PASSWORD}
            assert client.post("/login", data=form | {"next": "/"}).status_code == 303
            shown = client.get(path)
            assert shown.status_code == 200, shown.text
            return html.unescape(shown.text)

    def steps_page(self, plan_id: str) -> dict[str, str]:
        """The plan page's step sections (HTML) by action: install, restart."""
        page = self.page(f"/plans/{plan_id}")
        details = re.split(r'<details class="step-detail', page)[1:]
        names = [re.search(r'class="step-name">(\w+)<', d) for d in details]
        shown = {n[1]: d for n, d in zip(names, details, strict=True) if n}
        assert {"install", "restart"} <= set(shown), page
        return shown


@pytest.fixture(scope="module")
def nodes() -> Iterator[McoCollective]:
    require_mcollective()
    specs = [
        NodeSpec("web1", {"role": "web", "osfamily": "Debian"}, mode="apt"),
        NodeSpec("db1", {"role": "db", "osfamily": "Debian"}, package_delay=DELAY),
    ]
    with McoCollective(specs) as collective:
        yield collective


@pytest.fixture(scope="module")
def mcoflow(nodes: McoCollective, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mcoflow]:
    """`mcoflow serve` on the collective: a login (an external broker wants one), a reply
    queue of its own, and no local agent (the default off the memory broker)."""
    directory = tmp_path_factory.mktemp("mcoflow")
    hashed = run_mcoflow(
        ["web", "hash-password", "alice"], directory, serve_env(directory, {}),
        stdin=f"{PASSWORD}\n{PASSWORD}\n",
    )  # fmt: skip
    assert hashed.returncode == 0, hashed.stdout + hashed.stderr
    reply_to = f"mcoflow-acceptance-{uuid.uuid4().hex[:8]}"
    env = serve_env(
        directory,
        {"web_users": [hashed.stdout.strip()], "reply_to": reply_to},
        MCOFLOW_DATABASE_URL=f"sqlite:///{directory / 'mcoflow.db'}",
        MCOFLOW_TRANSPORT_URL=nodes.broker.mcoflow_url,
        MCOFLOW_MCOLLECTIVE_PSK=nodes.psk,
    )
    try:
        with mcoflow_serve(directory, ["--log-level", "warning"], env) as served:
            yield Mcoflow(directory, env, served.url)
    finally:
        run_async(drop_reply_queues(nodes.broker.amqp_url, [reply_to]))


def step(plan: dict[str, Any], action: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [s for s in plan["steps"] if s["action"] == action]
    assert len(found) == 1, plan
    return found[0]


def began(node: McoNode, action: str, name: str) -> int:
    """How many times the simulated node started ``action`` on ``name``."""
    return sum((h["action"], h["name"]) == (action, name) for h in node.state["history"])


def test_discovery_with_a_fact_filter_picks_only_the_matching_node(mcoflow: Mcoflow) -> None:
    assert mcoflow.run("discover").split() == ["db1", "web1", "2", "hosts"]
    assert mcoflow.run("discover", "--filter", "role=db").split() == ["db1", "1", "hosts"]
    assert mcoflow.run("discover", "--filter", "role=web and osfamily=Debian").split() == [
        "web1", "1", "hosts",
    ]  # fmt: skip
    assert mcoflow.run("discover", "--filter", "role=nothing").split() == ["0", "hosts"]


# -- web1: a real apt-get install and a real service restart -----------------------------


def _sh(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env, check=False)


def _installed_version(package: str) -> str | None:
    shown = _sh("dpkg-query", "-W", "-f", "${db:Status-Abbrev}|${Version}", package)
    status, _, version = shown.stdout.partition("|")
    return version if shown.returncode == 0 and status[1:2] == "i" else None


def _cron_pid() -> int | None:
    try:
        return int(Path("/run/crond.pid").read_text())
    except (OSError, ValueError):
        return None


@pytest.fixture
def debian() -> Iterator[None]:
    """Root on Debian, `hello` absent and installable, cron running; hello removed and
    cron's state restored afterwards."""
    lacking = None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        lacking = "needs root and apt-get: web1 really installs a package"
    elif "Candidate: (none)" in (policy := _sh("apt-cache", "policy", PACKAGE).stdout) or (
        "Candidate:" not in policy
    ):
        lacking = f"apt has no candidate for {PACKAGE}: run `apt-get update`"
    elif not Path(f"/etc/init.d/{SERVICE}").is_file():
        lacking = f"the SysV service {SERVICE} is not installed (apt-get install {SERVICE})"
    if lacking:
        missing(lacking)
    cron_was_running = _sh("service", SERVICE, "status").returncode == 0
    if _installed_version(PACKAGE):
        assert _sh("apt-get", "remove", "-y", PACKAGE).returncode == 0
    assert _sh("service", SERVICE, "start").returncode == 0 or cron_was_running
    try:
        yield
    finally:
        _sh("apt-get", "remove", "-y", PACKAGE)
        if not cron_was_running:
            _sh("service", SERVICE, "stop")


@pytest.mark.root
@pytest.mark.usefixtures("debian")
async def test_install_and_restart_installs_hello_and_restarts_cron_on_web1(
    mcoflow: Mcoflow,
) -> None:
    cron_before = _cron_pid()
    assert cron_before is not None and _installed_version(PACKAGE) is None

    # not followed: a download may take longer than a command of the harness may run
    plan_id = mcoflow.start(
        "install-and-restart", "web1", f"{PACKAGE};{SERVICE}", "--timeout", "90"
    )
    plan = await mcoflow.wait(plan_id, "stopped", timeout=200)

    assert plan["result"] == "success", plan
    version = _installed_version(PACKAGE)
    assert version, f"{PACKAGE} is not installed"
    assert _cron_pid() not in (None, cron_before)  # a new cron daemon: it restarted
    install, restart = step(plan, "mcoflow.install"), step(plan, "mcoflow.restart")
    assert (install["output"]["ensure"], install["output"]["changed"]) == (version, True)
    assert restart["output"] == {**restart["output"], "restarted": True, "status": "running"}

    # the console's plan page shows each node's reply: status, message, data, output
    shown = mcoflow.steps_page(plan_id)
    for detail in (shown["install"], shown["restart"]):
        assert re.search(r'data-field="reply.sender">web1<', detail)
        assert re.search(r'data-field="reply.statuscode">0<', detail)
        assert re.search(r'data-field="reply.statusmsg">OK<', detail)
    assert f'"ensure": "{version}"' in shown["install"]
    assert f"Setting up {PACKAGE} ({version})" in shown["install"]  # apt-get's output
    assert '"status": "running"' in shown["restart"]


# -- db1: a node that goes away, and a node slower than the step's timeout -----------------

STEP_TIMEOUT = 6  # seconds: longer than DELAY, so only a dead node makes it go by


async def killed_mid_install(mcoflow: Mcoflow, db1: McoNode, package: str, service: str) -> str:
    """`install-and-restart db1 'PACKAGE;SERVICE'` with db1 killed during the install:
    the plan pauses with the install as "no response"; db1 is started again."""
    plan_id = mcoflow.start(
        "install-and-restart", "db1", f"{package};{service}", "--timeout", str(STEP_TIMEOUT)
    )
    await assert_eventually(lambda: began(db1, "install", package) == 1, timeout=10)
    db1.kill()  # mid-action: its install sleeps DELAY seconds before changing anything

    paused = await mcoflow.wait(plan_id, "paused", timeout=STEP_TIMEOUT + 20)
    install = step(paused, "mcoflow.install")
    assert install["state"] == "error"
    assert f"no response from db1 within {STEP_TIMEOUT} s" in install["error"]["message"]
    assert step(paused, "mcoflow.restart")["state"] == "pending"
    assert package not in db1.installed and db1.restarts(service) == 0
    db1.start()
    db1.wait_ready()
    return plan_id


async def test_a_node_killed_mid_install_is_no_response_and_resume_finishes(
    mcoflow: Mcoflow, nodes: McoCollective
) -> None:
    db1, package, service = nodes["db1"], f"pkg{uuid.uuid4().hex[:6]}", "svc-killed"
    plan_id = await killed_mid_install(mcoflow, db1, package, service)

    assert "running, result pending" in mcoflow.run("plans", "resume", plan_id[:8])
    done = await mcoflow.wait(plan_id, "stopped", timeout=30)

    assert done["result"] == "success", done
    assert step(done, "mcoflow.install")["output"]["changed"] is True
    assert step(done, "mcoflow.restart")["output"]["restarted"] is True
    assert db1.installed[package] == "1.0-1"
    assert (began(db1, "install", package), db1.restarts(service)) == (2, 1)


async def test_a_node_that_installed_but_died_before_answering_still_gets_its_restart(
    mcoflow: Mcoflow, nodes: McoCollective
) -> None:
    """The resent install finds the package there ("already installed", which alone means
    no change): mcoflow counts it as a change, as the first send may have made it."""
    db1, package, service = nodes["db1"], f"pkg{uuid.uuid4().hex[:6]}", "svc-died"
    plan_id = await killed_mid_install(mcoflow, db1, package, service)
    with db1.edit_state() as state:  # what the killed install did just before dying
        state["packages"][package] = "1.0-1"

    mcoflow.run("plans", "resume", plan_id)
    done = await mcoflow.wait(plan_id, "stopped", timeout=30)

    assert done["result"] == "success", done
    install = step(done, "mcoflow.install")
    assert install["output"]["changed"] is True
    # what the node said, as it said it: the package agent fails what it has no work for
    replied = mcoflow.steps_page(plan_id)["install"]
    assert re.search(r'data-field="reply.statuscode">5<', replied)
    assert re.search(r'data-field="reply.statusmsg">Package is already installed<', replied)
    assert step(done, "mcoflow.restart")["output"]["restarted"] is True
    assert (began(db1, "install", package), db1.restarts(service)) == (1, 1)


async def test_a_reply_later_than_the_timeout_is_kept_for_the_resumed_step(
    mcoflow: Mcoflow, nodes: McoCollective
) -> None:
    """The step gives up before the slow node finishes; the node installs anyway and its
    late reply says so. Resumed, the step takes that reply: one install, one restart."""
    db1, package, service = nodes["db1"], f"pkg{uuid.uuid4().hex[:6]}", "svc-slow"
    plan_id = mcoflow.start("install-and-restart", "db1", f"{package};{service}", "--timeout", "2")

    paused = await mcoflow.wait(plan_id, "paused", timeout=30)
    assert "no response from db1 within 2 s" in step(paused, "mcoflow.install")["error"]["message"]
    await assert_eventually(lambda: package in db1.installed, timeout=DELAY + 10)
    assert db1.restarts(service) == 0

    mcoflow.run("plans", "resume", plan_id)
    done = await mcoflow.wait(plan_id, "stopped", timeout=30)

    assert done["result"] == "success", done
    assert step(done, "mcoflow.install")["output"]["changed"] is True
    assert step(done, "mcoflow.restart")["output"]["restarted"] is True
    assert (began(db1, "install", package), db1.restarts(service)) == (1, 1)
