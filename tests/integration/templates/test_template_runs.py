"""Templates running on simulated hosts behind the real agent, on the embedded
orchestrator: a condition on an earlier output, the rescue strategies, an ``until``
health gate polling a service, and the rolling update stopping at its failure
threshold."""

from __future__ import annotations

from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from mcoflow.actions import FleetJob, JobInputError, Jobs, host_results
from mcoflow.engine import PlanResult, PlanState, StepState
from mcoflow.orchestrator import Orchestrator
from mcoflow.templates import (
    TemplateJob,
    TemplateStep,
    reset_template_library,
    run_template,
    use_templates_dir,
)
from tests.embedded import embedded_orchestrator

SIMULATION = {
    "packages": {"curl": "7.88", "nginx": "0.9-1"},
    "broken_packages": ["broken"],
    "broken_services": ["nginx@sim-00003", "flappy"],
    "delay": 0.0,
}

CONDITIONAL = """
name: install-if-absent
description: install a package only where it is absent
inputs:
  package: {type: string, required: true}
steps:
  - name: check
    agent: package
    action: status
    inputs: {package: "${inputs.package}"}
  - name: install
    agent: package
    action: install
    inputs: {package: "${inputs.package}"}
    when: {step: check, output: ensure, equals: absent}
"""

RESCUE = """
name: rescue-RESCUE
description: a failing install with rescue RESCUE, then a status
steps:
  - name: install
    agent: package
    action: install
    inputs: {package: broken}
    rescue: RESCUE
  - name: after
    agent: package
    action: status
    inputs: {package: curl}
"""

GATE = """
name: gate
description: wait until a service runs while another branch starts it
inputs:
  service: {type: string, required: true}
steps:
  - concurrence:
      - name: health
        agent: service
        action: status
        inputs: {service: "${inputs.service}"}
        until: {output: status, equals: running, interval: 100ms, max_wait: 1500ms}
      - name: start
        agent: service
        action: start
        inputs: {service: "${inputs.service}"}
"""


@pytest.fixture
async def fleet(db_url: str, tmp_path: Path) -> AsyncIterator[Orchestrator]:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "conditional.yaml").write_text(CONDITIONAL)
    for rescue in ("pause", "skip", "fail"):
        (folder / f"rescue-{rescue}.yaml").write_text(RESCUE.replace("RESCUE", rescue))
    (folder / "gate.yaml").write_text(GATE)
    shipped = resources.files("mcoflow.templates") / "shipped" / "rolling-package-update.yaml"
    quick = shipped.read_text().replace("name: rolling-package-update", "name: quick-rollout")
    (folder / "quick.yaml").write_text(quick.replace("max_wait: 30s", "max_wait: 1s"))
    async with embedded_orchestrator(db_url, tmp_path, hosts=6, simulation=SIMULATION) as o:
        use_templates_dir(folder)  # after the orchestrator set its own (none)
        try:
            yield o
        finally:
            reset_template_library()


async def template_steps(fleet: Orchestrator, plan_id: str) -> dict[str, Any]:
    return {
        s.input["step"]: s
        for s in await fleet.world.steps(plan_id)
        if s.action.startswith(TemplateStep.name)
    }


@pytest.mark.parametrize(
    ("package", "installed"), [("curl", False), ("vim", True)], ids=["present", "absent"]
)
async def test_a_step_runs_only_when_its_condition_on_an_output_holds(
    fleet: Orchestrator, package: str, installed: bool
) -> None:
    jobs = Jobs(fleet.world, check_hosts=False)
    plan = await run_template(jobs, "install-if-absent", {"package": package}, hosts=["sim-00001"])
    done = await fleet.world.wait(plan.id, timeout=30)
    assert done.result is PlanResult.SUCCESS, done.error
    install = (await template_steps(fleet, plan.id))["install"]
    assert install.output.get("ran", True) is installed
    if installed:
        assert install.output["changed"] is True
    else:
        assert install.output["reason"] == "not needed: check.ensure equals 'absent'"
        assert install.output["changed"] is False  # the declared default


@pytest.mark.parametrize(
    ("rescue", "state", "result", "install_state", "after_ran"),
    [
        ("pause", PlanState.PAUSED, PlanResult.ERROR, StepState.ERROR, False),
        ("skip", PlanState.STOPPED, PlanResult.WARNING, StepState.SKIPPED, True),
        ("fail", PlanState.STOPPED, PlanResult.ERROR, StepState.ERROR, False),
    ],
)
async def test_a_failing_step_is_rescued_as_its_template_says(
    fleet: Orchestrator,
    rescue: str,
    state: PlanState,
    result: PlanResult,
    install_state: StepState,
    after_ran: bool,
) -> None:
    jobs = Jobs(fleet.world, check_hosts=False)
    plan = await run_template(jobs, f"rescue-{rescue}", {}, hosts=["sim-00001"])
    done = await fleet.world.wait(plan.id, timeout=30)
    assert (done.state, done.result) == (state, result)
    steps = await template_steps(fleet, plan.id)
    assert steps["install"].state is install_state
    assert (steps["after"].state is StepState.SUCCESS) is after_ran


async def test_until_polls_the_service_until_it_runs(fleet: Orchestrator) -> None:
    jobs = Jobs(fleet.world, check_hosts=False)
    plan = await run_template(jobs, "gate", {"service": "postfix"}, hosts=["sim-00002"])
    done = await fleet.world.wait(plan.id, timeout=30)
    assert done.result is PlanResult.SUCCESS, done.error
    health = (await template_steps(fleet, plan.id))["health"]
    assert health.output["status"] == "running"
    assert health.output["polls"] >= 1


async def test_until_fails_the_step_once_the_maximum_wait_passed(fleet: Orchestrator) -> None:
    # "flappy" crashes right after each start: every later look finds it stopped
    jobs = Jobs(fleet.world, check_hosts=False)
    plan = await run_template(jobs, "gate", {"service": "flappy"}, hosts=["sim-00002"])
    done = await fleet.world.wait(plan.id, timeout=30)
    assert (done.state, done.result) == (PlanState.PAUSED, PlanResult.ERROR)
    health = (await template_steps(fleet, plan.id))["health"]
    assert health.state is StepState.ERROR
    assert "status is still 'stopped' after 1.5 s" in health.error["message"]


async def test_the_rolling_update_stops_at_its_failure_threshold(fleet: Orchestrator) -> None:
    # nginx's update changes every host; on sim-00003 the service crashes after restart,
    # so its health gate fails: with the template's max_failures (1) the rollout stops
    jobs = Jobs(fleet.world, check_hosts=False)
    plan = await run_template(
        jobs,
        "quick-rollout",
        {"package": "nginx", "service": "nginx"},
        filter="identity:/^sim-/",
        batch_size="2",
    )
    assert plan.action == FleetJob.name
    assert plan.label.startswith("quick-rollout template on hosts matching")
    done = await fleet.world.wait(plan.id, timeout=60)
    assert done.result is PlanResult.ERROR
    outcomes = {o.host: o.result for o in await host_results(fleet.world, plan.id)}
    assert outcomes["sim-00001"] is PlanResult.SUCCESS
    assert outcomes["sim-00002"] is PlanResult.SUCCESS
    assert outcomes["sim-00003"] is PlanResult.ERROR
    # batches of 2: hosts 5 and 6 never started, held for a Resume
    assert outcomes["sim-00005"] is PlanResult.PENDING
    assert outcomes["sim-00006"] is PlanResult.PENDING


async def test_run_template_refuses_what_it_can_check_before_planning(
    fleet: Orchestrator,
) -> None:
    jobs = Jobs(fleet.world, check_hosts=False)
    cases = [
        ("install-if-absnet", {"package": "x"}, "template", "did you mean install-if-absent"),
        ("install-if-absent", {}, "inputs.package", "is required"),
        ("install-if-absent", {"package": "x", "pkg": "y"}, "inputs.pkg", "not an input"),
        # the template's input has no pattern; the agent's package input has one
        ("install-if-absent", {"package": "no such"}, "inputs.package", "does not match"),
    ]
    for name, inputs, field, words in cases:
        with pytest.raises(JobInputError) as caught:
            await run_template(jobs, name, inputs, hosts=["sim-00001"])
        assert caught.value.field == field
        assert words in caught.value.message


async def test_the_template_fleet_defaults_apply_to_fleets_only(fleet: Orchestrator) -> None:
    jobs = Jobs(fleet.world, check_hosts=False)
    inputs = {"package": "curl", "service": "cron"}
    one = await run_template(jobs, "quick-rollout", inputs, hosts=["sim-00001"])
    assert one.action == "mcoflow.template"
    many = await run_template(
        jobs, "quick-rollout", inputs, hosts=["sim-00001", "sim-00002"], max_failures="50%"
    )
    assert many.action == FleetJob.name
    assert (many.args["batch_size"], many.args["max_failures"]) == ("10%", "50%")
    assert many.args["host_args"]["inputs"] == inputs
    for plan in (one, many):
        done = await fleet.world.wait(plan.id, timeout=30)
        assert done.result is PlanResult.SUCCESS, done.error


async def test_a_host_planned_after_its_template_changed_is_refused(
    fleet: Orchestrator,
) -> None:
    plan = await fleet.world.trigger(
        TemplateJob,
        hostname="sim-00001",
        template="install-if-absent",
        inputs={"package": "curl"},
        digest="0123456789abcdef",
    )
    done = await fleet.world.wait(plan.id, timeout=30)
    assert done.result is PlanResult.ERROR
    assert done.error is not None and "changed since this job was started" in done.error
