"""`mcoflow schedules` as a real process on SQLite and PostgreSQL: add (bad input named
by its option, exit status 2, nothing stored), list, show, pause, resume, delete."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from mcoflow.engine import World

MCOFLOW = Path(sys.executable).parent / "mcoflow"


async def schedules(db_url: str, cwd: Path, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        str(MCOFLOW),
        "schedules",
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


async def test_schedules_through_the_command_line(db_url: str, tmp_path: Path) -> None:
    await (await World.open(db_url)).close()  # the schema, as an installation has it
    job = ["--job", "install", "--filter", "class:web", "--parameter", "nginx"]
    code, out = await schedules(
        db_url, tmp_path, "add", "nightly", "--cron", "30 2 * * *",
        "--timezone", "Europe/Paris", "--max-runs", "3", *job,
    )  # fmt: skip
    assert code == 0, out
    assert out.startswith("schedule nightly added: active, next run ")

    wrong = [
        (["--cron", "30 2 * *"], "--cron: '30 2 * *' has 4 fields"),
        (["--cron", "@daily", "--timezone", "Paris"], "--timezone: unknown time zone 'Paris'"),
        (["--cron", "@daily", "--end", "yesterday"], "--end: cannot read 'yesterday'"),
        (["--cron", "@daily", "--rpc", "service.status"], "--job: give one of --job, --rpc"),
    ]
    for options, words in wrong:
        code, out = await schedules(db_url, tmp_path, "add", "other", *options, *job)
        assert (code, out.startswith(f"error: {words}")) == (2, True), out
    code, out = await schedules(
        db_url, tmp_path, "add", "rpc", "--cron", "@hourly", "--rpc", "Service.status",
        "--filter", "class:web",
    )  # fmt: skip
    assert code == 2 and out.startswith("error: --rpc: "), out
    code, out = await schedules(
        db_url, tmp_path, "add", "rpc", "--cron", "@hourly", "--rpc", "service.status",
        "--data", "service=cron", "--hosts", "web1",
    )  # fmt: skip
    assert code == 2 and out.startswith("error: --hosts: unknown host web1"), out
    code, out = await schedules(db_url, tmp_path, "add", "nightly", "--cron", "@daily", *job)
    assert code == 2 and "error: NAME: a schedule named 'nightly' exists" in out, out

    code, out = await schedules(db_url, tmp_path, "list", "--json")
    assert code == 0, out
    [listed] = json.loads(out)
    assert (listed["name"], listed["cron"], listed["max_runs"]) == ("nightly", "30 2 * * *", 3)
    assert listed["description"] == "install nginx on filter class:web"
    code, out = await schedules(db_url, tmp_path, "list")
    assert code == 0 and "nightly" in out and "never" in out, out

    code, out = await schedules(db_url, tmp_path, "pause", "nightly")
    assert (code, out.strip()) == (0, "schedule nightly paused: paused, no next run")
    code, out = await schedules(db_url, tmp_path, "pause", "nightly")
    assert (code, out.strip()) == (1, "error: schedule 'nightly' is paused")
    code, out = await schedules(db_url, tmp_path, "resume", "nightly")
    assert code == 0 and "resumed: active, next run" in out, out
    code, out = await schedules(db_url, tmp_path, "show", "nightly")
    assert code == 0 and "cron: 30 2 * * * in Europe/Paris, at most 3 runs" in out, out

    code, out = await schedules(db_url, tmp_path, "delete", "nightly")
    assert (code, out.strip()) == (0, "schedule nightly deleted")
    code, out = await schedules(db_url, tmp_path, "show", "nightly")
    assert (code, out.strip()) == (1, "error: no schedule named 'nightly'")
