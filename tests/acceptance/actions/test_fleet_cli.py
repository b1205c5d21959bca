"""A fleet job as one job through the real `mcoflow` CLI (a subprocess per command) on
SQLite and PostgreSQL: `plans show` lists its hosts, `plans list` hides them unless
`--all`, `plans rerun-failed`, `plans skip-failed`, `plans resume` and `plans cancel`
reach the hosts. The fleet runs in this process (executor, in-process broker,
simulated hosts); the CLI works on the same database."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mcoflow.actions import Jobs
from mcoflow.engine import PlanResult, PlanState
from mcoflow.orchestrator import Orchestrator
from tests.embedded import embedded_orchestrator
from tests.embedded import plans_cli as cli

MCOFLOW = Path(sys.executable).parent / "mcoflow"
HOSTS = [f"sim-{n:05d}" for n in range(1, 5)]


@pytest.fixture
async def fleet(db_url: str, tmp_path: Path) -> AsyncIterator[Orchestrator]:
    async with embedded_orchestrator(
        db_url, tmp_path, hosts=len(HOSTS), simulation={"broken_packages": ["broken"]}
    ) as o:
        yield o


async def show(db_url: str, cwd: Path, plan_id: str) -> dict[str, Any]:
    code, out = await cli(db_url, cwd, "show", plan_id, "--json")
    assert code == 0, out
    shown: dict[str, Any] = json.loads(out)
    return shown


async def test_fleet_through_the_cli(fleet: Orchestrator, db_url: str, tmp_path: Path) -> None:
    world = fleet.world
    jobs = Jobs(world, check_hosts=False)
    triggered = await jobs.trigger(
        "install", hosts=",".join(HOSTS), parameter="broken", concurrency=1, max_failures="2"
    )
    plan = await world.wait(triggered.id, timeout=30)
    assert plan.state is PlanState.PAUSED

    # show: its hosts, in JSON and as a table, with the counts by host
    shown = await show(db_url, tmp_path, plan.id)
    assert sorted(h["host"] for h in shown["hosts"]) == HOSTS
    assert {h["status"] for h in shown["hosts"]} == {"error", "planned"}
    counts = shown["host_counts"]
    assert (counts["error"], counts["paused"], counts["planned"]) == (2, 2, 2)
    assert counts["summary"] == (
        "4 hosts: 0 succeeded, 2 failed (2 waiting for the operator), 0 cancelled, 2 not started"
    )
    failed = [h for h in shown["hosts"] if h["status"] == "error"]
    assert all("broken" in h["message"] for h in failed)
    code, text = await cli(db_url, tmp_path, "show", plan.id)
    assert code == 0, text
    assert "4 hosts: 0 succeeded" in text and all(host in text for host in HOSTS)

    # list: the hosts' sub-plans only with --all
    code, listed = await cli(db_url, tmp_path, "list", "--limit", "100")
    assert code == 0, listed
    assert plan.id in listed and not any(h["plan_id"] in listed for h in shown["hosts"])
    code, everything = await cli(db_url, tmp_path, "list", "--all", "--limit", "100")
    assert code == 0, everything
    assert all(h["plan_id"] in everything for h in shown["hosts"])

    # skip-failed on one failed host: the fleet still waits for the other
    code, out = await cli(db_url, tmp_path, "skip-failed", failed[0]["plan_id"])
    assert code == 0, out
    assert (await world.get_plan(plan.id)).state is PlanState.PAUSED

    # resume: the other failed host runs again (fixed now) with the fleet, and the
    # rollout goes on with the hosts that max-failures held
    sim = fleet.agents[-1].fleet
    sim.settings = sim.settings.model_copy(update={"broken_packages": ()})
    code, out = await cli(db_url, tmp_path, "resume", plan.id)
    assert code == 0, out
    again = await world.wait(plan.id, timeout=30)
    assert again.state is PlanState.STOPPED
    shown = await show(db_url, tmp_path, plan.id)
    assert shown["host_counts"]["summary"] == (
        "4 hosts: 4 succeeded (1 with warnings), 0 failed, 0 cancelled"
    )
    code, out = await cli(db_url, tmp_path, "rerun-failed", plan.id)
    assert code == 1 and "has no failed hosts" in out

    # a fleet that stops at max-failures again, cancelled: its hosts never run are
    # cancelled, and rerun-failed starts a new fleet on the failed and cancelled ones
    sim.settings = sim.settings.model_copy(update={"broken_packages": ("missing",)})
    second = await jobs.trigger(
        "install", hosts=",".join(HOSTS), parameter="missing", concurrency=1, max_failures="2"
    )
    plan = await world.wait(second.id, timeout=30)
    assert plan.state is PlanState.PAUSED
    # cancel: the paused fleet stops, and no host of it is left waiting
    code, out = await cli(db_url, tmp_path, "cancel", plan.id)
    assert code == 0, out
    stopped = await world.get_plan(plan.id)
    assert (stopped.state, stopped.result) == (PlanState.STOPPED, PlanResult.CANCELLED)
    kids = await world.store.child_plans(plan.id)
    assert not [c for c in kids if c.state is not PlanState.STOPPED]
    assert {c.result for c in kids} == {PlanResult.CANCELLED}

    sim.settings = sim.settings.model_copy(update={"broken_packages": ()})
    code, out = await cli(db_url, tmp_path, "rerun-failed", plan.id, "--no-wait")
    assert code == 0, out
    match = re.search(r"^plan ([0-9a-f]{32}): ", out, re.MULTILINE)
    assert match, out
    rerun = await world.wait(match[1], timeout=30)
    assert rerun.result is PlanResult.SUCCESS
    assert sorted(c.label for c in await world.store.child_plans(rerun.id)) == HOSTS
