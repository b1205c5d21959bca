"""Recurring jobs through the REST API and the console's Schedules page: created (bad
input refused naming the field), listed with their next and last run, paused, resumed,
deleted; the page's forms need their CSRF token."""

from __future__ import annotations

import time
from typing import Any

import httpx
from web_client import TOKEN, Web

from mcoflow.actions import Jobs
from mcoflow.recurring.scheduler import Scheduler
from mcoflow.recurring.service import Schedules

API = "/api/v1/schedules"
JOB = {"request": {"kind": "install", "hosts": ["web1", "web2"], "parameter": "nginx"}}


def serve_schedules(web: Web) -> Schedules:
    schedules = Schedules(Jobs(web.world, check_hosts=False))
    app: Any = web.transport.app
    app.state.schedules = schedules
    return schedules


async def post_form(web: Web, path: str, data: dict[str, str]) -> httpx.Response:
    token = await web.csrf("/schedules")
    return await web.client.post(path, data={"csrf_token": token, **data})


async def test_the_api_creates_lists_shows_pauses_resumes_and_deletes(web: Web) -> None:
    serve_schedules(web)
    body = {"name": "nightly", "cron": "0 3 * * *", "timezone": "Europe/Paris", "job": JOB}
    created = await web.client.post(API, json=body)
    assert created.status_code == 201, created.text
    schedule = created.json()
    assert (schedule["state"], schedule["runs"], schedule["last_run"]) == ("active", 0, None)
    assert schedule["next_at"] > time.time()
    assert schedule["description"] == "install nginx on web1, web2"

    page = await web.client.get("/schedules")
    assert "03:00 Europe/Paris" in page.text  # the next run on the schedule's wall clock
    listed = (await web.client.get(API)).json()
    assert (listed["total"], listed["items"][0]["name"]) == (1, "nightly")
    shown = await web.client.get(f"{API}/nightly")
    assert shown.status_code == 200 and shown.json()["latest_runs"] == []

    paused = await web.client.post(f"{API}/nightly/pause")
    assert (paused.status_code, paused.json()["state"], paused.json()["next_at"]) == (
        200,
        "paused",
        None,
    )
    again = await web.client.post(f"{API}/nightly/pause")
    assert again.status_code == 409 and "paused" in again.json()["detail"]
    resumed = await web.client.post(f"{API}/nightly/resume")
    assert resumed.json()["state"] == "active" and resumed.json()["next_at"] is not None

    deleted = await web.client.delete(f"{API}/nightly")
    assert deleted.status_code == 200 and deleted.json()["name"] == "nightly"
    gone = await web.client.get(f"{API}/nightly")
    assert gone.status_code == 404 and "nightly" in gone.json()["detail"]
    assert (await web.client.post(f"{API}/nightly/pause")).status_code == 404


async def test_the_api_refuses_bad_input_naming_the_field(web: Web) -> None:
    serve_schedules(web)
    base = {"name": "n", "cron": "* * * * *", "job": JOB}
    cases = [
        ({"cron": "* * *"}, "cron"),
        ({"timezone": "Nowhere/Else"}, "timezone"),
        ({"max_runs": 0}, "max_runs"),
        ({"colour": "blue"}, "colour"),
        ({"job": {"request": {**JOB["request"], "parameter": "a;b"}}}, "job.request.parameter"),
        ({"job": {"action": "mcoflow.agent_call", "hosts": ["a"]}}, "job.host_args.agent"),
    ]
    for change, field in cases:
        answer = await web.client.post(API, json=base | change)
        assert answer.status_code == 422, (change, answer.text)
        assert field in (answer.json()["field"] or ""), (change, answer.json())
    assert (await web.client.get(API)).json()["total"] == 0


async def test_a_fired_occurrence_shows_as_the_last_run(web: Web) -> None:
    schedules = serve_schedules(web)
    await web.client.post(API, json={"name": "minutely", "cron": "* * * * *", "job": JOB})
    later = time.time() + 61
    scheduler = Scheduler(schedules.jobs, clock=lambda: later)
    assert await scheduler.fire_due() == 1
    schedule = (await web.client.get(f"{API}/minutely")).json()
    run = schedule["last_run"]
    assert run["plan_id"] and schedule["runs"] == 1 and schedule["latest_runs"] == [run]
    plan = (await web.client.get(f"/api/v1/plans/{run['plan_id']}")).json()
    assert plan["label"].endswith("(schedule minutely)")
    page = await web.client.get("/schedules")
    assert f'href="/plans/{run["plan_id"]}"' in page.text


async def test_the_page_adds_pauses_resumes_and_deletes(web: Web) -> None:
    serve_schedules(web)
    page = await web.client.get("/schedules")
    assert page.status_code == 200 and "No schedule yet" in page.text
    form = {
        "name": "restarts",
        "cron": "*/10 * * * *",
        "timezone": "UTC",
        "kind": "restart",
        "hosts": "web1",
        "parameter": "nginx",
        "max_runs": "5",
    }
    added = await post_form(web, "/schedules", form)
    assert added.status_code == 303 and added.headers["location"] == "/schedules?done=added"
    page = await web.client.get("/schedules")
    assert 'id="schedule-restarts"' in page.text and "at most 5 runs" in page.text
    assert "restart nginx on web1" in page.text

    paused = await post_form(web, "/schedules/restarts/pause", {})
    assert paused.status_code == 303
    page = await web.client.get("/schedules")
    assert ">paused<" in page.text and "/schedules/restarts/resume" in page.text
    assert (await post_form(web, "/schedules/restarts/resume", {})).status_code == 303
    assert (await post_form(web, "/schedules/restarts/delete", {})).status_code == 303
    assert 'id="schedule-restarts"' not in (await web.client.get("/schedules")).text


async def test_the_page_shows_errors_by_their_field_and_needs_its_token(web: Web) -> None:
    serve_schedules(web)
    form = {"name": "x", "cron": "* * *", "kind": "install", "hosts": "a", "parameter": "p"}
    wrong = await post_form(web, "/schedules", form)
    assert wrong.status_code == 422 and 'id="error-cron"' in wrong.text
    wrong = await post_form(web, "/schedules", form | {"cron": "@daily", "parameter": "a;b"})
    assert wrong.status_code == 422 and 'id="error-parameter"' in wrong.text
    forged = await web.client.post("/schedules", data=form | {"cron": "@daily"})
    assert forged.status_code == 403
    assert (await web.client.get(API)).json()["total"] == 0


async def test_the_api_needs_a_token_when_login_is_on(secure_web: Web) -> None:
    serve_schedules(secure_web)
    assert (await secure_web.client.get(API)).status_code == 401
    headers = {"Authorization": f"Bearer {TOKEN}"}
    body = {"name": "n", "cron": "@daily", "job": JOB}
    created = await secure_web.client.post(API, json=body, headers=headers)
    assert created.status_code == 201 and created.json()["created_by"] == "api:ci"
