"""A big fleet's hosts are paged in the REST API, the plan page and its live updates:
the counts are of every host, the rows of one page only."""

from __future__ import annotations

import json
import re

from web_client import Web
from web_fakes import FleetJob

from mcoflow.engine import Plan
from mcoflow.web.sse import plan_events
from mcoflow.web.views import MAX_HOST_ROWS, HostTable

HOSTS = [f"h-{i:04d}" for i in range(230)]
BROKEN = ["h-0007", "h-0150", "h-0201"]
PACKAGES = ["nginx", *(f"broken-{h}@{h}" for h in BROKEN)]


async def _fleet(web: Web) -> Plan:
    # the fake job service knows a dozen hosts: its fleet action takes any
    plan = await web.world.trigger(
        FleetJob, kind="install", hosts=list(reversed(HOSTS)), packages=PACKAGES
    )
    return await web.world.wait(plan.id, timeout=60)


def _rows(page: str) -> list[str]:
    body = page.split('<tbody id="host-rows">', 1)[1].split("</tbody>", 1)[0]
    return re.findall(r'<a href="/plans/[0-9a-f]+">([^<]+)</a>', body)


async def test_api_detail_has_counts_and_first_page_and_hosts_pages(web: Web) -> None:
    plan = await _fleet(web)
    detail = (await web.client.get(f"/api/v1/plans/{plan.id}")).json()
    assert [h["host"] for h in detail["hosts"]] == HOSTS[:100]
    counts = detail["host_counts"]
    assert (counts["total"], counts["error"], counts["success"]) == (230, 3, 227)
    assert detail["hosts_next"] == f"/api/v1/plans/{plan.id}/hosts?offset=100&limit=100"
    failed = next(h for h in detail["hosts"] if h["host"] == "h-0007")
    assert failed["status"] == "error" and "broken-h-0007" in failed["message"]

    seen: list[str] = []
    url: str | None = detail["hosts_next"]
    while url:
        page = (await web.client.get(url)).json()
        assert page["host_counts"]["total"] == 230 and page["total"] == 230
        seen += [h["host"] for h in page["hosts"]]
        url = page["next"]
    assert seen == HOSTS[100:]

    errors = (await web.client.get(f"/api/v1/plans/{plan.id}/hosts?status=error&limit=2")).json()
    assert [h["host"] for h in errors["hosts"]] == BROKEN[:2]
    assert errors["total"] == 3
    assert errors["next"] == f"/api/v1/plans/{plan.id}/hosts?status=error&offset=2&limit=2"
    rest = (await web.client.get(errors["next"])).json()
    assert [h["host"] for h in rest["hosts"]] == BROKEN[2:] and rest["next"] is None
    failed_hosts = (await web.client.get(f"/api/v1/plans/{plan.id}/hosts?status=failed")).json()
    assert [h["host"] for h in failed_hosts["hosts"]] == BROKEN


async def test_api_hosts_refuses_bad_values_naming_the_field(web: Web) -> None:
    plan = await _fleet(web)
    for query, field in [
        ("status=broken", "status"),
        ("limit=0", "limit"),
        ("limit=100000", "limit"),
        ("offset=-1", "offset"),
        ("offset=x", "offset"),
        ("stat=error", "stat"),
    ]:
        r = await web.client.get(f"/api/v1/plans/{plan.id}/hosts?{query}")
        assert r.status_code == 422, (query, r.text)
        assert r.json()["field"] == field, (query, r.text)
    small = (await web.client.get(f"/api/v1/plans/{plan.id}")).json()
    single = (await web.client.get(f"/api/v1/plans/{small['hosts'][0]['plan_id']}")).json()
    assert single["hosts"] == [] and single["hosts_next"] is None


async def test_page_shows_one_page_with_links_and_filter_chips(web: Web) -> None:
    plan = await _fleet(web)
    assert MAX_HOST_ROWS == 100
    page = (await web.client.get(f"/plans/{plan.id}")).text
    assert _rows(page) == HOSTS[:100]
    assert "Hosts 1 to 100 of 230" in page
    assert "230 hosts: 227 succeeded, 3 failed (3 waiting for the operator)" in page
    assert f'href="/plans/{plan.id}?offset=100#hosts" id="host-next"' in page
    assert re.search(r'<a href="[^"]*" id="host-prev" rel="prev" hidden>', page)
    assert f'href="/plans/{plan.id}?hosts=error#hosts"' in page  # the chip links
    assert page.count('class="warn host-skip"') == 2  # h-0007's row, and the template

    last = (await web.client.get(f"/plans/{plan.id}?offset=200")).text
    assert _rows(last) == HOSTS[200:]
    assert f'href="/plans/{plan.id}?offset=100#hosts" id="host-prev"' in last
    assert re.search(r'<a href="[^"]*" id="host-next" rel="next" hidden>', last)
    assert f'data-events="/plans/{plan.id}/events?hosts=&amp;offset=200"' in last

    errors = (await web.client.get(f"/plans/{plan.id}?hosts=error")).text
    assert _rows(errors) == BROKEN
    assert "Hosts 1 to 3 of 3 error" in errors
    assert 'class="chip active">error' in errors.replace('data-filter="error" ', "")
    # a hand-edited link shows every host rather than an error
    odd = await web.client.get(f"/plans/{plan.id}?hosts=nonsense&offset=x")
    assert odd.status_code == 200 and _rows(odd.text) == HOSTS[:100]


async def test_live_updates_send_the_counts_and_the_visible_page_only(web: Web) -> None:
    plan = await _fleet(web)
    table = HostTable(web.world, status="success", offset=220)
    stream = plan_events(web.world, plan.id, interval=0.05, table=table)
    # the fleet is paused (its failed hosts wait): the stream goes on; its first snapshot
    async for message in stream:
        if message.startswith("event: plan"):
            snapshot = json.loads(message.split("data: ", 1)[1])
            break
    await stream.aclose()  # type: ignore[attr-defined]
    success = [h for h in HOSTS if h not in BROKEN]
    assert [h["host"] for h in snapshot["hosts"]] == success[220:]
    assert snapshot["host_counts"]["total"] == 230 and snapshot["host_total"] == 230
    assert snapshot["host_range"] == "Hosts 221 to 227 of 227 success"
    assert snapshot["host_next_url"] == ""
    assert snapshot["host_prev_url"] == f"/plans/{plan.id}?hosts=success&offset=120#hosts"
