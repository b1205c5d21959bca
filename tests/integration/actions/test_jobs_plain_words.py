"""Issue 16, plain words and delayed jobs, on the real engine (SQLite and PostgreSQL),
the in-process broker and simulated hosts behind the real agent daemon: filter labels,
references in words, policy refusals, filter errors, and jobs that start later."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mcoflow.actions import Discover, FleetJob, JobInputError, Jobs
from mcoflow.agent.policy import Policy
from mcoflow.engine import PlanFilter, PlanResult, PlanState, StepState
from mcoflow.engine.display import step_titles, summary_text
from mcoflow.orchestrator import Orchestrator
from mcoflow.testing import assert_eventually
from tests.embedded import embedded_orchestrator


@pytest.fixture
async def fleet(db_url: str, tmp_path: Path) -> AsyncIterator[Orchestrator]:
    async with embedded_orchestrator(
        db_url, tmp_path, hosts=4, simulation={"packages": {"curl": "7.88"}}
    ) as o:
        yield o


def jobs(o: Orchestrator) -> Jobs:
    return Jobs(o.world, check_hosts=False)


async def test_a_filter_job_is_labelled_with_the_filter_as_written(fleet: Orchestrator) -> None:
    written = "identity:/^sim-0000[12]$/   agent:package"
    plan = await jobs(fleet).trigger("install", filter=written, parameter="nginx")
    assert plan.label == "install nginx on hosts matching identity:/^sim-0000[12]$/ agent:package"
    done = await fleet.world.wait(plan.id, timeout=30)
    assert done.result is PlanResult.SUCCESS
    (discover,) = [s for s in await fleet.world.steps(plan.id) if s.action == Discover.name]
    assert discover.output == {"hosts": ["sim-00001", "sim-00002"]}
    # the label is in every listing, never the filter's JSON
    page = await fleet.world.list_plans(PlanFilter(action=FleetJob.name))
    assert [p.label for p in page.items] == [plan.label]
    assert "{" not in plan.label


async def test_a_fleet_job_given_a_filter_as_json_reads_in_the_cli_grammar(
    fleet: Orchestrator,
) -> None:
    plan = await fleet.world.trigger(
        FleetJob,
        kind="install",
        filter={"identity": ["/^sim-00003$/"], "facts": [], "classes": [], "agents": []},
        packages=["nginx"],
    )
    assert plan.label == "install nginx on hosts matching identity:/^sim-00003$/"


async def test_a_bad_filter_regex_names_the_pattern_and_the_regex_error(
    fleet: Orchestrator,
) -> None:
    with pytest.raises(JobInputError) as caught:
        await jobs(fleet).trigger("install", filter="identity:/^(sim/", parameter="nginx")
    assert caught.value.field == "filter"
    assert "'^(sim'" in caught.value.message
    assert "missing ), unterminated subpattern" in caught.value.message
    assert "validation error" not in caught.value.message
    with pytest.raises(JobInputError) as fact:
        await jobs(fleet).discover("cpus>=4 os_family")
    assert fact.value.message == (
        "invalid fact filter 'os_family': expected FACT OPERATOR VALUE (column 9)"
    )
    assert (await fleet.world.list_plans()).total == 0


async def test_a_reference_reads_as_the_output_of_a_named_step(fleet: Orchestrator) -> None:
    plan = await jobs(fleet).trigger(
        "install-and-restart", hosts="sim-00001", parameter="curl;nginx"
    )
    await fleet.world.wait(plan.id, timeout=30)
    steps = await fleet.world.steps(plan.id)
    titles = step_titles(steps)
    (install,) = [s for s in steps if s.action == "mcoflow.install"]
    (restart,) = [s for s in steps if s.action == "mcoflow.restart"]
    text = summary_text(restart.input, titles)
    assert f"installations=[output of step {install.idx} (Install curl on sim-00001)]" in text
    assert "$ref" not in text


async def test_a_policy_refusal_reads_denied_by_policy_on_the_host(fleet: Orchestrator) -> None:
    daemon: Any = fleet.agents[-1]
    daemon.dispatcher.policy = Policy.model_validate(
        {"rules": [{"allow": {"agent": "rpcutil"}}], "default": "deny"}
    )
    plan = await jobs(fleet).trigger("install", hosts="sim-00002", parameter="nginx")
    done = await fleet.world.wait(plan.id, timeout=30)
    assert done.state is PlanState.PAUSED
    (step,) = [s for s in await fleet.world.steps(plan.id) if s.state is StepState.ERROR]
    assert step.error is not None
    message = step.error["message"]
    assert message.startswith("denied by policy on sim-00002: ")
    assert "is not authorized to call package.install" in message
    assert "the action failed" not in message


async def test_a_delayed_job_is_scheduled_then_starts_at_its_time(fleet: Orchestrator) -> None:
    at = time.time() + 1.5
    plan = await jobs(fleet).trigger(
        "install", hosts="sim-00003", parameter="nginx", start_at=at, start_before=at + 60
    )
    assert plan.state is PlanState.SCHEDULED
    assert plan.start_at == pytest.approx(at)
    assert plan.start_before == pytest.approx(at + 60)
    assert plan.label == "Install nginx on sim-00003"
    page = await fleet.world.list_plans(PlanFilter(state=PlanState.SCHEDULED))
    assert [p.id for p in page.items] == [plan.id]

    async def finished() -> None:
        current = await fleet.world.get_plan(plan.id)
        assert current.result is PlanResult.SUCCESS

    await assert_eventually(finished, timeout=30)
    done = await fleet.world.get_plan(plan.id)
    assert done.started_at is not None
    assert done.started_at >= at


async def test_a_job_for_a_past_time_is_refused_naming_the_field(fleet: Orchestrator) -> None:
    with pytest.raises(JobInputError) as past:
        await jobs(fleet).trigger(
            "install", hosts="sim-00001", parameter="nginx", start_at=time.time() - 3600
        )
    assert past.value.field == "start_at"
    assert "is in the past" in past.value.message
    now = time.time()
    with pytest.raises(JobInputError) as order:
        await jobs(fleet).trigger(
            "install",
            hosts="sim-00001",
            parameter="nginx",
            start_at=now + 600,
            start_before=now + 60,
        )
    assert order.value.field == "start_before"
    assert "is not after start_at" in order.value.message
    assert (await fleet.world.list_plans()).total == 0
