"""The seed's four jobs as shipped templates plan the same flows as the Python actions
(the same agent actions with the same inputs, in the same sequences and concurrences)
and behave the same when they run: a restart only where an install changed the host.
On the embedded orchestrator with simulated hosts behind the real agent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mcoflow.actions import Jobs, RemoteAction, host_action
from mcoflow.engine import Plan, PlanResult
from mcoflow.engine.action import registered_action
from mcoflow.engine.flow import FlowJSON
from mcoflow.job_request import JobKind
from mcoflow.orchestrator import Orchestrator
from mcoflow.templates import TemplateJob, TemplateStep, run_template
from tests.embedded import embedded_orchestrator


@pytest.fixture
async def fleet(db_url: str, tmp_path: Path) -> AsyncIterator[Orchestrator]:
    async with embedded_orchestrator(
        db_url, tmp_path, hosts=3, simulation={"packages": {"curl": "7.88"}}
    ) as o:
        yield o


async def shape(orchestrator: Orchestrator, plan: Plan) -> Any:
    """The plan's flow with each step replaced by the agent action it calls and its
    data: what the host sees, whichever action class sends it."""
    steps = {s.idx: s for s in await orchestrator.world.steps(plan.id)}

    def call(idx: int) -> tuple[str, str, tuple[tuple[str, Any], ...]]:
        step = steps[idx]
        cls = registered_action(step.action)
        assert issubclass(cls, RemoteAction)
        action = cls(idx, step.input)
        if isinstance(action, TemplateStep):
            agent, rpc = step.input["agent"], step.input["action"]
            data = step.input["data"]
        else:
            agent, rpc = cls.agent, cls.rpc_action
            data = {k: v for k, v in step.input.items() if k in ("package", "service")}
        return agent, rpc, tuple(sorted(data.items()))

    def walk(flow: FlowJSON | None) -> Any:
        if isinstance(flow, int):
            return call(flow)
        assert isinstance(flow, list)
        kind, *parts = flow
        return (kind, *[walk(p) for p in parts])  # type: ignore[arg-type]

    return walk(plan.flow)


CASES = [
    (JobKind.INSTALL, "install", ["nginx"], [], {"packages": ["nginx"]}),
    (JobKind.INSTALL, "install", ["nginx", "curl"], [], {"packages": "nginx,curl"}),
    (JobKind.UNINSTALL, "uninstall", ["curl", "vim"], [], {"packages": ["curl", "vim"]}),
    (JobKind.RESTART, "restart", [], ["cron"], {"services": ["cron"]}),
    (JobKind.RESTART, "restart", [], ["cron", "ssh"], {"services": ["cron", "ssh"]}),
    (
        JobKind.INSTALL_AND_RESTART,
        "install-and-restart",
        ["nginx", "curl"],
        ["nginx", "cron"],
        {"packages": ["nginx", "curl"], "services": ["nginx", "cron"]},
    ),
    (
        JobKind.INSTALL_AND_RESTART,
        "install-and-restart",
        ["nginx"],
        [],
        {"packages": ["nginx"]},
    ),
]


@pytest.mark.parametrize(("kind", "template", "packages", "services", "inputs"), CASES)
async def test_a_shipped_template_plans_the_python_actions_flow(
    fleet: Orchestrator,
    kind: JobKind,
    template: str,
    packages: list[str],
    services: list[str],
    inputs: dict[str, Any],
) -> None:
    action, args = host_action(kind, "sim-00001", packages, services, None)
    python = await fleet.world.trigger(action, **args)
    templated = await run_template(
        Jobs(fleet.world, check_hosts=False), template, inputs, hosts=["sim-00001"]
    )
    assert templated.action == TemplateJob.name
    assert await shape(fleet, templated) == await shape(fleet, python)
    for plan in (python, templated):
        done = await fleet.world.wait(plan.id, timeout=30)
        assert done.result is PlanResult.SUCCESS, done.error


async def restarts(orchestrator: Orchestrator, plan_id: str) -> list[tuple[str, bool]]:
    """(service, whether the host was asked to restart it) of a plan's restart steps."""
    found = []
    for step in await orchestrator.world.steps(plan_id):
        is_template_restart = step.action.startswith(TemplateStep.name) and (
            step.input.get("action") == "restart"
        )
        if step.action == "mcoflow.restart" or is_template_restart:
            service = step.input.get("service") or step.input["data"]["service"]
            assert step.output is not None
            if is_template_restart:
                asked = step.output.get("ran") is not False
            else:
                asked = bool(step.output["restarted"])
            found.append((service, asked))
    return sorted(found)


@pytest.mark.parametrize(
    ("packages", "restarted"),
    [(["curl"], False), (["nginx", "curl"], True)],
    ids=["nothing-changed", "one-install-changed"],
)
async def test_install_and_restart_restarts_only_if_an_install_changed_the_host(
    fleet: Orchestrator, packages: list[str], restarted: bool
) -> None:
    # curl is installed on every simulated host already; nginx is not
    python = await fleet.world.trigger(
        registered_action("mcoflow.install_and_restart"),
        hostname="sim-00002",
        packages=packages,
        services=["nginx"],
    )
    templated = await run_template(
        Jobs(fleet.world, check_hosts=False),
        "install-and-restart",
        {"packages": packages, "services": ["nginx"]},
        hosts=["sim-00003"],
    )
    for plan in (python, templated):
        done = await fleet.world.wait(plan.id, timeout=30)
        assert done.result is PlanResult.SUCCESS, done.error
        assert await restarts(fleet, plan.id) == [("nginx", restarted)]
