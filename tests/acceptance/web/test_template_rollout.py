"""Acceptance (issue 18): the shipped rolling-package-update template on 200 simulated
hosts of a real `mcoflow serve`, started from the CLI, the REST API and the browser.

On one host of each 200, nginx crashes right after its restart and runs again RECOVER
seconds later (``simulation.broken_services``): that host fails its health gate (status
polled every second for 30 s), and the rollout stops at the template's threshold (one
failed host): the batches after that host's never start, their hosts are held, untouched.
Resume runs the failed gate again, the host, up by then, passes, and the rollout goes on
with the held hosts to the end: every host updated once.
"""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.request
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect
from serve_process import mcoflow_serve, serve_env
from web_site import save_screenshot

from mcoflow.agent.providers.simulated import read_stats
from mcoflow.testing import assert_eventually

MCOFLOW = Path(sys.executable).with_name("mcoflow")
TEMPLATE = "rolling-package-update"
PER_RUN = 200
RUNS = ("cli", "api", "browser")
# the 37th host of each run's 200: in the second batch (10% of 200 = 20 hosts)
BROKEN = {run: f"sim-{200 * i + 37:05d}" for i, run in enumerate(RUNS)}
RECOVER = 34.0  # seconds after its restart; the gate gives up after 30
PACKAGE, SERVICE = "openssl", "nginx"
# the gate's 30 s, a batch of 20 before it, and a loaded machine
PAUSED_WITHIN = 120.0
LIVE_TIMEOUT = PAUSED_WITHIN * 1000


def hosts_of(run: str) -> list[str]:
    first = 200 * RUNS.index(run) + 1
    return [f"sim-{n:05d}" for n in range(first, first + PER_RUN)]


@dataclass(frozen=True)
class Server:
    url: str
    directory: Path
    env: dict[str, str]

    @property
    def db(self) -> str:
        return f"sqlite:///{self.directory / 'mcoflow.db'}"

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def plan(self, plan_id: str) -> dict[str, Any]:
        status, body = self.api("GET", f"/api/v1/plans/{plan_id}")
        assert status == 200, body
        shown: dict[str, Any] = body
        return shown

    def all_hosts(self, plan_id: str) -> list[dict[str, Any]]:
        status, body = self.api("GET", f"/api/v1/plans/{plan_id}/hosts?limit=1000")
        assert status == 200, body
        hosts: list[dict[str, Any]] = body["hosts"]
        return hosts

    def updates(self) -> dict[str, int]:
        """The package updates each simulated host ran so far."""
        calls = read_stats(self.directory / "sim-stats.json")["calls"]
        return {host: ops.get("update", 0) for host, ops in calls.items()}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("rollout")
    simulation = {
        "packages": {PACKAGE: "0.9-1"},
        "broken_services": [f"{SERVICE}@{host}" for host in BROKEN.values()],
        "broken_services_recover_after": RECOVER,
        "stats_file": str(directory / "sim-stats.json"),
        "stats_interval": 0.2,
    }
    env = serve_env(directory, {"simulation": simulation})
    args = ["--no-local-agent", "--simulate-hosts", str(PER_RUN * len(RUNS))]
    with mcoflow_serve(directory, [*args, "--log-level", "warning"], env) as served:
        yield Server(served.url, directory, env)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A page of its own (pytest-playwright's would start the browser tests' server)."""
    context = browser.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()


async def until_state(server: Server, plan_id: str, state: str) -> dict[str, Any]:
    def reached() -> dict[str, Any]:
        plan = server.plan(plan_id)
        assert plan["state"] == state, plan["state"]
        return plan

    found: dict[str, Any] = await assert_eventually(
        lambda: asyncio.to_thread(reached), timeout=PAUSED_WITHIN, interval=0.3
    )
    return found


def check_stopped_at_threshold(server: Server, plan: dict[str, Any], run: str) -> None:
    """Paused, the first two batches run (one host failed) and the other 160 hosts held
    without a call."""
    assert plan["state"] == "paused" and plan["result"] == "error", plan
    counts = plan["host_counts"]
    assert (counts["success"], counts["error"], counts["paused"], counts["planned"]) == (
        39,
        1,
        1,
        160,
    ), counts
    assert counts["cancelled"] == 0, counts
    failed = [h for h in server.all_hosts(plan["id"]) if h["status"] == "error"]
    assert [h["host"] for h in failed] == [BROKEN[run]]
    assert "status is still 'stopped' after 30 s" in failed[0]["message"], failed[0]
    hosts = hosts_of(run)
    updates = server.updates()
    assert all(updates.get(h) == 1 for h in hosts[:40]), "the first two batches updated"
    assert not any(updates.get(h) for h in hosts[40:]), "a host after the threshold ran"


async def resume_to_the_end(server: Server, plan_id: str, run: str) -> None:
    """Resume: the failed host's gate passes, and the held hosts are rolled out."""
    status, body = await asyncio.to_thread(
        server.api, "POST", f"/api/v1/plans/{plan_id}/resume", {}
    )
    assert status == 200, body
    await rolled_out(server, plan_id, run)


async def rolled_out(server: Server, plan_id: str, run: str) -> None:
    done = await until_state(server, plan_id, "stopped")
    assert done["result"] == "success", done
    assert done["host_counts"]["success"] == PER_RUN, done["host_counts"]
    await every_host_updated_once(server, run)


async def every_host_updated_once(server: Server, run: str) -> None:
    def updated() -> None:  # the stats file is rewritten every 0.2 s
        updates = server.updates()
        assert all(updates.get(h) == 1 for h in hosts_of(run)), "every host updated once"

    await assert_eventually(updated, timeout=10)


def in_own_loop(job: Coroutine[Any, Any, None]) -> None:
    """Run ``job`` on an event loop of its own: a browser test of an earlier module may
    have left Playwright's loop running in this thread."""
    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, job).result()


def test_rolling_update_from_the_cli(server: Server) -> None:
    in_own_loop(rolling_update_from_the_cli(server))


def test_rolling_update_from_the_api(server: Server) -> None:
    in_own_loop(rolling_update_from_the_api(server))


async def rolling_update_from_the_cli(server: Server) -> None:
    command = [str(MCOFLOW), "run", TEMPLATE, ",".join(hosts_of("cli"))]
    command += ["--input", f"package={PACKAGE}", "--input", f"service={SERVICE}"]
    process = await asyncio.create_subprocess_exec(
        *command,
        "--db",
        server.db,
        cwd=server.directory,
        env={**server.env, "COLUMNS": "200"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), PAUSED_WITHIN + 30)
    text = out.decode()
    assert process.returncode == 1, text  # the plan paused: not a success
    first = text.splitlines()[0]
    assert first.startswith("plan ") and f"{TEMPLATE} template on {PER_RUN} hosts" in first
    plan_id = first.split()[1].rstrip(":")
    assert f"plan {plan_id} paused with result error" in text
    # the per-host table: the failed host with its gate's words
    (row,) = [line for line in text.splitlines() if BROKEN["cli"] in line]
    assert "error" in row and "status is still 'stopped' after 30 s" in row, row
    check_stopped_at_threshold(server, server.plan(plan_id), "cli")
    await resume_to_the_end(server, plan_id, "cli")


async def rolling_update_from_the_api(server: Server) -> None:
    status, listed = await asyncio.to_thread(server.api, "GET", "/api/v1/templates")
    assert status == 200, listed
    rolling = next(t for t in listed["templates"] if t["name"] == TEMPLATE)
    assert rolling["inputs"]["required"] == ["package", "service"]
    assert rolling["defaults"] == {"batch_size": "10%", "max_failures": "1"}
    # an input the template does not take is refused, naming it
    body = {"hosts": hosts_of("api"), "inputs": {"package": PACKAGE, "servic": SERVICE}}
    status, refused = await asyncio.to_thread(
        server.api, "POST", f"/api/v1/templates/{TEMPLATE}/run", body
    )
    assert status == 422 and refused["field"] == "inputs.servic", refused
    body["inputs"] = {"package": PACKAGE, "service": SERVICE}
    status, plan = await asyncio.to_thread(
        server.api, "POST", f"/api/v1/templates/{TEMPLATE}/run", body
    )
    assert status == 201, plan
    paused = await until_state(server, plan["id"], "paused")
    check_stopped_at_threshold(server, paused, "api")
    await resume_to_the_end(server, plan["id"], "api")


def test_rolling_update_from_the_browser(page: Page, server: Server, screenshots: Path) -> None:
    page.goto(f"{server.url}/")
    page.select_option("#template-choice", TEMPLATE)  # the page shows its form at once
    expect(page.locator("legend")).to_have_text(f"Inputs of {TEMPLATE}")
    page.fill("#tpl-hosts", ", ".join(hosts_of("browser")))
    page.fill("#tpl-input-package", PACKAGE)
    page.click("#run-template")
    # its service is required: the form says so next to the field, keeping the rest
    expect(page.locator("#tpl-error-input-service")).to_contain_text("is required")
    expect(page.locator("#tpl-input-package")).to_have_value(PACKAGE)
    page.fill("#tpl-input-service", SERVICE)
    save_screenshot(page, screenshots / "template-form.png")
    page.click("#run-template")
    page.wait_for_url("**/plans/*")
    plan_id = page.url.rstrip("/").rsplit("/", 1)[1]
    expect(page.locator('[data-plan="state"]')).to_have_text("paused", timeout=LIVE_TIMEOUT)
    expect(page.locator('[data-plan="result"]')).to_have_text("error")
    check_stopped_at_threshold(server, server.plan(plan_id), "browser")
    save_screenshot(page, screenshots / "template-rollout-stopped.png")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#resume")
    page.wait_for_url("**?done=resumed")
    # the failed host passes its gate now, and the held hosts follow
    expect(page.locator('[data-plan="state"]')).to_have_text("stopped", timeout=LIVE_TIMEOUT)
    expect(page.locator('[data-plan="result"]')).to_have_text("success")
    assert server.plan(plan_id)["host_counts"]["success"] == PER_RUN
    in_own_loop(every_host_updated_once(server, "browser"))
