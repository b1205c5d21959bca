"""The REST API on a real engine: triggers, reads, operator actions, errors."""

from __future__ import annotations

import pytest
import web_fakes
from web_client import Web

from mcoflow.engine import PlanState
from mcoflow.engine.store import HostInventory, HostSighting
from mcoflow.testing import assert_eventually

KINDS = [
    ("install", "nginx,curl"),
    ("uninstall", "telnet"),
    ("restart", "nginx"),
    ("install-and-restart", "nginx,openssl;nginx"),
]


@pytest.mark.parametrize(("kind", "parameter"), KINDS)
async def test_trigger_each_kind_on_one_host(web: Web, kind: str, parameter: str) -> None:
    r = await web.client.post(
        "/api/v1/jobs", json={"kind": kind, "hosts": ["web-01"], "parameter": parameter}
    )
    assert r.status_code == 201, r.text
    plan = r.json()
    assert plan["parent_plan_id"] is None
    done = await web.world.wait(plan["id"])
    assert (done.state.value, done.result.value) == ("stopped", "success")
    shown = (await web.client.get(f"/api/v1/plans/{plan['id']}")).json()
    assert shown["state"] == "stopped"
    assert shown["steps"], "a plan shows its run steps"
    assert all(s["state"] == "success" for s in shown["steps"])
    assert shown["steps"][0]["output"]["reply"]["statuscode"] == 0
    assert web.jobs.triggered[-1]["by"] == "web"


@pytest.mark.parametrize(("kind", "parameter"), KINDS)
async def test_trigger_each_kind_on_a_fleet(web: Web, kind: str, parameter: str) -> None:
    body = {
        "kind": kind,
        "filter": "identity:/^web-0[1-4]$/",
        "parameter": parameter,
        "concurrency": 2,
    }
    r = await web.client.post("/api/v1/jobs", json=body)
    assert r.status_code == 201, r.text
    done = await web.world.wait(r.json()["id"])
    assert done.result.value == "success"
    shown = (await web.client.get(f"/api/v1/plans/{done.id}")).json()
    assert sorted(h["host"] for h in shown["hosts"]) == ["web-01", "web-02", "web-03", "web-04"]
    assert {h["result"] for h in shown["hosts"]} == {"success"}


async def test_list_filters_and_pages(web: Web) -> None:
    ids = []
    for host in ["web-01", "web-02", "web-03"]:
        r = await web.client.post(
            "/api/v1/jobs", json={"kind": "install", "hosts": [host], "parameter": "vim"}
        )
        ids.append(r.json()["id"])
    bad = await web.client.post(
        "/api/v1/jobs", json={"kind": "install", "hosts": ["db-01"], "parameter": "broken-pkg"}
    )
    for plan_id in [*ids, bad.json()["id"]]:
        await web.world.wait(plan_id)

    everything = (await web.client.get("/api/v1/plans")).json()
    assert everything["total"] == 4
    page = (await web.client.get("/api/v1/plans?limit=2&offset=2&order=created_at")).json()
    assert [p["id"] for p in page["items"]] == [ids[2], bad.json()["id"]]
    paused = (await web.client.get("/api/v1/plans?state=paused")).json()
    assert [p["label"] for p in paused["items"]] == ["install broken-pkg on db-01"]
    assert (await web.client.get("/api/v1/plans?result=success")).json()["total"] == 3
    assert (await web.client.get("/api/v1/plans?label=WEB-02")).json()["total"] == 1
    by_action = await web.client.get("/api/v1/plans", params={"action": "web_fakes.HostJob"})
    assert by_action.json()["total"] == 4


async def test_sub_plans_are_listed_on_request(web: Web) -> None:
    r = await web.client.post(
        "/api/v1/jobs", json={"kind": "install", "hosts": ["web-01", "web-02"], "parameter": "x"}
    )
    await web.world.wait(r.json()["id"])
    assert (await web.client.get("/api/v1/plans")).json()["total"] == 1
    children = await web.client.get(
        "/api/v1/plans", params={"parent": r.json()["id"], "top_level": "false"}
    )
    assert children.json()["total"] == 2


async def test_resume_skip_and_cancel(web: Web) -> None:
    r = await web.client.post(
        "/api/v1/jobs",
        json={"kind": "install-and-restart", "hosts": ["web-05"], "parameter": "fail-once-a;ssh"},
    )
    plan_id = r.json()["id"]
    paused = await web.world.wait(plan_id)
    assert paused.state is PlanState.PAUSED
    resumed = await web.client.post(f"/api/v1/plans/{plan_id}/resume")
    assert resumed.status_code == 200, resumed.text
    assert (await web.world.wait(plan_id)).result.value == "success"

    again = await web.client.post(f"/api/v1/plans/{plan_id}/resume")
    assert again.status_code == 409
    assert "only a paused plan can be resumed" in again.json()["detail"]

    r = await web.client.post(
        "/api/v1/jobs",
        json={"kind": "install-and-restart", "hosts": ["web-06"], "parameter": "broken-b;ssh"},
    )
    plan_id = r.json()["id"]
    await web.world.wait(plan_id)
    steps = (await web.client.get(f"/api/v1/plans/{plan_id}")).json()["steps"]
    failed = next(s for s in steps if s["state"] == "error")
    assert "Unable to locate package broken-b" in failed["error"]["message"]
    assert "RuntimeError" in failed["error"]["traceback"]
    assert failed["data"]["reply"]["statuscode"] == 1
    skipped = await web.client.post(f"/api/v1/plans/{plan_id}/steps/{failed['idx']}/skip")
    assert skipped.status_code == 200, skipped.text
    done = await web.world.wait(plan_id)
    assert done.result.value == "warning"
    not_failed = await web.client.post(f"/api/v1/plans/{plan_id}/steps/{failed['idx']}/skip")
    assert not_failed.status_code == 409

    web_fakes.DELAY["seconds"] = 30
    r = await web.client.post(
        "/api/v1/jobs", json={"kind": "install", "hosts": ["web-07"], "parameter": "slow"}
    )
    cancelled = await web.client.post(f"/api/v1/plans/{r.json()['id']}/cancel")
    assert cancelled.status_code == 200
    done = await web.world.wait(r.json()["id"])
    assert done.result.value == "cancelled"
    assert (await web.client.post(f"/api/v1/plans/{done.id}/cancel")).status_code == 409


async def test_rerun_failed_hosts(web: Web) -> None:
    r = await web.client.post(
        "/api/v1/jobs",
        json={"kind": "install", "hosts": ["web-01", "web-02", "web-03"], "parameter": "nginx"},
    )
    web_fakes.FAILED_ONCE.discard(("web-02", "fail-once-r"))
    fleet = await web.client.post(
        "/api/v1/jobs",
        json={"kind": "install", "hosts": ["web-01", "web-02"], "parameter": "fail-once-r"},
    )
    await web.world.wait(r.json()["id"])
    assert (
        await web.client.post(f"/api/v1/plans/{r.json()['id']}/rerun-failed")
    ).status_code == 409
    fleet_id = fleet.json()["id"]
    assert (await web.world.wait(fleet_id)).state is PlanState.PAUSED
    hosts = (await web.client.get(f"/api/v1/plans/{fleet_id}")).json()["hosts"]
    failed = sorted(h["host"] for h in hosts if h["state"] == "paused")
    assert failed == ["web-01", "web-02"]
    assert all("Unable to locate package" in h["message"] for h in hosts)

    rerun = await web.client.post(f"/api/v1/plans/{fleet_id}/rerun-failed")
    assert rerun.status_code == 201, rerun.text
    done = await web.world.wait(rerun.json()["id"])
    assert done.result.value == "success"
    children = await web.world.store.child_plans(done.id)
    assert sorted(c.label for c in children) == ["web-01", "web-02"]


async def test_hosts_and_executors(web: Web) -> None:
    assert (await web.client.get("/api/v1/hosts")).json() == {"hosts": [], "total": 0}
    db = HostInventory({"os_family": "debian", "cpus": 8}, ("db",), ("rpcutil", "package"))
    web_ = HostInventory({"os_family": "debian", "cpus": 2}, ("web",), ("rpcutil",))
    await web.world.store.record_sightings(
        [
            HostSighting("db-01", 100.0, db),
            HostSighting("web-01", 100.0, web_),
            HostSighting("web-01", 160.0),  # a later reply
            HostSighting("ghost-9", 120.0),  # answered once, never reported facts
        ]
    )
    everything = (await web.client.get("/api/v1/hosts")).json()
    assert everything["total"] == 3
    assert [h["identity"] for h in everything["hosts"]] == ["db-01", "ghost-9", "web-01"]
    assert everything["hosts"][2] == {
        "identity": "web-01",
        "facts": {"os_family": "debian", "cpus": 2},
        "classes": ["web"],
        "agents": ["rpcutil"],
        "first_seen": 100.0,
        "last_seen": 160.0,
        "inventory_at": 100.0,
    }
    assert everything["hosts"][1]["facts"] == {}
    dbs = (await web.client.get("/api/v1/hosts", params={"filter": "class:db"})).json()
    assert [h["identity"] for h in dbs["hosts"]] == ["db-01"]
    big = (await web.client.get("/api/v1/hosts", params={"filter": "cpus>=4"})).json()
    assert [h["identity"] for h in big["hosts"]] == ["db-01"]
    bad = await web.client.get("/api/v1/hosts", params={"filter": "identity:/(/"})
    assert bad.status_code == 422
    assert bad.json()["field"] == "filter"
    found = await web.client.post("/api/v1/hosts/discover", json={"filter": "class:db"})
    assert found.json() == {"hosts": ["db-01", "db-02"]}
    typo = await web.client.post("/api/v1/hosts/discover", json={"filtre": "class:db"})
    assert typo.status_code == 422

    async def executor_listed() -> None:
        body = (await web.client.get("/api/v1/executors")).json()
        assert body["broker"] == "connected"
        assert len(body["executors"]) == 1

    await assert_eventually(executor_listed)


@pytest.mark.parametrize(
    ("body", "field", "text"),
    [
        ({"kind": "install", "hosts": ["nope"], "parameter": "x"}, "hosts", "unknown host: nope"),
        ({"kind": "install", "hosts": ["web-01"], "parameter": "a,,b"}, "parameter", "empty"),
        ({"kind": "install", "filter": "class:zzz", "parameter": "a"}, "filter", "no host matches"),
        ({"kind": "reboot", "hosts": ["web-01"], "parameter": "a"}, "kind", "install"),
        ({"kind": "install", "hosts": ["web-01"]}, "parameter", "Field required"),
        (
            {
                "kind": "install",
                "hosts": ["web-01", "web-02"],
                "parameter": "a",
                "max_failures": "x",
            },
            "max_failures",
            "should match pattern",
        ),
        (
            {"kind": "install", "hosts": ["web-01"], "parameter": "a", "concurrency": 0},
            "concurrency",
            "greater than or equal to 1",
        ),
    ],
)
async def test_bad_input_is_422_naming_the_field(
    web: Web, body: dict[str, object], field: str, text: str
) -> None:
    r = await web.client.post("/api/v1/jobs", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field
    assert text in r.json()["detail"]


async def test_unknown_plan_is_404(web: Web) -> None:
    for method, path in [
        ("GET", "/api/v1/plans/nope"),
        ("GET", "/api/v1/plans/nope/hosts"),
        ("POST", "/api/v1/plans/nope/resume"),
        ("POST", "/api/v1/plans/nope/cancel"),
        ("POST", "/api/v1/plans/nope/steps/1/skip"),
        ("POST", "/api/v1/plans/nope/rerun-failed"),
    ]:
        r = await web.client.request(method, path)
        assert r.status_code == 404, (path, r.text)
        assert r.json()["detail"] == "no plan nope"


async def test_openapi_documents_every_operation(web: Web) -> None:
    schema = (await web.client.get("/api/v1/openapi.json")).json()
    paths = {(m.upper(), p) for p, ops in schema["paths"].items() for m in ops}
    assert paths == {
        ("POST", "/api/v1/jobs"),
        ("GET", "/api/v1/plans"),
        ("GET", "/api/v1/plans/{plan_id}"),
        ("GET", "/api/v1/plans/{plan_id}/hosts"),
        ("POST", "/api/v1/plans/{plan_id}/resume"),
        ("POST", "/api/v1/plans/{plan_id}/steps/{idx}/skip"),
        ("POST", "/api/v1/plans/{plan_id}/cancel"),
        ("POST", "/api/v1/plans/{plan_id}/skip-failed"),
        ("POST", "/api/v1/plans/{plan_id}/rerun-failed"),
        ("GET", "/api/v1/hosts"),
        ("POST", "/api/v1/hosts/discover"),
        ("GET", "/api/v1/groups"),
        ("POST", "/api/v1/groups"),
        ("GET", "/api/v1/groups/{name}"),
        ("DELETE", "/api/v1/groups/{name}"),
        ("GET", "/api/v1/agents"),
        ("POST", "/api/v1/agents"),
        ("GET", "/api/v1/agents/{agent}"),
        ("POST", "/api/v1/rpc"),
        ("GET", "/api/v1/rpc/{plan_id}"),
        ("GET", "/api/v1/templates"),
        ("GET", "/api/v1/templates/{name}"),
        ("POST", "/api/v1/templates/{name}/run"),
        ("GET", "/api/v1/schedules"),
        ("POST", "/api/v1/schedules"),
        ("GET", "/api/v1/schedules/{name}"),
        ("DELETE", "/api/v1/schedules/{name}"),
        ("POST", "/api/v1/schedules/{name}/pause"),
        ("POST", "/api/v1/schedules/{name}/resume"),
        ("GET", "/api/v1/executors"),
    }


async def test_unknown_and_repeated_query_parameters_are_refused(web: Web) -> None:
    typo = await web.client.get("/api/v1/plans", params={"stat": "running"})
    assert typo.status_code == 422
    assert typo.json()["field"] == "stat"
    assert "unknown query parameter" in typo.json()["detail"]
    assert "state" in typo.json()["detail"]  # it says what the endpoint takes
    twice = await web.client.get("/api/v1/hosts?filter=class:web&filter=class:db")
    assert twice.status_code == 422
    assert twice.json()["detail"] == "filter: given 2 times; give it once"
