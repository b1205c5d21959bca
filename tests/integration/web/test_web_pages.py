"""The server-rendered pages: trigger form, plan list, plan page, operator buttons."""

from __future__ import annotations

import json
import re
import time

import pytest
import web_fakes
from web_client import Web

from mcoflow.engine import Plan, PlanState
from mcoflow.engine.store import HostInventory, HostSighting
from mcoflow.web.sse import plan_events


async def _post(web: Web, path: str, data: dict[str, str], page: str = "/") -> object:
    token = await web.csrf(page)
    return await web.client.post(path, data={"csrf_token": token, **data})


async def _job(web: Web, kind: str, hosts: list[str], parameter: str, *, by: str) -> Plan:
    """A job on named hosts through the jobs port, with no fleet options."""
    return await web.jobs.trigger(
        kind,
        hosts=hosts,
        parameter=parameter,
        by=by,
    )


@pytest.mark.parametrize("kind", ["install", "uninstall", "restart", "install-and-restart"])
async def test_trigger_form_redirects_to_the_plan(web: Web, kind: str) -> None:
    r = await _post(web, "/", {"kind": kind, "hosts": "web-01", "parameter": "nginx"})
    assert r.status_code == 303, r.text
    location = r.headers["location"]
    assert re.fullmatch(r"/plans/[0-9a-f]{32}", location)
    await web.world.wait(location.rsplit("/", 1)[1])
    page = await web.client.get(location)
    assert page.status_code == 200
    assert 'data-plan="state">stopped' in page.text


async def test_trigger_form_fleet_by_filter_with_options(web: Web) -> None:
    r = await _post(
        web,
        "/",
        {
            "kind": "install",
            "target": "filter",
            "hosts": "identity:/^db-/",
            "parameter": "postgresql",
            "concurrency": "1",
            "max_failures": "50%",
        },
    )
    assert r.status_code == 303
    plan_id = r.headers["location"].rsplit("/", 1)[1]
    await web.world.wait(plan_id)
    page = await web.client.get(f"/plans/{plan_id}")
    assert '<section class="card" id="hosts" >' in page.text
    assert ">db-01</a>" in page.text
    assert ">db-02</a>" in page.text
    assert web.jobs.triggered[-1]["filter"] == "identity:/^db-/"


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"hosts": "web-01 nowhere-9", "parameter": "vim"}, "hosts", "unknown host: nowhere-9"),
        ({"hosts": "", "parameter": "vim"}, "hosts", "enter one or more host names"),
        ({"hosts": "web-01", "parameter": "vim;ssh"}, "parameter", "only for install and restart"),
        ({"hosts": "web-01", "parameter": "vim", "concurrency": "lots"}, "concurrency", "whole"),
        (
            {"hosts": "web-01,web-02", "parameter": "vim", "batch_size": "1/2"},
            "batch_size",
            "expected a whole number ≥ 1 or a percentage",
        ),
    ],
)
async def test_trigger_form_error_next_to_its_field_keeps_the_input(
    web: Web, form: dict[str, str], field: str, message: str
) -> None:
    r = await _post(web, "/", {"kind": "install", **form})
    assert r.status_code == 422
    error = re.search(
        rf'<p class="field-error" id="error-{field}" role="alert">([^<]*)</p>', r.text
    )
    assert error, r.text
    assert message in error[1]
    for name, value in form.items():
        if value and name != "target":
            assert f'name="{name}" value="{value}"' in r.text, name


async def test_plan_list_filters_sorts_and_pages(web: Web) -> None:
    ids = []
    for i in range(27):
        plan = await _job(web, "install", [web_fakes.HOSTS[i % 12]], f"pkg{i:02d}", by="t")
        ids.append(plan.id)
    for plan_id in ids:
        await web.world.wait(plan_id)
    first = await web.client.get("/plans")
    assert "27 plans" in first.text
    assert "Page 1 of 2" in first.text
    assert first.text.count('<progress max="100" value="100"') == 25
    second = await web.client.get("/plans?page=2")
    assert second.text.count("<tr>") == 1 + 2  # the header and two plans
    oldest = await web.client.get("/plans?order=created_at")
    assert oldest.text.index("pkg00") < oldest.text.index("pkg01")
    by_label = await web.client.get("/plans?label=pkg13")
    assert "1 plan<" in by_label.text
    none = await web.client.get("/plans?state=paused")
    assert "No plan matches." in none.text
    junk = await web.client.get("/plans?state=nonsense&page=x&order=evil")
    assert junk.status_code == 200


async def test_plan_page_shows_steps_errors_replies_and_history(web: Web) -> None:
    plan = await _job(web, "install-and-restart", ["web-03"], "nginx,broken-x;nginx", by="ops")
    await web.world.wait(plan.id)
    page = (await web.client.get(f"/plans/{plan.id}")).text
    assert 'class="flow-box flow-seq"' in page
    assert 'class="flow-box flow-conc"' in page
    assert 'class="step state-error" id="step-3"' in page
    assert "E: Unable to locate package broken-x" in page
    assert "Traceback (most recent call last)" in page
    assert 'data-field="reply.output">install nginx: done</pre>' in page
    assert page.count('<div data-section="reply-output" >') == 2  # both replies had output
    assert 'data-field="reply.statuscode">1</dd>' in page
    assert '<details class="step-detail state-error" id="step-detail-3" data-step="3" open>' in page
    assert "<td>running</td>" in page
    assert "<td>ops</td>" in page
    resume_form = re.search(r'<form[^>]*/resume"[^>]*>', page)
    assert resume_form
    assert "hidden" not in resume_form[0]


async def test_operator_buttons_confirm_then_act(web: Web) -> None:
    plan = await _job(web, "install", ["web-04"], "fail-once-page,broken-page", by="t")
    await web.world.wait(plan.id)
    page = f"/plans/{plan.id}"
    ask = await _post(web, f"{page}/resume", {}, page)
    assert ask.status_code == 200
    assert "Please confirm" in ask.text
    assert 'name="confirmed" value="yes"' in ask.text
    assert (await web.world.get_plan(plan.id)).state is PlanState.PAUSED

    done = await _post(web, f"{page}/resume", {"confirmed": "yes"}, page)
    assert done.status_code == 303
    assert done.headers["location"] == f"{page}?done=resumed"
    again = await web.world.wait(plan.id)
    assert again.state is PlanState.PAUSED  # broken-page still fails
    shown = await web.client.get(done.headers["location"])
    assert "The plan was resumed" in shown.text

    steps = await web.world.steps(plan.id)
    broken = next(s for s in steps if s.state.value == "error")
    skipped = await _post(web, f"{page}/steps/{broken.idx}/skip", {"confirmed": "yes"}, page)
    assert skipped.status_code == 303
    assert (await web.world.wait(plan.id)).result.value == "warning"

    refused = await _post(web, f"{page}/resume", {"confirmed": "yes"}, page)
    assert refused.status_code == 409
    assert "only a paused plan can be resumed" in refused.text
    cancel = await _post(web, f"{page}/cancel", {"confirmed": "yes"}, page)
    assert cancel.status_code == 409


async def test_fleet_host_table_filter_and_rerun(web: Web) -> None:
    plan = await _job(web, "install", ["web-08", "web-09", "web-10"], "fail-once-fleet", by="t")
    web_fakes.FAILED_ONCE.add(("web-09", "fail-once-fleet"))  # web-09 succeeds at once
    await web.world.wait(plan.id)
    # the two failed hosts wait for the operator (paused): they count as errors
    page = await web.client.get(f"/plans/{plan.id}?hosts=error")
    assert page.text.count('<tr data-status="error">') == 2
    assert '<tr data-status="success">' not in page.text
    assert "E: Unable to locate package fail-once-fleet" in page.text
    rerun = await _post(
        web, f"/plans/{plan.id}/rerun-failed", {"confirmed": "yes"}, f"/plans/{plan.id}"
    )
    assert rerun.status_code == 303
    new_id = rerun.headers["location"].split("/")[2].split("?")[0]
    assert new_id != plan.id
    assert (await web.world.wait(new_id)).result.value == "success"


async def test_executors_page(web: Web) -> None:
    page = await web.client.get("/executors")
    assert page.status_code == 200
    assert 'id="broker-state">connected</strong>' in page.text


async def test_hosts_page_shows_facts_and_last_seen(web: Web) -> None:
    empty = await web.client.get("/hosts")
    assert empty.status_code == 200
    assert "No host seen yet" in empty.text
    assert 'href="/hosts" class="active"' in empty.text
    report = HostInventory({"os_family": "debian", "rack": "<b>r1</b>"}, ("db",), ("rpcutil",))
    await web.world.store.record_sightings(
        [HostSighting("db-01", time.time() - 90, report), HostSighting("web-01", time.time())]
    )
    page = await web.client.get("/hosts")
    assert "2 hosts" in page.text
    assert "db-01" in page.text and "web-01" in page.text
    assert "os_family=debian" in page.text
    assert "&lt;b&gt;r1&lt;/b&gt;" in page.text  # host data is escaped
    assert re.search(r"\(1 min 3\d s ago\)", page.text), "db-01 was last seen 90 s ago"
    only = await web.client.get("/hosts", params={"filter": "class:db"})
    assert "db-01" in only.text and "web-01" not in only.text
    bad = await web.client.get("/hosts", params={"filter": "identity:/(/"})
    assert bad.status_code == 422
    assert 'id="hosts-error"' in bad.text and "filter:" in bad.text


async def test_unknown_plan_page_is_404(web: Web) -> None:
    page = await web.client.get("/plans/does-not-exist")
    assert page.status_code == 404
    assert "no plan does-not-exist" in page.text
    assert (await web.client.get("/plans/does-not-exist/events")).status_code == 404


async def test_live_stream_sends_changes_until_the_plan_stops(web: Web) -> None:
    web_fakes.DELAY["seconds"] = 0.3
    plan = await _job(web, "install", ["web-11"], "nginx", by="t")
    messages = [m async for m in plan_events(web.world, plan.id, interval=0.02)]
    snapshots = [
        json.loads(m.split("data: ", 1)[1]) for m in messages if m.startswith("event: plan")
    ]
    states = [s["plan"]["state"] for s in snapshots]
    assert states[0] == "running"
    assert states[-1] == "stopped"
    step_states = {s["steps"][0]["state"] for s in snapshots}
    assert {"suspended", "success"} <= step_states
    assert len(snapshots) == len({json.dumps(s) for s in snapshots}), "only changes are sent"
    assert messages[-1].startswith("event: end")

    # over HTTP the stream of a stopped plan ends by itself
    r = await web.client.get(f"/plans/{plan.id}/events")
    assert r.headers["content-type"].startswith("text/event-stream")
    assert "event: end" in r.text


async def test_a_reply_without_output_shows_no_empty_output_box(web: Web) -> None:
    plan = await _job(web, "install", ["web-03"], "broken-quiet", by="ops")
    await web.world.wait(plan.id)
    page = (await web.client.get(f"/plans/{plan.id}")).text
    assert 'data-field="reply.statusmsg">install failed</dd>' in page
    assert '<div data-section="reply-output" hidden>' in page
