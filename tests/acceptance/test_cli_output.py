"""The command line as an operator meets it, as real processes on a SQLite file: plan
ids taken by a unique prefix, tables that never cut an id, and help that reads at 80
columns with nothing cut short."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mcoflow.actions import Install
from mcoflow.engine import World
from mcoflow.engine.planner import Planner

MCOFLOW = str(Path(sys.executable).parent / "mcoflow")
IDS = [
    "9fbc038e77610000000000000000aaaa",
    "9fbc038e77620000000000000000bbbb",
    "51a3c0de000000000000000000000001",
]


def mcoflow(*args: str, cwd: Path, columns: int = 80) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCOFLOW_")}
    env["COLUMNS"] = str(columns)
    return subprocess.run(
        [MCOFLOW, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def database(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"

    async def create() -> None:
        world = await World.open(url)
        try:
            planned = [
                dataclasses.replace(
                    Planner().plan(Install, {"hostname": "web-1", "package": f"pkg{n}"}), id=i
                )
                for n, i in enumerate(IDS)
            ]
            await world.store.insert_plans(planned, start=False, by="test")
        finally:
            await world.close()

    asyncio.run(create())
    return url


def test_plans_show_and_cancel_take_a_unique_prefix(database: str, tmp_path: Path) -> None:
    shown = mcoflow("plans", "show", "--db", database, "51a3c0", cwd=tmp_path)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert IDS[2] in shown.stdout and "Install pkg2 on web-1" in shown.stdout

    cancelled = mcoflow("plans", "cancel", "--db", database, "9fbc038e7762", cwd=tmp_path)
    assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
    assert f"plan {IDS[1]}: stopped, result cancelled" in cancelled.stdout


def test_an_ambiguous_or_unknown_prefix_is_a_clear_error(database: str, tmp_path: Path) -> None:
    ambiguous = mcoflow("plans", "show", "--db", database, "9fbc038e776", cwd=tmp_path)
    assert ambiguous.returncode == 1
    assert "ambiguous" in ambiguous.stdout
    assert IDS[0] in ambiguous.stdout and IDS[1] in ambiguous.stdout

    unknown = mcoflow("plans", "resume", "--db", database, "0123abcd", cwd=tmp_path)
    assert unknown.returncode == 1
    assert "error: no plan 0123abcd" in unknown.stdout

    short = mcoflow("plans", "skip", "--db", database, "9fb", "1", cwd=tmp_path)
    assert short.returncode == 1
    assert "too short; give at least 4 characters" in short.stdout


def test_plans_list_shows_whole_ids_at_80_columns(database: str, tmp_path: Path) -> None:
    listed = mcoflow("plans", "list", "--db", database, cwd=tmp_path)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    for plan_id in IDS:
        assert plan_id in listed.stdout
    assert max(len(line) for line in listed.stdout.splitlines()) <= 80


# every group (their lists are where click cuts a summary that does not fit) and the
# commands with the longest options
COMMANDS = [
    [], ["plans"], ["db"], ["web"], ["keys"], ["install"], ["install-and-restart"], ["serve"],
    ["plans", "show"], ["templates"], ["run"],
]  # fmt: skip


def test_every_help_fits_80_columns_and_cuts_nothing(tmp_path: Path) -> None:
    for command in COMMANDS:
        shown = mcoflow(*command, "--help", cwd=tmp_path)
        assert shown.returncode == 0, (command, shown.stderr)
        for line in shown.stdout.splitlines():
            assert len(line) <= 80, (command, line)
            # click cuts a command's summary that does not fit with "..."
            assert not (line.endswith("...") and not line.startswith("Usage:")), (command, line)
