"""`mcoflow plans show FLEET` on a fleet bigger than a screen (a real subprocess, SQLite
and PostgreSQL): the counts of every host, at most `--hosts N` rows with the failed ones
first, a line saying how many more and how to see them; `--json` lists every host."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mcoflow.actions import Jobs
from mcoflow.config import Settings
from mcoflow.engine import PlanState
from mcoflow.server import Orchestrator, build_orchestrator

MCOFLOW = Path(sys.executable).parent / "mcoflow"
HOSTS = [f"sim-{n:05d}" for n in range(1, 61)]
BROKEN_ON = ["sim-00033", "sim-00047"]


@pytest.fixture
async def fleet(db_url: str, tmp_path: Path) -> AsyncIterator[Orchestrator]:
    settings = Settings(
        database_url=db_url,
        transport_url=f"memory://{uuid.uuid4().hex}",
        keys_dir=tmp_path / "keys",
        state_dir=tmp_path,
        poll_interval=0.05,
        heartbeat_interval=0.5,
    )
    orchestrator = await build_orchestrator(
        settings,
        simulate_hosts=len(HOSTS),
        simulation={"broken_packages": [f"broken@{h}" for h in BROKEN_ON]},
    )
    await orchestrator.start()
    try:
        yield orchestrator
    finally:
        await orchestrator.stop()


async def cli(db_url: str, cwd: Path, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        str(MCOFLOW),
        "plans",
        *args,
        "--db",
        db_url,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "HOME": str(cwd)},
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


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
