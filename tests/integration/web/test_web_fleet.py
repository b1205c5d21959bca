"""A fleet job behaves as one job in the console and the REST API: resume and cancel reach
its hosts, a failed host can be skipped from the fleet's page, chips and counts are by
host, and "Rerun on failed hosts" is offered only when a host failed."""

from __future__ import annotations

import re

from web_client import Web

from mcoflow.engine import Plan, PlanResult, PlanState
from mcoflow.web.views import HostTable, plan_snapshot

STOPPED = frozenset({PlanState.STOPPED})


async def _post(web: Web, path: str, page: str) -> object:
    token = await web.csrf(page)
    return await web.client.post(path, data={"csrf_token": token, "confirmed": "yes"})


async def _fleet(web: Web, hosts: list[str], parameter: str) -> Plan:
    plan = await web.jobs.trigger(
        "install",
        hosts=hosts,
        parameter=parameter,
        by="t",
    )
    return await web.world.wait(plan.id)


def _chip(text: str, status: str) -> int:
    match = re.search(rf'<span data-count="{status}">(\d+)</span>', text)
    assert match, f"no {status} chip"
    return int(match[1])


async def test_page_counts_failed_hosts_as_errors_and_offers_skip_and_rerun(web: Web) -> None:
    plan = await _fleet(web, ["web-01", "web-02", "web-03"], "broken-chips@web-02")
    assert plan.state is PlanState.PAUSED
    page = (await web.client.get(f"/plans/{plan.id}")).text
    assert (_chip(page, "error"), _chip(page, "success"), _chip(page, "running")) == (1, 2, 0)
    assert 'data-count="paused"' not in page  # a paused host is an error, not a status
    assert "3 hosts: 2 succeeded, 1 failed (1 waiting for the operator), 0 cancelled" in page
    (failed,) = [c for c in await web.world.store.child_plans(plan.id) if c.label == "web-02"]
    assert page.count('class="warn host-skip"') == 2  # web-02's row, and the live template
    assert f'action="/plans/{plan.id}/hosts/{failed.id}/skip"' in page
    rerun_form = re.search(r"<form[^>]*rerun-failed[^>]*>", page)
    assert rerun_form and "hidden" not in rerun_form[0]

    snapshot = await plan_snapshot(web.world, plan.id, HostTable(web.world))
    assert snapshot["can_rerun"] is True
    assert [h["can_skip"] for h in snapshot["hosts"]] == [False, True, False]
    assert snapshot["host_counts"]["error"] == 1 and snapshot["host_counts"]["paused"] == 1


async def test_rerun_is_not_offered_when_no_host_failed(web: Web) -> None:
    plan = await _fleet(web, ["web-04", "web-05"], "nginx")
    assert plan.result is PlanResult.SUCCESS
    page = (await web.client.get(f"/plans/{plan.id}")).text
    rerun_form = re.search(r"<form[^>]*rerun-failed[^>]*>", page)
    assert rerun_form and "hidden" in rerun_form[0]
    refused = await web.client.post(f"/api/v1/plans/{plan.id}/rerun-failed")
    assert refused.status_code == 409
    assert "no host failed" in refused.json()["detail"]


async def test_resume_from_the_page_runs_the_failed_hosts_again(web: Web) -> None:
    plan = await _fleet(web, ["web-06", "web-07"], "fail-once-resume")
    assert plan.state is PlanState.PAUSED
    page = f"/plans/{plan.id}"
    done = await _post(web, f"{page}/resume", page)
    assert done.status_code == 303  # type: ignore[attr-defined]
    # the hosts fail only once: run again with the fleet, they succeed, and so does it
    finished = await web.world.wait(plan.id, until=STOPPED, timeout=30)
    assert finished.result is PlanResult.SUCCESS
    kids = await web.world.store.child_plans(plan.id)
    assert {c.result for c in kids} == {PlanResult.SUCCESS}
    assert finished.progress == 1.0


async def test_skip_of_each_failed_host_lets_the_fleet_finish(web: Web) -> None:
    plan = await _fleet(web, ["web-08", "web-09", "web-10"], "broken-skip")
    page = f"/plans/{plan.id}"
    kids = await web.world.store.child_plans(plan.id)
    assert all(c.state is PlanState.PAUSED for c in kids)
    first, *rest = kids
    r = await _post(web, f"{page}/hosts/{first.id}/skip", page)
    assert r.status_code == 303  # type: ignore[attr-defined]
    assert r.headers["location"] == f"{page}?done=host-skipped"  # type: ignore[attr-defined]
    assert "failed steps were skipped" in (await web.client.get(f"{page}?done=host-skipped")).text
    assert (await web.world.get_plan(plan.id)).state is PlanState.PAUSED  # two still wait
    # a host of another plan is not this fleet's
    other = await _fleet(web, ["web-11", "web-12"], "broken-other")
    stranger, _ = await web.world.store.child_plans(other.id)
    assert (await _post(web, f"{page}/hosts/{stranger.id}/skip", page)).status_code == 404  # type: ignore[attr-defined]
    for host in rest:  # the API does the same
        r2 = await web.client.post(f"/api/v1/plans/{host.id}/skip-failed")
        assert r2.status_code == 200, r2.text
    finished = await web.world.wait(plan.id, until=STOPPED, timeout=30)
    assert finished.result is PlanResult.SUCCESS
    again = await web.client.post(f"/api/v1/plans/{first.id}/skip-failed")
    assert again.status_code == 409


async def test_api_cancel_of_a_paused_fleet_cancels_its_hosts_and_counts_say_so(
    web: Web,
) -> None:
    plan = await _fleet(web, ["web-11", "web-12", "db-01"], "broken-cancel")
    detail = (await web.client.get(f"/api/v1/plans/{plan.id}")).json()
    assert detail["host_counts"]["error"] == 3 and detail["host_counts"]["paused"] == 3
    assert {h["status"] for h in detail["hosts"]} == {"error"}
    r = await web.client.post(f"/api/v1/plans/{plan.id}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "stopped" and r.json()["result"] == "cancelled"
    detail = (await web.client.get(f"/api/v1/plans/{plan.id}")).json()
    counts = detail["host_counts"]
    assert (counts["cancelled"], counts["error"], counts["paused"]) == (3, 0, 0)
    assert counts["summary"] == "3 hosts: 0 succeeded, 0 failed, 3 cancelled"
    assert {(h["state"], h["result"]) for h in detail["hosts"]} == {("stopped", "cancelled")}
    single = (await web.client.get(f"/api/v1/plans/{detail['hosts'][0]['plan_id']}")).json()
    assert single["host_counts"] is None and single["hosts"] == []
