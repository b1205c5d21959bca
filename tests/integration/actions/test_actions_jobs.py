"""The operator's jobs end to end in one process: engine (SQLite and PostgreSQL),
the in-process broker, and simulated hosts answering through the real agent daemon."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mcoflow.actions import Install, InstallAndRestart, JobInputError, Jobs, host_results
from mcoflow.engine import PlanResult, PlanState, StepState
from mcoflow.orchestrator import Orchestrator
from mcoflow.testing import assert_eventually
from tests.embedded import embedded_orchestrator


@pytest.fixture
async def fleet(db_url: str, tmp_path: Path) -> AsyncIterator[Orchestrator]:
    async with embedded_orchestrator(
        db_url,
        tmp_path,
        hosts=30,
        simulation={"packages": {"curl": "7.88"}, "broken_packages": ["broken"]},
    ) as o:
        yield o


def sim_fleet(o: Orchestrator) -> Any:
    return o.agents[-1].fleet


async def run(o: Orchestrator, kind: str, hosts: str, parameter: str, **options: Any) -> Any:
    jobs = Jobs(o.world, check_hosts=False)
    plan = await jobs.trigger(kind, hosts=hosts, parameter=parameter, **options)
    return await o.world.wait(plan.id, timeout=30)


def by_action(steps: list[Any], name: str) -> list[Any]:
    return [s for s in steps if s.action == name]


async def test_restart_runs_when_one_install_changed_the_host(fleet: Orchestrator) -> None:
    plan = await run(fleet, "install-and-restart", "sim-00001", "nginx,curl;nginx")
    assert plan.result is PlanResult.SUCCESS
    steps = await fleet.world.steps(plan.id)
    changed = {s.input["package"]: s.output["changed"] for s in by_action(steps, Install.name)}
    assert changed == {"nginx": True, "curl": False}
    (restart,) = by_action(steps, "mcoflow.restart")
    assert restart.output["restarted"] is True
    assert restart.output["status"] == "running"
    assert restart.data["reply"]["statuscode"] == 0  # the host's reply is kept
    assert sim_fleet(fleet).calls[("sim-00001", "restart")] == 1


async def test_restart_is_not_needed_when_nothing_changed(fleet: Orchestrator) -> None:
    plan = await run(fleet, "install-and-restart", "sim-00002", "curl;nginx")
    assert plan.result is PlanResult.SUCCESS
    (restart,) = by_action(await fleet.world.steps(plan.id), "mcoflow.restart")
    assert restart.output["status"] == "not needed"
    assert sim_fleet(fleet).calls[("sim-00002", "restart")] == 0


async def test_failed_install_pauses_then_resume_after_the_fix_succeeds(
    fleet: Orchestrator,
) -> None:
    plan = await run(fleet, "install-and-restart", "sim-00003", "broken,nginx;nginx")
    assert (plan.state, plan.result) == (PlanState.PAUSED, PlanResult.ERROR)
    steps = await fleet.world.steps(plan.id)
    failed = next(s for s in steps if s.state is StepState.ERROR)
    assert "status 1" in failed.error["message"]
    assert "package broken is broken" in failed.error["message"]
    assert by_action(steps, "mcoflow.restart")[0].state is StepState.PENDING
    sim = sim_fleet(fleet)
    sim.settings = sim.settings.model_copy(update={"broken_packages": ()})  # repo fixed
    await fleet.world.resume(plan.id, by="operator")
    done = await fleet.world.wait(plan.id, timeout=30)
    assert done.result is PlanResult.SUCCESS
    # a fresh request id after a real failure: the host ran the install again
    assert sim.calls[("sim-00003", "install")] == 3


async def test_skipping_a_failed_install_skips_the_restarts_that_need_it(
    fleet: Orchestrator,
) -> None:
    plan = await run(fleet, "install-and-restart", "sim-00004", "broken;nginx")
    failed = next(s for s in await fleet.world.steps(plan.id) if s.state is StepState.ERROR)
    await fleet.world.skip(plan.id, failed.idx)
    done = await fleet.world.wait(plan.id, timeout=30)
    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.WARNING)
    (restart,) = by_action(await fleet.world.steps(plan.id), "mcoflow.restart")
    assert restart.state is StepState.SKIPPED
    assert sim_fleet(fleet).calls[("sim-00004", "restart")] == 0


async def test_a_silent_host_times_out_and_the_plan_pauses(fleet: Orchestrator) -> None:
    plan = await fleet.world.trigger(Install, hostname="nobody-home", package="nginx", timeout=0.5)
    done = await fleet.world.wait(plan.id, timeout=30)
    assert (done.state, done.result) == (PlanState.PAUSED, PlanResult.ERROR)
    (step,) = await fleet.world.steps(plan.id)
    assert step.error["message"] == "no response from nobody-home within 0.5 s"


async def test_fleet_job_with_concurrency_limit_failures_and_rerun(fleet: Orchestrator) -> None:
    hosts = ",".join(f"sim-{n:05d}" for n in range(1, 21))
    sim = sim_fleet(fleet)
    sim.settings = sim.settings.model_copy(update={"delay": 0.05})
    plan = await run(fleet, "install", hosts, "nginx", concurrency=4)
    assert plan.result is PlanResult.SUCCESS
    rows = await host_results(fleet.world, plan.id)
    assert sorted(r.host for r in rows) == sorted(hosts.split(","))
    assert {r.result for r in rows} == {PlanResult.SUCCESS}
    assert sum(sim.install_count(f"sim-{n:05d}") for n in range(1, 21)) == 20


async def test_fleet_stops_after_max_failures_and_resume_goes_on(fleet: Orchestrator) -> None:
    hosts = ",".join(f"sim-{n:05d}" for n in range(1, 11))
    plan = await run(fleet, "install", hosts, "broken", concurrency=1, max_failures="2")
    assert (plan.state, plan.result) == (PlanState.PAUSED, PlanResult.ERROR)
    rows = await host_results(fleet.world, plan.id)
    assert sum(r.state is PlanState.PLANNED for r in rows) == 8  # held for a Resume
    assert sum(r.state is PlanState.PAUSED for r in rows) == 2
    assert all("broken" in r.message for r in rows if r.state is PlanState.PAUSED)
    sim = sim_fleet(fleet)
    sim.settings = sim.settings.model_copy(update={"broken_packages": ()})
    await fleet.world.resume(plan.id, by="operator")
    done = await fleet.world.wait(plan.id, timeout=30)
    assert done.result is PlanResult.SUCCESS
    rows = await host_results(fleet.world, plan.id)
    assert [r.result for r in rows] == [PlanResult.SUCCESS] * 10


async def test_a_cancelled_fleet_reruns_its_failed_and_never_run_hosts(
    fleet: Orchestrator,
) -> None:
    hosts = ",".join(f"sim-{n:05d}" for n in range(1, 11))
    plan = await run(fleet, "install", hosts, "broken", concurrency=1, max_failures="2")
    await fleet.world.cancel(plan.id, by="operator")
    sim = sim_fleet(fleet)
    sim.settings = sim.settings.model_copy(update={"broken_packages": ()})
    again = await Jobs(fleet.world).rerun_failed(plan.id, by="operator")
    assert again.args["hosts"] == sorted(hosts.split(","))  # 2 failed + 8 never run
    done = await fleet.world.wait(again.id, timeout=30)
    assert done.result is PlanResult.SUCCESS


async def test_fleet_by_filter_discovers_the_hosts(fleet: Orchestrator) -> None:
    jobs = Jobs(fleet.world)
    plan = await jobs.trigger("install", filter="identity:/^sim-0000[1-5]$/", parameter="nginx")
    done = await fleet.world.wait(plan.id, timeout=30)
    assert done.result is PlanResult.SUCCESS
    rows = await host_results(fleet.world, plan.id)
    assert sorted(r.host for r in rows) == [f"sim-{n:05d}" for n in range(1, 6)]


async def test_bad_operator_input_names_the_field(fleet: Orchestrator) -> None:
    jobs = Jobs(fleet.world)
    await jobs.discover()
    cases = [
        (dict(kind="install", hosts="sim-00001", parameter="nginx;"), "parameter"),
        (dict(kind="install-and-restart", hosts="sim-00001", parameter=";nginx"), "parameter"),
        (dict(kind="install", hosts="sim-00001", parameter="ng inx"), "parameter"),
        (dict(kind="install", hosts="", parameter="nginx"), "hosts"),
        (dict(kind="install", hosts="no-such-host", parameter="nginx"), "hosts"),
        (
            dict(kind="install", hosts="sim-00001", parameter="x", max_failures="ten"),
            "max_failures",
        ),
        (dict(kind="install", filter="os=~[", parameter="x"), "filter"),
        (dict(kind="reboot", hosts="sim-00001", parameter="x"), "kind"),
    ]
    before = (await fleet.world.list_plans()).total
    for args, field in cases:
        with pytest.raises(JobInputError) as info:
            await jobs.trigger(**args)
        assert info.value.field == field, (args, info.value)
    assert (await fleet.world.list_plans()).total == before  # nothing stored


async def test_reply_router_dedupes_and_acknowledges_after_commit(
    fleet: Orchestrator,
) -> None:
    plan = await run(fleet, "install", "sim-00005", "nginx")
    assert plan.result is PlanResult.SUCCESS
    assert fleet.router.replies >= 1

    async def published() -> None:
        rows = await fleet.store.outbox_messages(plan.id)
        assert rows
        assert all(r["published_at"] is not None for r in rows)

    await assert_eventually(published)
    assert InstallAndRestart.name == "mcoflow.install_and_restart"
