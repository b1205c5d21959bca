"""Misspelled fields are refused, never ignored: request bodies of the API and the
console's forms (issue 16)."""

from __future__ import annotations

from web_client import Web

from mcoflow.engine import PlanFilter


async def _plans(web: Web) -> int:
    return (await web.world.list_plans(PlanFilter(), limit=1)).total


async def test_a_job_with_misspelled_limits_is_refused_naming_them(web: Web) -> None:
    body = {
        "kind": "install",
        "hosts": ["web-01", "web-02"],
        "parameter": "curl",
        "concurency": 1,
        "max_failure": "1",
    }
    r = await web.client.post("/api/v1/jobs", json=body)
    assert r.status_code == 422, r.text
    error = r.json()
    assert error["field"] == "concurency"
    assert "concurency: unknown field" in error["detail"]
    assert "max_failure: unknown field" in error["detail"]
    assert await _plans(web) == 0, "nothing was started"
    spelled = {k: v for k, v in body.items() if k not in ("concurency", "max_failure")}
    ok = await web.client.post("/api/v1/jobs", json=spelled | {"concurrency": 1})
    assert ok.status_code == 201, ok.text


async def test_discovery_refuses_unknown_fields(web: Web) -> None:
    r = await web.client.post("/api/v1/hosts/discover", json={"filtre": "class:web"})
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "filtre"
    assert "unknown field" in r.json()["detail"]


async def test_endpoints_without_a_body_refuse_one_with_fields(web: Web) -> None:
    for path in ("/api/v1/plans/nope/resume", "/api/v1/plans/nope/cancel"):
        r = await web.client.post(path, json={"force": True})
        assert r.status_code == 422, (path, r.text)
        assert r.json()["field"] == "force"
        assert "unknown field (this endpoint takes no body)" in r.json()["detail"]
        # no body, or an empty one, is what they take: on to the plan lookup
        assert (await web.client.post(path)).status_code == 404
        assert (await web.client.post(path, json={})).status_code == 404


async def test_the_trigger_form_refuses_fields_it_does_not_send(web: Web) -> None:
    token = await web.csrf("/")
    form = {"csrf_token": token, "kind": "install", "hosts": "web-01", "parameter": "curl"}
    r = await web.client.post("/", data=form | {"concurency": "1"})
    assert r.status_code == 422, r.text
    assert "concurency: unknown field (this form takes:" in r.text
    assert "concurrency" in r.text  # it says what the form takes
    assert await _plans(web) == 0
    ok = await web.client.post("/", data=form | {"concurrency": "1"})
    assert ok.status_code == 303, ok.text
