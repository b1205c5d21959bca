"""The web console as `mcoflow serve` runs it: uvicorn on the orchestrator's loop, the
real Jobs behind the forms and the API, simulated hosts behind the broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from mcoflow.actions import Jobs
from mcoflow.engine import PlanState
from mcoflow.orchestrator import Orchestrator, build_orchestrator
from mcoflow.settings import Settings
from mcoflow.testing import assert_eventually
from mcoflow.web.server import SHUTDOWN_SECONDS, WebServer, WebServerError


def _settings(tmp_path: Path, listen: str = "127.0.0.1:0") -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'web.db'}",
        keys_dir=tmp_path / "keys",
        state_dir=tmp_path / "state",
        listen=listen,
        poll_interval=0.05,
    )


@pytest.fixture
async def orchestrator(tmp_path: Path) -> AsyncIterator[Orchestrator]:
    orch = await build_orchestrator(
        _settings(tmp_path), simulate_hosts=2, simulation={"broken_packages": ["broken"]}
    )
    await orch.start()
    await Jobs(orch.world).discover(timeout=0.5)  # as `serve` does: the hosts become known
    try:
        yield orch
    finally:
        await orch.stop()


@pytest.fixture
async def web(orchestrator: Orchestrator) -> AsyncIterator[WebServer]:
    server = WebServer(orchestrator, orchestrator.settings, embedded=True)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def test_serves_pages_and_api_on_the_orchestrator(web: WebServer) -> None:
    assert web.port != 0
    assert not web.auth.enabled  # embedded, loopback, nothing configured
    async with httpx.AsyncClient(base_url=web.url) as client:
        executors = (await client.get("/api/v1/executors")).json()
        assert executors["broker"] == "memory: connected"
        assert len(executors["executors"]) == 1
        trigger = await client.get("/")
        assert trigger.status_code == 200
        assert "Install and restart" in trigger.text


async def test_real_jobs_errors_name_the_field_and_operations_map_to_http(
    web: WebServer, orchestrator: Orchestrator
) -> None:
    async with httpx.AsyncClient(base_url=web.url) as client:
        bad = await client.post(
            "/api/v1/jobs", json={"kind": "install", "hosts": ["sim-00001"], "parameter": "a;b"}
        )
        assert bad.status_code == 422
        assert bad.json()["field"] == "parameter"

        created = await client.post(
            "/api/v1/jobs",
            json={"kind": "install", "hosts": ["sim-00001"], "parameter": "broken"},
        )
        assert created.status_code == 201, created.text
        plan_id = created.json()["id"]

        await assert_eventually(lambda: _state_is(orchestrator, plan_id, PlanState.PAUSED))
        not_fleet = await client.post(f"/api/v1/plans/{plan_id}/rerun-failed")
        assert not_fleet.status_code == 409
        assert "not a fleet job" in not_fleet.json()["detail"]
        missing = await client.post(f"/api/v1/plans/{'0' * 32}/rerun-failed")
        assert missing.status_code == 404


async def test_a_taken_port_is_a_clear_error(web: WebServer, orchestrator: Orchestrator) -> None:
    settings = orchestrator.settings.model_copy(update={"listen": f"127.0.0.1:{web.port}"})
    second = WebServer(orchestrator, settings, embedded=True)
    with pytest.raises(WebServerError, match=f"cannot listen on 127.0.0.1:{web.port}: .*in use"):
        await second.start()
    await second.stop()  # never started: nothing to do


async def test_stop_ends_open_live_streams(web: WebServer, orchestrator: Orchestrator) -> None:
    plan = await Jobs(orchestrator.world).trigger("install", hosts="sim-00002", parameter="broken")
    await assert_eventually(
        lambda: _state_is(orchestrator, plan.id, PlanState.PAUSED)
    )  # a paused plan's stream stays open
    events: list[str] = []
    async with (
        httpx.AsyncClient(base_url=web.url, timeout=None) as client,
        client.stream("GET", f"/plans/{plan.id}/events") as stream,
    ):
        lines = stream.aiter_lines()
        while not any(e.startswith("event: plan") for e in events):
            events.append(await anext(lines))
        # well before uvicorn's graceful-shutdown timeout would cut the stream
        await asyncio.wait_for(web.stop(), SHUTDOWN_SECONDS / 2)
        events.extend([line async for line in lines])
    assert "event: end" not in events  # ended by the server stopping, not by the plan


async def _state_is(orchestrator: Orchestrator, plan_id: str, state: PlanState) -> None:
    assert (await orchestrator.world.get_plan(plan_id)).state is state
