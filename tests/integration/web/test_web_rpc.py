"""The "Run an action" page and the agent-action API on a real orchestrator (simulated
hosts behind the real agent, in-process broker): interfaces fetched and listed, a form
made of the declared inputs, bad input shown next to its field, each host's reply."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from mcoflow.actions import Jobs
from mcoflow.engine import World
from mcoflow.web import AuthSettings, create_app
from tests.embedded import embedded_orchestrator

SIMULATION = {"packages": {"curl": "7.88"}, "broken_packages": ["broken@sim-00002"]}


@dataclass
class Site:
    client: httpx.AsyncClient
    world: World

    async def post_form(
        self, path: str, data: dict[str, str], page: str = "/rpc"
    ) -> httpx.Response:
        text = (await self.client.get(page)).text
        match = re.search(r'name="csrf_token" value="([^"]+)"', text)
        assert match, f"no CSRF token on {page}"
        return await self.client.post(path, data={"csrf_token": match[1], **data})


@pytest.fixture
async def site(db_url: str, tmp_path: Path) -> AsyncIterator[Site]:
    async with embedded_orchestrator(db_url, tmp_path, hosts=3, simulation=SIMULATION) as o:
        await Jobs(o.world).discover(timeout=2.0)
        app = create_app(o.world, auth=AuthSettings.loopback(), jobs=Jobs(o.world))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            yield Site(client, o.world)


async def test_the_page_fetches_interfaces_and_runs_an_action(site: Site) -> None:
    empty = await site.client.get("/rpc")
    assert empty.status_code == 200
    assert "No agent's interface is known yet" in empty.text
    fetched = await site.post_form("/rpc/refresh", {})
    assert fetched.status_code == 303, fetched.text
    listed = await site.client.get("/rpc")
    assert "package.status (read-only)" in listed.text
    assert "package.install (read-only)" not in listed.text

    form = await site.client.get("/rpc", params={"call": "package.status"})
    assert 'name="input.package"' in form.text and 'name="input.version"' not in form.text
    assert "read-only" in form.text

    data = {"call": "package.status", "input.package": "curl", "target": "filter"}
    ran = await site.post_form("/rpc", data | {"hosts": "identity:/^sim-/"})
    assert ran.status_code == 303, ran.text
    location = ran.headers["location"]
    assert location.startswith("/rpc/plans/")
    await site.world.wait(location.rsplit("/", 1)[1], timeout=30)
    results = await site.client.get(location)
    assert results.status_code == 200
    assert results.text.count('class="host-row"') == 3
    assert "7.88" in results.text and "installed" in results.text


@pytest.mark.parametrize(
    ("fields", "error_id", "words"),
    [
        ({"hosts": "sim-00001"}, "error-input-package", "is required"),
        ({"hosts": "sim-00001", "input.package": "a b"}, "error-input-package", "does not match"),
        ({"input.package": "curl"}, "error-hosts", "name at least one host"),
        ({"hosts": "sim-00001", "input.pkg": "curl"}, "error-call", "unknown field input.pkg"),
        ({"hosts": "sim-00001", "input.package": "x", "concurrency": "0"}, "error-concurrency", ""),
    ],
)
async def test_bad_input_is_shown_next_to_its_field(
    site: Site, fields: dict[str, str], error_id: str, words: str
) -> None:
    await site.post_form("/rpc/refresh", {})
    before = (await site.world.list_plans()).total
    page = await site.post_form("/rpc", {"call": "package.status", **fields})
    assert page.status_code == 422, page.text
    assert f'id="{error_id}"' in page.text and words in page.text
    assert (await site.world.list_plans()).total == before


async def test_the_api_lists_interfaces_runs_and_reports(site: Site) -> None:
    assert (await site.client.get("/api/v1/agents")).json() == {"agents": []}
    refreshed = await site.client.post("/api/v1/agents", json={"host": "sim-00003"})
    assert refreshed.status_code == 200, refreshed.text
    agents = {a["name"]: a for a in refreshed.json()["agents"]}
    assert agents["package"]["host"] == "sim-00003"
    assert agents["package"]["actions"]["status"]["read_only"] is True
    assert agents["package"]["actions"]["install"]["inputs"]["version"]["required"] is False
    one = await site.client.get("/api/v1/agents/service")
    assert one.status_code == 200 and "restart" in one.json()["actions"]
    assert (await site.client.get("/api/v1/agents/nope")).status_code == 404

    body = {"agent": "package", "action": "install", "inputs": {"package": "broken"}}
    started = await site.client.post("/api/v1/rpc", json=body | {"filter": "identity:/^sim-/"})
    assert started.status_code == 201, started.text
    plan_id = started.json()["id"]
    await site.world.wait(plan_id, timeout=30)
    report = (await site.client.get(f"/api/v1/rpc/{plan_id}")).json()
    assert report["failed"] == 1
    by_host = {h["host"]: h for h in report["hosts"]}
    assert by_host["sim-00002"]["status"] == "error"
    assert by_host["sim-00001"]["data"]["ensure"] == "installed"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"agent": "package", "action": "status", "inputs": {"package": 5}}, "inputs.package"),
        ({"agent": "package", "action": "status", "inputs": {}}, "inputs.package"),
        ({"agent": "nope", "action": "status", "inputs": {}}, "agent"),
        ({"agent": "package", "action": "status", "inputs": {"package": "x"}, "oops": 1}, "oops"),
        ({"agent": "Package", "action": "status"}, "agent"),
    ],
)
async def test_the_api_names_the_field_at_fault(
    site: Site, body: dict[str, object], field: str
) -> None:
    await site.client.post("/api/v1/agents", json={})
    refused = await site.client.post("/api/v1/rpc", json=body | {"hosts": ["sim-00001"]})
    assert refused.status_code == 422, refused.text
    assert refused.json()["field"] == field


async def test_the_schema_shows_the_new_endpoints(site: Site) -> None:
    schema = (await site.client.get("/api/v1/openapi.json")).json()
    assert {"/api/v1/agents", "/api/v1/agents/{agent}", "/api/v1/rpc"} <= set(schema["paths"])
    assert "read_only" in schema["components"]["schemas"]["ActionOut"]["properties"]
