"""Issue 16 in the console and the API: delayed jobs (form and JSON), references in
words, and a bad filter regex that names its pattern."""

from __future__ import annotations

import html
from datetime import datetime, timedelta

import pytest
from web_client import Web

from mcoflow.engine import PlanResult, PlanState
from mcoflow.testing import assert_eventually


async def _post(web: Web, data: dict[str, str]) -> object:
    token = await web.csrf("/")
    return await web.client.post("/", data={"csrf_token": token, **data})


async def test_api_delayed_job_is_scheduled_then_runs(web: Web) -> None:
    at = datetime.now().astimezone() + timedelta(seconds=1)
    r = await web.client.post(
        "/api/v1/jobs",
        json={
            "kind": "install",
            "hosts": ["web-01"],
            "parameter": "nginx",
            "start_at": at.isoformat(),
            "start_before": (at + timedelta(minutes=5)).isoformat(),
        },
    )
    assert r.status_code == 201, r.text
    plan = r.json()
    assert plan["state"] == "scheduled"
    assert plan["start_at"] == pytest.approx(at.timestamp())
    assert plan["start_before"] == pytest.approx(at.timestamp() + 300)

    async def ran() -> None:
        shown = (await web.client.get(f"/api/v1/plans/{plan['id']}")).json()
        assert shown["result"] == "success"
        assert shown["started_at"] >= at.timestamp()

    await assert_eventually(ran, timeout=20)


@pytest.mark.parametrize(
    ("times", "field", "words"),
    [
        ({"start_at": "2001-01-01T10:00:00+00:00"}, "start_at", "is in the past"),
        (
            {"start_at": "2999-01-01T10:00:00", "start_before": "2998-01-01T10:00:00"},
            "start_before",
            "is not after start_at",
        ),
    ],
)
async def test_api_refuses_a_start_window_naming_the_field(
    web: Web, times: dict[str, str], field: str, words: str
) -> None:
    body = {"kind": "install", "hosts": ["web-01"], "parameter": "nginx", **times}
    r = await web.client.post("/api/v1/jobs", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field
    assert words in r.json()["detail"]
    assert (await web.world.list_plans()).total == 0


async def test_api_bad_filter_regex_names_pattern_and_error(web: Web) -> None:
    body = {"kind": "install", "filter": "identity:/^(web/", "parameter": "nginx"}
    r = await web.client.post("/api/v1/jobs", json=body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert r.json()["field"] == "filter"
    assert "'^(web'" in detail
    assert "missing )" in detail
    assert "validation error" not in detail


async def test_form_bad_filter_regex_shows_next_to_the_hosts_field(web: Web) -> None:
    r = await _post(
        web, {"kind": "install", "target": "filter", "hosts": "os_family=~/[a-/", "parameter": "x"}
    )
    assert r.status_code == 422  # type: ignore[attr-defined]
    page = html.unescape(r.text)  # type: ignore[attr-defined]
    assert "fact filter 'os_family=~/[a-/': invalid regular expression '[a-'" in page
    assert "validation error" not in page


async def test_form_delayed_job_shows_as_scheduled(web: Web) -> None:
    later = (datetime.now() + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
    r = await _post(
        web, {"kind": "install", "hosts": "web-02", "parameter": "nginx", "start_at": later}
    )
    assert r.status_code == 303, r.text  # type: ignore[attr-defined]
    location = r.headers["location"]  # type: ignore[attr-defined]
    plan = await web.world.get_plan(location.rsplit("/", 1)[1])
    assert plan.state is PlanState.SCHEDULED
    shown = later.replace("T", " ") + ":00"
    assert plan.start_at == pytest.approx(datetime.fromisoformat(later).timestamp())
    page = (await web.client.get(location)).text
    assert "Scheduled for" in page
    assert shown in page
    listing = (await web.client.get("/plans")).text
    assert f"at {shown}" in listing


async def test_form_past_start_time_is_refused_next_to_its_field(web: Web) -> None:
    earlier = (datetime.now() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    r = await _post(
        web, {"kind": "install", "hosts": "web-02", "parameter": "nginx", "start_at": earlier}
    )
    assert r.status_code == 422  # type: ignore[attr-defined]
    assert 'id="error-start_at"' in r.text  # type: ignore[attr-defined]
    assert "is in the past" in r.text  # type: ignore[attr-defined]
    assert f'value="{earlier}"' in r.text  # type: ignore[attr-defined]
    assert (await web.world.list_plans()).total == 0


async def test_references_read_in_words_on_the_page_and_in_the_api(web: Web) -> None:
    plan = await web.jobs.trigger(
        "install-and-restart",
        hosts=["web-03"],
        parameter="nginx;nginx",
        by="test",
    )
    done = await web.world.wait(plan.id)
    assert done.result is PlanResult.SUCCESS
    steps = await web.world.steps(plan.id)
    (install,) = [s for s in steps if s.action.endswith("FakeInstall")]
    title = "FakeInstall(host=web-03, name=nginx, after=[])"
    words = f'output["changed"] of step {install.idx} ({title})'
    page = html.unescape((await web.client.get(f"/plans/{plan.id}")).text)
    assert words in page
    assert "$ref" not in page
    shown = (await web.client.get(f"/api/v1/plans/{plan.id}")).json()
    (restart,) = [s for s in shown["steps"] if s["action"].endswith("FakeRestart")]
    assert words in restart["input_text"]
    assert restart["input"]["after"] == [{"$ref": [install.idx, "changed"]}]  # raw JSON kept
