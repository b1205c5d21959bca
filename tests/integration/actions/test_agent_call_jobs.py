"""AgentCall through ``Jobs.start_on_hosts``: any agent action on one host as itself, on
many as a fleet job, on the real engine with simulated hosts behind the real agent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mcoflow.actions import AgentCall, FleetJob, JobInputError, Jobs, host_results
from mcoflow.engine import PlanResult
from mcoflow.orchestrator import Orchestrator
from tests.embedded import embedded_orchestrator


@pytest.fixture
async def fleet(db_url: str, tmp_path: Path) -> AsyncIterator[Orchestrator]:
    async with embedded_orchestrator(
        db_url, tmp_path, hosts=3, simulation={"packages": {"curl": "7.88"}}
    ) as o:
        yield o


async def test_one_named_host_runs_the_call_itself(fleet: Orchestrator) -> None:
    jobs = Jobs(fleet.world, check_hosts=False)
    plan = await jobs.start_on_hosts(
        AgentCall,
        {"agent": "package", "action": "status", "data": {"package": "curl"}},
        hosts=["sim-00001"],
    )
    assert plan.action == AgentCall.name
    assert plan.label == "package.status on sim-00001"
    done = await fleet.world.wait(plan.id, timeout=30)
    assert done.result is PlanResult.SUCCESS
    (step,) = [s for s in await fleet.world.steps(plan.id) if s.action == AgentCall.name]
    assert step.output is not None
    assert (step.output["ensure"], step.output["version"]) == ("installed", "7.88")


async def test_a_filter_runs_a_fleet_job_of_calls(fleet: Orchestrator) -> None:
    jobs = Jobs(fleet.world, check_hosts=False)
    plan = await jobs.start_on_hosts(
        AgentCall,
        {"agent": "rpcutil", "action": "get_fact", "data": {"fact": "hostname"}},
        filter="identity:/^sim-0000[12]$/",
        what="rpcutil.get_fact",
    )
    assert plan.action == FleetJob.name
    assert plan.label == "rpcutil.get_fact on hosts matching identity:/^sim-0000[12]$/"
    done = await fleet.world.wait(plan.id, timeout=30)
    assert done.result is PlanResult.SUCCESS
    outcomes = await host_results(fleet.world, plan.id)
    assert [(o.host, o.result) for o in outcomes] == [
        ("sim-00001", PlanResult.SUCCESS),
        ("sim-00002", PlanResult.SUCCESS),
    ]


async def test_an_input_the_agent_refuses_fails_the_host_naming_it(fleet: Orchestrator) -> None:
    jobs = Jobs(fleet.world, check_hosts=False)
    plan = await jobs.start_on_hosts(
        AgentCall,
        {"agent": "package", "action": "status", "data": {"pkg": "curl"}},
        hosts=["sim-00001"],
    )
    done = await fleet.world.wait(plan.id, timeout=30)
    assert done.result is PlanResult.ERROR
    (step,) = [s for s in await fleet.world.steps(plan.id) if s.action == AgentCall.name]
    assert step.error is not None
    assert "input pkg is not an input of status" in step.error["message"]


async def test_both_hosts_and_a_filter_is_refused(fleet: Orchestrator) -> None:
    with pytest.raises(JobInputError) as caught:
        await Jobs(fleet.world).start_on_hosts(
            AgentCall,
            {"agent": "package", "action": "status"},
            hosts=["sim-00001"],
            filter="class:web",
        )
    assert caught.value.field == "filter"
