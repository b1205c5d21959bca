"""Acceptance (issue 18, recurring jobs) — SLOW, about three minutes of wall-clock time:
a recurring job with a one-minute period fires once per minute for three minutes with
two `mcoflow executor` processes on PostgreSQL racing for each occurrence.

Real processes only: two executors, an `mcoflow agent` serving two simulated hosts over
NATS, and the schedule added with `mcoflow schedules add` (``--max-runs 3``). Each
occurrence starts exactly one plan (an install on both hosts, which succeeds), fired by
one executor or the other within seconds of its minute; after the third the schedule
has ended, and `mcoflow schedules show --json` says so.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mcoflow.engine import PlanFilter, PlanResult, PlanState, World
from mcoflow.rpc.transports import transport_from_url
from mcoflow.testing import LoggedProcess, assert_eventually
from tests.acceptance.actions.test_operator_jobs_e2e import MCOFLOW, SimAgent
from tests.acceptance.test_crash_recovery import cli
from tests.conftest import fresh_pg_database
from tests.rpc_fixtures import require_nats

pytestmark = [pytest.mark.slow, pytest.mark.postgresql, pytest.mark.nats]

HOSTS = ["sim-00001", "sim-00002"]
RUNS = 3
# an occurrence is fired this soon after its minute (the schedulers sleep until it)
LATENESS = 5.0
FIRED = re.compile(r"schedule every-minute: occurrence (\S+) started plan ([0-9a-f]{32})")


@dataclass
class Stack:
    """What SimAgent reads of a stack (``amqp_url`` is the broker's URL, NATS here)."""

    workdir: Path
    db_url: str
    amqp_url: str
    collective: str
    keys_dir: Path
    env: dict[str, str]
    executors: list[LoggedProcess] = field(default_factory=list)

    def start_executor(self, name: str) -> LoggedProcess:
        process = LoggedProcess(
            [str(MCOFLOW), "executor"],
            log=self.workdir / f"executor-{name}.log",
            env=self.env,
            cwd=self.workdir,
        )
        self.executors.append(process)
        return process


@pytest.fixture
async def stack(pg_server: str, tmp_path: Path) -> AsyncIterator[Stack]:
    broker = require_nats()
    run = uuid.uuid4().hex[:10]
    databases = fresh_pg_database(pg_server)
    db_url = next(databases)
    collective = f"recurring{run}"
    base = {k: v for k, v in os.environ.items() if not k.startswith("MCOFLOW_")}
    env = {
        **base,
        "MCOFLOW_DATABASE_URL": db_url,
        "MCOFLOW_TRANSPORT_URL": broker,
        "MCOFLOW_KEYS_DIR": str(tmp_path / "keys"),
        "MCOFLOW_STATE_DIR": str(tmp_path / "state"),
        "MCOFLOW_COLLECTIVE": collective,
        "MCOFLOW_REPLY_TO": f"mcoflow-recurring.replies.{run}",
        "MCOFLOW_ALLOW_UNKNOWN_HOSTS": "true",  # no discovery needed before the schedule
    }
    stack = Stack(tmp_path, db_url, broker, collective, tmp_path / "keys", env)
    for argv in (["keys", "init"], ["keys", "host", "simulated"]):
        await cli(env, tmp_path, *argv)
    agent = SimAgent(stack, "hosts", len(HOSTS), "sim-{n:05d}")  # type: ignore[arg-type]
    try:
        agent.start()
        await agent.ready(timeout=60)
        yield stack
    finally:
        for process in [*stack.executors, agent.process]:
            if process is not None:
                process.stop()
        transport = transport_from_url(broker)
        await transport.connect()
        try:
            for identity in [*agent.identities, agent.fanout]:
                await transport.forget_host(identity=identity, collective=collective)
        finally:
            await transport.close()
        databases.close()


async def registered(world: World, processes: list[LoggedProcess]) -> None:
    async def all_up() -> None:
        for process in processes:
            assert process.alive(), f"an executor exited:\n{process.output()}"
        pids = {e.pid for e in await world.executors()}
        assert {p.pid for p in processes} <= pids, "not registered yet"

    await assert_eventually(all_up, timeout=60, interval=0.2)


async def test_a_one_minute_schedule_fires_once_per_minute_with_two_executors(
    stack: Stack,
) -> None:
    executors = [stack.start_executor("a"), stack.start_executor("b")]
    world = await World.open(stack.db_url)
    try:
        await registered(world, executors)
        added = await cli(
            stack.env, stack.workdir,
            "schedules", "add", "every-minute", "--cron", "* * * * *",
            "--job", "install", "--hosts", ",".join(HOSTS), "--parameter", "nginx",
            "--max-runs", str(RUNS), "--json",
        )  # fmt: skip
        created = json.loads(added)
        assert (created["state"], created["runs"]) == ("active", 0)
        first = created["next_at"]

        async def ended() -> dict[str, object]:
            for process in executors:
                assert process.alive(), f"an executor exited:\n{process.output()}"
            shown = json.loads(
                await cli(stack.env, stack.workdir, "schedules", "show", "every-minute", "--json")
            )
            assert shown["runs"] < RUNS or shown["state"] == "ended", shown
            assert shown["state"] == "ended", f"{shown['runs']} runs so far"
            return dict(shown)

        shown = await assert_eventually(ended, timeout=60 * RUNS + 60, interval=5)

        # one run a minute, each fired within seconds of its minute, none skipped
        runs = sorted(shown["latest_runs"], key=lambda r: r["occurrence_at"])  # type: ignore[arg-type, index]
        assert [r["occurrence_at"] for r in runs] == [first + 60 * n for n in range(RUNS)]
        assert all(0 <= r["at"] - r["occurrence_at"] < LATENESS for r in runs), runs
        assert all(r["skipped"] == 0 and r["error"] is None for r in runs), runs
        assert (shown["runs"], shown["skipped"], shown["next_at"]) == (RUNS, 0, None)

        # exactly one plan per occurrence, and each installed on both hosts
        page = await world.list_plans(PlanFilter(), offset=0, limit=100)
        scheduled = [p for p in page.items if "(schedule every-minute)" in p.label]
        assert sorted(p.id for p in scheduled) == sorted(r["plan_id"] for r in runs)
        for plan in scheduled:
            done = await world.wait(plan.id, timeout=60)
            assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.SUCCESS), done

        # each occurrence was fired by exactly one of the two executors
        fired = [m.groups() for p in executors for m in FIRED.finditer(p.output(10**7))]
        assert sorted(plan for _, plan in fired) == sorted(r["plan_id"] for r in runs)
        by = {p.pid: len(FIRED.findall(p.output(10**7))) for p in executors}
        print(f"\noccurrences fired by executor pid: {by}")
    finally:
        await world.close()
