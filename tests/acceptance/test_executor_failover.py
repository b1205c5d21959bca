"""Acceptance (issue 20 item 4): failover in seconds, without false alarms, on the real
PostgreSQL with two real `mcoflow executor` processes.

A victim executor claims a plan's steps (they sleep while it holds them), a survivor
starts and settles; then the victim is
- killed with SIGKILL: the survivor claims its steps within 5 s, found by the victim's
  liveness lock going free. The killed process is not reaped until then: a zombie's pid
  still looks alive, so the same-machine pid check cannot be what found it (as on
  separate machines);
- stopped with SIGSTOP for 25 s: it keeps its connections and its lock, nobody takes its
  steps, and after SIGCONT it carries on and they finish. Both run with a heartbeat
  timeout of 60 s, so that only the lock path is under test.

The executors import this module for its actions (``--import``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mcoflow.engine import Action, Event, PlanResult, PlanState, StepState, World
from mcoflow.engine.liveness import SETTLE
from mcoflow.testing import LoggedProcess, assert_eventually
from tests.acceptance.test_executor_crash import executor_env, log_problems

pytestmark = pytest.mark.postgresql

MCOFLOW = Path(sys.executable).with_name("mcoflow")
ACTIONS_MODULE = "tests.acceptance.test_executor_failover"
HOLD_ENV = "FAILOVER_TEST_HOLD"
STEPS = 4
TAKEOVER_LIMIT = 5.0
STALL = 25.0
RELEASED_BY_LOCK = "their database sessions ended"


class Hold(Action):
    """Sleeps ``$FAILOVER_TEST_HOLD`` seconds: each executor holds steps as long as told."""

    name = "failover_test.hold"
    idempotent = True  # released steps run again on the survivor

    async def run(self, event: Event | None = None) -> None:
        await asyncio.sleep(float(os.environ.get(HOLD_ENV, "0.05")))


class Several(Action):
    name = "failover_test.several"

    def plan(self, n: int) -> None:
        for _ in range(n):
            self.plan_action(Hold)


@dataclass
class Pair:
    world: World
    victim: LoggedProcess
    survivor: LoggedProcess
    victim_id: str
    survivor_id: str
    plan_id: str


def spawn(url: str, name: str, hold: float, workdir: Path) -> LoggedProcess:
    env = executor_env(workdir / "runs.jsonl") | {HOLD_ENV: str(hold)}
    argv = [
        str(MCOFLOW), "executor", "--db", url, "--import", ACTIONS_MODULE,
        "--poll-interval", "0.05", "--heartbeat-interval", "0.5", "--dead-after", "60",
    ]  # fmt: skip
    return LoggedProcess(argv, log=workdir / f"{name}.log", env=env, cwd=workdir)


async def executor_of(world: World, process: LoggedProcess) -> str:
    async def registered() -> str:
        assert process.alive(), process.output()
        found = [e.id for e in await world.executors() if e.pid == process.pid]
        assert found, "not registered yet"
        return found[0]

    return await assert_eventually(registered, timeout=60, interval=0.05)


async def claimed_by(world: World, plan_id: str) -> dict[int, str | None]:
    return {s.idx: s.claimed_by for s in await world.steps(plan_id) if s.action == Hold.name}


@pytest.fixture
async def world(pg_url: str) -> AsyncIterator[World]:
    world = await World.open(pg_url)  # the schema, before any executor starts
    try:
        yield world
    finally:
        await world.close()


@contextlib.asynccontextmanager
async def victim_holding_steps(
    world: World, url: str, workdir: Path, victim_hold: float
) -> AsyncIterator[Pair]:
    """The victim holds every step of a plan; the survivor is up and has settled."""
    plan = await world.trigger(Several, n=STEPS)
    victim = spawn(url, "victim", victim_hold, workdir)
    survivor: LoggedProcess | None = None
    try:
        victim_id = await executor_of(world, victim)

        async def all_held() -> None:
            assert set((await claimed_by(world, plan.id)).values()) == {victim_id}

        await assert_eventually(all_held, timeout=30, interval=0.05)
        survivor = spawn(url, "survivor", 0.05, workdir)
        survivor_id = await executor_of(world, survivor)
        await asyncio.sleep(SETTLE + 0.5)  # it judges no one before
        assert set((await claimed_by(world, plan.id)).values()) == {victim_id}
        yield Pair(world, victim, survivor, victim_id, survivor_id, plan.id)
    finally:
        for process in (victim, survivor):
            if process is not None:
                if process.alive():
                    os.kill(process.pid, signal.SIGCONT)
                process.stop()


async def finished(pair: Pair) -> None:
    done = await pair.world.wait(pair.plan_id, timeout=60)
    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.SUCCESS), done


def assert_clean_log(process: LoggedProcess) -> None:
    unexpected, _ = log_problems(process.output(tail=10**7))
    assert not unexpected, "\n".join(unexpected[:3])


async def test_a_killed_executor_is_taken_over_within_five_seconds(
    world: World, pg_url: str, tmp_path: Path
) -> None:
    async with victim_holding_steps(world, pg_url, tmp_path, victim_hold=600) as pair:
        held = await claimed_by(world, pair.plan_id)
        killed = time.monotonic()
        os.kill(pair.victim.pid, signal.SIGKILL)  # not reaped yet: see the docstring

        async def taken_over() -> None:
            steps = {s.idx: s for s in await world.steps(pair.plan_id)}
            for idx in held:
                step = steps[idx]
                assert step.claimed_by == pair.survivor_id or (
                    step.state is StepState.SUCCESS and step.attempts == 2
                ), (idx, step.state, step.claimed_by)

        await assert_eventually(taken_over, timeout=30, interval=0.02)
        took = time.monotonic() - killed
        print(f"\nSIGKILL -> the survivor claimed the {STEPS} steps after {took:.2f} s")
        assert took <= TAKEOVER_LIMIT, pair.survivor.output()
        assert RELEASED_BY_LOCK in pair.survivor.output(), pair.survivor.output()
        assert pair.victim.proc.wait(timeout=10) == -signal.SIGKILL
        await finished(pair)
        assert [e.id for e in await world.executors()] == [pair.survivor_id]
        history = [h.what for h in await world.history(pair.plan_id)]
        assert "abnormal termination" not in history  # idempotent steps run again
        assert pair.survivor.stop() == 0
        assert_clean_log(pair.survivor)


async def test_an_executor_stalled_for_25_s_is_not_declared_dead(
    world: World, pg_url: str, tmp_path: Path
) -> None:
    # its steps outlast the survivor's settling, then end while it is stopped
    async with victim_holding_steps(world, pg_url, tmp_path, SETTLE + 4) as pair:
        os.kill(pair.victim.pid, signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            while time.monotonic() - stopped < STALL:
                assert set((await claimed_by(world, pair.plan_id)).values()) == {pair.victim_id}
                ids = {e.id for e in await world.executors()}
                assert ids == {pair.victim_id, pair.survivor_id}
                await asyncio.sleep(0.5)
        finally:
            os.kill(pair.victim.pid, signal.SIGCONT)
        print(f"\nSIGSTOP: left alone for {time.monotonic() - stopped:.1f} s")
        await finished(pair)
        steps = [s for s in await world.steps(pair.plan_id) if s.action == Hold.name]
        assert all(s.attempts == 1 for s in steps), [(s.idx, s.attempts) for s in steps]
        assert "abnormal termination" not in [h.what for h in await world.history(pair.plan_id)]
        assert RELEASED_BY_LOCK not in pair.survivor.output()
        assert pair.victim.alive(), pair.victim.output()
        assert pair.victim.stop() == 0, pair.victim.output()
        assert pair.survivor.stop() == 0
        for process in (pair.victim, pair.survivor):
            assert "declared dead" not in process.output(tail=10**7)
            assert_clean_log(process)
