"""Saved host groups in the console (the Groups page: add, replace, remove, behind the
CSRF token) and in the API (/api/v1/groups), on the real store."""

from __future__ import annotations

import time

import httpx
from web_client import Web

from mcoflow.engine.store import HostInventory, HostSighting


async def _hosts(web: Web) -> None:
    now = time.time()
    await web.world.store.record_sightings(
        [
            HostSighting("web-01", now, HostInventory({"cpus": 16}, ("web",), ("package",))),
            HostSighting("web-02", now, HostInventory({"cpus": 2}, ("web",), ("package",))),
            HostSighting("db-01", now, HostInventory({"cpus": 32}, ("db",), ("package",))),
        ]
    )


async def _post(web: Web, path: str, data: dict[str, str]) -> httpx.Response:
    token = await web.csrf("/groups")
    return await web.client.post(path, data={"csrf_token": token, **data})


async def test_groups_page_adds_replaces_and_removes(web: Web) -> None:
    await _hosts(web)
    empty = await web.client.get("/groups")
    assert empty.status_code == 200
    assert "No group saved yet" in empty.text and 'href="/groups" class="active"' in empty.text

    added = await _post(web, "/groups", {"name": "web", "filter": "class:web", "description": ""})
    assert added.status_code == 303
    big = {"name": "big", "filter": "@web and cpus>=10", "description": "big <b>ones</b>"}
    assert (await _post(web, "/groups", big)).status_code == 303
    page = await web.client.get("/groups")
    assert "@big" in page.text and "@web and cpus&gt;=10" in page.text
    assert "big &lt;b&gt;ones&lt;/b&gt;" in page.text  # escaped
    assert 'href="/hosts?filter=%40big">1</a>' in page.text
    assert 'href="/hosts?filter=%40web">2</a>' in page.text
    # the hosts page takes @groups in its filter (through the jobs port here: a fake that
    # parses without the store) and the compound grammar
    compound = await web.client.get("/hosts", params={"filter": "class:db or cpus<10"})
    assert "db-01" in compound.text and "web-02" in compound.text and "web-01" not in compound.text

    # errors next to their field, the input kept
    bad = await _post(web, "/groups", {"name": "x", "filter": "class:web or", "description": ""})
    assert bad.status_code == 422
    assert 'id="error-filter"' in bad.text and "column 13 (end of filter)" in bad.text
    assert 'value="class:web or"' in bad.text
    again = await _post(web, "/groups", {"name": "web", "filter": "class:x", "description": ""})
    assert 'id="error-name"' in again.text and "exists" in again.text
    replaced = await _post(
        web, "/groups", {"name": "web", "filter": "class:web cpus<10", "replace": "1"}
    )
    assert replaced.status_code == 303
    assert 'href="/hosts?filter=%40big">0</a>' in (await web.client.get("/groups")).text

    used = await _post(web, "/groups/web/remove", {})
    assert used.status_code == 409 and "used by @big" in used.text
    assert (await _post(web, "/groups/big/remove", {})).status_code == 303
    assert (await _post(web, "/groups/web/remove", {})).status_code == 303
    assert "No group saved yet" in (await web.client.get("/groups")).text

    forged = await web.client.post("/groups", data={"name": "x", "filter": "class:x"})
    assert forged.status_code == 403
    assert await web.world.store.list_groups() == []


async def test_groups_api(web: Web) -> None:
    await _hosts(web)
    api = web.client
    created = await api.post("/api/v1/groups", json={"name": "web", "filter": "class:web"})
    assert created.status_code == 201, created.text
    assert created.json()["name"] == "web" and created.json()["created_by"]
    body = {"name": "small", "filter": "@web and not cpus>=10", "description": "d"}
    assert (await api.post("/api/v1/groups", json=body)).status_code == 201
    listed = await api.get("/api/v1/groups")
    assert [g["name"] for g in listed.json()["groups"]] == ["small", "web"]
    shown = await api.get("/api/v1/groups/small")
    assert shown.status_code == 200
    assert (shown.json()["hosts"], shown.json()["description"]) == (["web-02"], "d")

    refused = await api.post("/api/v1/groups", json={"name": "x", "filter": "@nope or class:a"})
    assert refused.status_code == 422
    assert refused.json()["field"] == "filter" and "'@nope'" in refused.json()["detail"]
    cycle = {"name": "web", "filter": "@small", "replace": True}
    looped = await api.post("/api/v1/groups", json=cycle)
    assert looped.status_code == 422 and "@web -> @small -> @web" in looped.json()["detail"]
    unknown_field = await api.post("/api/v1/groups", json={"name": "y", "filter": "a=1", "x": 1})
    assert unknown_field.status_code == 422

    assert (await api.get("/api/v1/groups/nope")).status_code == 404
    assert (await api.delete("/api/v1/groups/web")).status_code == 409
    assert (await api.delete("/api/v1/groups/small")).status_code == 204
    assert (await api.delete("/api/v1/groups/small")).status_code == 404
    cross = await api.delete("/api/v1/groups/web", headers={"origin": "https://evil.example"})
    assert cross.status_code == 403
