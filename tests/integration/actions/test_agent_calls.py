"""Any agent action through ``AgentCalls`` on the real engine with simulated hosts behind
the real agent: the interface fetched from a host and cached, inputs checked against it
before anything is sent, one step per host, each host's reply."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mcoflow.actions import AgentCall, AgentCalls, FleetJob, JobInputError, Jobs
from mcoflow.actions.agent_calls import ReadOnlyAgentCall
from mcoflow.engine import PlanResult, PlanState
from mcoflow.orchestrator import Orchestrator
from tests.embedded import embedded_orchestrator


@pytest.fixture
async def fleet(db_url: str, tmp_path: Path) -> AsyncIterator[Orchestrator]:
    async with embedded_orchestrator(
        db_url, tmp_path, hosts=3, simulation={"packages": {"curl": "7.88"}}
    ) as o:
        await Jobs(o.world).discover(timeout=2.0)
        yield o


async def test_the_interface_is_fetched_once_then_read_from_the_cache(
    fleet: Orchestrator,
) -> None:
    calls = AgentCalls(Jobs(fleet.world))
    assert await calls.known() == {}
    spec = await calls.action_spec("package", "status", hosts=["sim-00002"])
    assert spec.read_only and spec.input("package") is not None
    cached = await fleet.world.store.list_agent_interfaces()
    assert [r.agent for r in cached] == ["package", "rpcutil", "service"]
    assert {r.host for r in cached} == {"sim-00002"}
    before = (await fleet.world.list_plans()).total
    again = await calls.action_spec("service", "restart")
    assert not again.read_only
    assert (await fleet.world.list_plans()).total == before  # no second fetch


async def test_a_read_only_action_on_many_hosts_reports_each_reply(fleet: Orchestrator) -> None:
    calls = AgentCalls(Jobs(fleet.world))
    plan = await calls.start(
        "package", "status", {"package": "curl"}, as_text=True, filter="identity:/^sim-/"
    )
    assert plan.action == FleetJob.name
    assert plan.args["host_action"] == ReadOnlyAgentCall.name
    assert plan.label == "package.status on hosts matching identity:/^sim-/"
    done = await fleet.world.wait(plan.id, timeout=30)
    assert done.result is PlanResult.SUCCESS
    rows = await calls.results(plan.id)
    assert [r.host for r in rows] == ["sim-00001", "sim-00002", "sim-00003"]
    assert {(r.status, r.data["ensure"], r.data["version"]) for r in rows} == {
        ("success", "installed", "7.88")
    }


async def test_one_host_runs_the_call_itself_and_a_change_is_not_read_only(
    fleet: Orchestrator,
) -> None:
    calls = AgentCalls(Jobs(fleet.world))
    plan = await calls.start(
        "service", "restart", {"service": "nginx"}, as_text=True, hosts=["sim-00001"]
    )
    assert plan.action == AgentCall.name
    await fleet.world.wait(plan.id, timeout=30)
    [row] = await calls.results(plan.id)
    assert (row.host, row.status, row.data["status"]) == ("sim-00001", "success", "running")


async def test_a_host_that_refuses_fails_with_its_reason(fleet: Orchestrator) -> None:
    calls = AgentCalls(Jobs(fleet.world))
    plan = await calls.start(
        "rpcutil",
        "agent_interfaces",
        {"agent": "nope"},
        as_text=True,
        hosts=["sim-00001", "sim-00003"],
    )
    done = await fleet.world.wait(plan.id, timeout=30)
    assert done.state is PlanState.PAUSED
    rows = await calls.results(plan.id)
    assert [(r.host, r.status) for r in rows] == [("sim-00001", "error"), ("sim-00003", "error")]
    assert all(r.failed and "serves no agent nope" in r.message for r in rows)


@pytest.mark.parametrize(
    ("agent", "action", "inputs", "field", "words"),
    [
        ("pkg", "status", {}, "agent", "unknown agent 'pkg' (the hosts serve: package, rpcutil"),
        ("package", "stat", {}, "action", "agent package has no action 'stat' (its actions:"),
        ("package", "status", {}, "inputs.package", "is required (package.status takes: package"),
        ("package", "status", {"pkg": "x"}, "inputs.pkg", "is not an input of package.status"),
        ("package", "status", {"package": "a b"}, "inputs.package", "does not match"),
    ],
)
async def test_bad_input_is_refused_before_anything_is_sent(
    fleet: Orchestrator, agent: str, action: str, inputs: dict[str, str], field: str, words: str
) -> None:
    calls = AgentCalls(Jobs(fleet.world))
    await calls.fetch("sim-00001")
    plans_before = (await fleet.world.list_plans()).total
    with pytest.raises(JobInputError) as caught:
        await calls.start(agent, action, inputs, as_text=True, hosts=["sim-00001"])
    assert caught.value.field == field
    assert words in caught.value.message
    # an unknown agent or action was looked for once more on a host; nothing else ran
    fetched = 1 if field in ("agent", "action") else 0
    assert (await fleet.world.list_plans()).total == plans_before + fetched
