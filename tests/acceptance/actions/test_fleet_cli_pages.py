"""`mcoflow plans show FLEET` on a fleet bigger than a screen (a real subprocess, SQLite
and PostgreSQL): the counts of every host, at most `--hosts N` rows with the failed ones
first, a line saying how many more and how to see them; `--json` lists every host."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mcoflow.actions import Jobs
from mcoflow.engine import PlanState
from mcoflow.orchestrator import Orchestrator
from tests.embedded import embedded_orchestrator
from tests.embedded import plans_cli as cli

MCOFLOW = Path(sys.executable).parent / "mcoflow"
HOSTS = [f"sim-{n:05d}" for n in range(1, 61)]
BROKEN_ON = ["sim-00033", "sim-00047"]


@pytest.fixture
async def fleet(db_url: str, tmp_path: Path) -> AsyncIterator[Orchestrator]:
    async with embedded_orchestrator(
        db_url,
        tmp_path,
        hosts=len(HOSTS),
        simulation={"broken_packages": [f"broken@{h}" for h in BROKEN_ON]},
    ) as o:
        yield o


async def test_show_lists_at_most_n_hosts_failed_first(
    fleet: Orchestrator, db_url: str, tmp_path: Path
) -> None:
    world = fleet.world
    jobs = Jobs(world, check_hosts=False)
    triggered = await jobs.trigger("install", hosts=",".join(HOSTS), parameter="nginx,broken")
    plan = await world.wait(triggered.id, timeout=60)
    assert plan.state is PlanState.PAUSED

    code, text = await cli(db_url, tmp_path, "show", plan.id, "--hosts", "5")
    assert code == 0, text
    assert "60 hosts: 58 succeeded, 2 failed (2 waiting for the operator)" in text
    # the host table's rows (host names also show in the fleet step's input)
    assert re.findall(r"│ (sim-\d{5}) +│", text) == [*BROKEN_ON, *HOSTS[:3]], text
    assert f"55 more hosts not shown (failed ones first): `mcoflow plans show {plan.id}" in text
    assert "--hosts 60`" in text and "`--json` for all of them" in text

    code, everything = await cli(db_url, tmp_path, "show", plan.id, "--json")
    assert code == 0, everything
    doc = json.loads(everything)
    assert [h["host"] for h in doc["hosts"]] == HOSTS
    assert (doc["host_counts"]["total"], doc["host_counts"]["error"]) == (60, 2)
    failed = [h for h in doc["hosts"] if h["status"] == "error"]
    assert [h["host"] for h in failed] == BROKEN_ON
    assert all("broken" in h["message"] for h in failed)
    assert any(s["action"] == "mcoflow.fleet" for s in doc["steps"])

    code, text = await cli(db_url, tmp_path, "show", plan.id, "--hosts", "0")
    assert code == 0, text
    assert "60 hosts: 58 succeeded" in text and not re.findall(r"│ (sim-\d{5}) +│", text)
    assert "60 more hosts not shown" in text
