"""Acceptance (issue 4): the operator's jobs end to end with real processes.

One module-wide stack on the real RabbitMQ and PostgreSQL: a fresh database, a fresh
keys folder (`mcoflow keys init`, `mcoflow keys host simulated`), a collective and a
reply queue of its own (so nothing collides with other runs on the same broker),
three `mcoflow agent` processes serving simulated hosts (``host-NN`` for the
single-host scenarios, ``f-NNN`` for the 200-host fleet, ``sim-NNNNN`` for the
1,000-host crash test), an `mcoflow executor` (the crash tests SIGKILL it and start
another), and the CLI run as a subprocess for every command. The agents write how many
installs each simulated host executed to a stats file (``simulation.stats_file``); the
tests count on the hosts from there, and look at plans in the database.



Skipped where RabbitMQ or PostgreSQL is unreachable; a failure under CI (env CI set).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from sqlalchemy.exc import DBAPIError

from mcoflow.actions import FleetJob, host_results
from mcoflow.agent.providers.simulated import read_stats
from mcoflow.engine import PlanResult, PlanState, Step, StepState, World
from mcoflow.testing import LoggedProcess, assert_eventually
from tests.conftest import fresh_pg_database
from tests.rpc_fixtures import drop_reply_queues, require_amqp

pytestmark = [pytest.mark.postgresql, pytest.mark.rabbitmq]

MCOFLOW = Path(sys.executable).parent / "mcoflow"
IN_FLIGHT = frozenset(
    {PlanState.PENDING, PlanState.SCHEDULED, PlanState.PLANNING, PlanState.RUNNING}
)
PLAN_LINE = re.compile(r"^plan ([0-9a-f]{32}): ", re.MULTILINE)
FLEET_SIZE = 200
CRASH_FLEET_SIZE = 1000
T = TypeVar("T")


# ---- processes --------------------------------------------------------------------------


class SimAgent:
    """`mcoflow agent` serving ``count`` simulated hosts named by ``pattern``."""

    def __init__(self, stack: Stack, name: str, count: int, pattern: str, **simulation: Any):
        self.stack = stack
        self.name = name
        self.count = count
        self.pattern = pattern
        self.simulation = simulation
        self.stats_file = stack.workdir / f"{name}-stats.json"
        self.starts = 0
        self.process: LoggedProcess | None = None

    @property
    def identities(self) -> list[str]:
        return [self.pattern.format(n=n) for n in range(1, self.count + 1)]

    @property
    def fanout(self) -> str:
        return f"{self.stack.collective}-{self.name}-fanout"

    def start(self, **simulation: Any) -> None:
        """Start (again) with these simulation settings on top of the initial ones."""
        assert self.process is None or not self.process.alive()
        self.stats_file.unlink(missing_ok=True)
        keys = self.stack.keys_dir
        config = {
            "collective": self.stack.collective,
            "broker_url": self.stack.amqp_url,
            "simulate_hosts": self.count,
            "simulate_pattern": self.pattern,
            "key_file": str(keys / "host-keys" / "simulated.key"),
            "key_name": "simulated",
            "trusted_keys": str(keys / "callers"),
            "journal_file": str(self.stack.workdir / f"{self.name}-journal.sqlite"),
            "fanout_name": self.fanout,
            "simulation": {
                **self.simulation,
                **simulation,
                "stats_file": str(self.stats_file),
                "stats_interval": 0.2,
            },
        }
        path = self.stack.workdir / f"{self.name}.yaml"
        path.write_text(yaml.safe_dump(config))
        self.starts += 1
        self.process = LoggedProcess(
            [str(MCOFLOW), "agent", "--config", str(path)],
            log=self.stack.workdir / f"agent-{self.name}-{self.starts}.log",
            env=self.stack.env,
            cwd=self.stack.workdir,
        )

    def stop(self) -> None:
        if self.process is not None:
            code = self.process.stop()
            assert code == 0, f"agent {self.name} exited with {code}:\n{self.process.output()}"

    async def ready(self, timeout: float = 120.0) -> None:
        """The agent subscribed every identity (it logs "agent ready", then writes stats)."""
        process = self.process
        assert process is not None

        def check() -> None:
            assert process.alive(), f"agent {self.name} exited:\n{process.output()}"
            assert "agent ready" in process.output(tail=100_000), f"agent {self.name} starting"
            assert self.stats_file.exists()

        await assert_eventually(check, timeout=timeout, interval=0.1)

    def calls(self) -> dict[str, dict[str, int]]:
        """Calls per host of the running agent process, as its stats file says."""
        assert self.process is not None
        document = read_stats(self.stats_file)
        assert document["pid"] == self.process.pid, "stats of an earlier agent process"
        calls: dict[str, dict[str, int]] = document["calls"]
        return calls


class Stack:
    def __init__(self, workdir: Path, db_url: str, amqp_url: str) -> None:
        self.workdir = workdir
        self.db_url = db_url
        self.amqp_url = amqp_url
        run = uuid.uuid4().hex[:10]
        self.collective = f"acc{run}"
        self.reply_to = f"mcoflow-acceptance.replies.{run}"
        self.keys_dir = workdir / "keys"
        base = {k: v for k, v in os.environ.items() if not k.startswith("MCOFLOW_")}
        self.env = {
            **base,
            "COLUMNS": "200",  # rich's tables at a width where rows fit on one line
            "MCOFLOW_DATABASE_URL": db_url,
            "MCOFLOW_TRANSPORT_URL": amqp_url,
            "MCOFLOW_KEYS_DIR": str(self.keys_dir),
            "MCOFLOW_STATE_DIR": str(workdir / "state"),
            "MCOFLOW_COLLECTIVE": self.collective,
            "MCOFLOW_REPLY_TO": self.reply_to,
            "MCOFLOW_POLL_INTERVAL": "0.05",
            "MCOFLOW_HEARTBEAT_INTERVAL": "0.5",
            "MCOFLOW_DEAD_AFTER": "3",
            # agents come and go between tests with no discovery: send to any name
            # (one nobody serves then ends as "no response", test 3)
            "MCOFLOW_ALLOW_UNKNOWN_HOSTS": "true",
        }
        self.small = SimAgent(
            self,
            "small",
            10,
            "host-{n:02d}",
            packages={"curl": "7.88"},
            broken_packages=["broken"],
        )
        self.fleet = SimAgent(
            self,
            "fleet",
            FLEET_SIZE,
            "f-{n:03d}",
            delay=0.05,
            jitter=0.05,
            broken_packages=["broken"],
        )
        self.crash = SimAgent(self, "crash", CRASH_FLEET_SIZE, "sim-{n:05d}", delay=0.05)
        self.agents = [self.small, self.fleet, self.crash]
        self.executors: list[LoggedProcess] = []
        self.timed_out: str | None = None  # a plan paused by a timeout, to resume

    # -- executors

    def start_executor(self) -> LoggedProcess:
        number = len(self.executors) + 1
        process = LoggedProcess(
            [str(MCOFLOW), "executor"],
            log=self.workdir / f"executor-{number}.log",
            env=self.env,
            cwd=self.workdir,
        )
        self.executors.append(process)
        return process

    @property
    def executor(self) -> LoggedProcess:
        return self.executors[-1]

    def logs(self) -> str:
        parts = [f"--- executor {i + 1}\n{e.output()}" for i, e in enumerate(self.executors)]
        parts += [f"--- agent {a.name}\n{a.process.output()}" for a in self.agents if a.process]
        return "\n".join(parts)

    # -- the CLI

    async def cli(self, *args: str, timeout: float = 90.0) -> tuple[int, str]:
        """Run `mcoflow ARGS`; (exit code, stdout and stderr)."""
        proc = await asyncio.create_subprocess_exec(
            str(MCOFLOW),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self.env,
            cwd=self.workdir,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise AssertionError(f"mcoflow {' '.join(args)[:200]} ran over {timeout} s") from None
        assert proc.returncode is not None
        return proc.returncode, out.decode(errors="replace")

    async def show(self, plan_id: str) -> dict[str, Any]:
        code, out = await self.cli("plans", "show", plan_id, "--json")
        assert code == 0, out
        shown: dict[str, Any] = json.loads(out)
        return shown

    async def wait_shown(self, plan_id: str, *states: str, timeout: float = 60.0) -> dict[str, Any]:
        """`plans show` until the plan is in one of ``states``."""

        async def check() -> dict[str, Any]:
            shown = await self.show(plan_id)
            assert shown["state"] in states, f"plan {plan_id} is {shown['state']}"
            return shown

        return await assert_eventually(check, timeout=timeout, interval=0.2)

    async def world(self) -> World:
        return await World.open(self.db_url, upgrade=False)


def plan_id_of(output: str) -> str:
    match = PLAN_LINE.search(output)
    assert match, f"no plan id in the CLI output:\n{output}"
    return match[1]


def steps_of(shown: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in shown["steps"] if s["action"] == action]


def table_rows(output: str) -> dict[str, list[str]]:
    """Rows of the CLI's rich table, keyed by their first cell."""
    rows = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip().strip("│┃").split("│")]
        if len(cells) > 1 and cells[0]:
            rows[cells[0]] = cells[1:]
    return rows


# ---- the stack ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_url(pg_server: str) -> Iterator[str]:
    yield from fresh_pg_database(pg_server)


@pytest.fixture(scope="module")
def stack(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    amqp_url = require_amqp()
    stack = Stack(tmp_path_factory.mktemp("operator-jobs"), pg_url, amqp_url)
    for argv in (["keys", "init"], ["keys", "host", "simulated"]):
        subprocess.run(
            [str(MCOFLOW), *argv],
            env=stack.env,
            cwd=stack.workdir,
            check=True,
            capture_output=True,
            timeout=60,
        )
    try:
        for agent in stack.agents:  # all start at once: the biggest takes a while
            agent.start()
        stack.start_executor()
        yield stack
    finally:
        for process in [*stack.executors, *(a.process for a in stack.agents if a.process)]:
            process.stop()
        queues = [
            f"mcoflow.{stack.collective}.node.{name}"
            for agent in stack.agents
            for name in [*agent.identities, agent.fanout]
        ]
        queues.append(stack.reply_to)
        # a thread of its own: no event loop of the test run is touched
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, drop_reply_queues(amqp_url, queues)).result()


@pytest.fixture
async def stack_up(stack: Stack) -> Stack:
    """The stack with its executor running (a test that killed it restarted one) and
    registered: the CLI declines to follow a plan while no executor is."""
    assert stack.executor.alive(), f"the executor died:\n{stack.logs()}"
    world = await World.open(stack.db_url, upgrade=False)

    async def registered() -> None:
        try:
            executors = await world.executors()
        except DBAPIError as exc:  # the executor may still be creating the schema
            raise AssertionError(f"no schema yet: {exc}") from exc
        assert executors, "no executor registered yet"

    try:
        await assert_eventually(registered, timeout=60, interval=0.2)
    finally:
        await world.close()
    return stack


# ---- 1. InstallAndRestart: restart only when an install changed the host ------------------


async def test_install_and_restart_restarts_when_one_install_changed_the_host(
    stack_up: Stack,
) -> None:
    stack = stack_up
    await stack.small.ready()
    code, out = await stack.cli("install-and-restart", "host-01", "nginx,curl;nginx")
    assert code == 0, out
    shown = await stack.show(plan_id_of(out))
    assert (shown["state"], shown["result"]) == ("stopped", "success")
    changed = {
        s["input"]["package"]: s["output"]["changed"] for s in steps_of(shown, "mcoflow.install")
    }
    assert changed == {"nginx": True, "curl": False}  # curl was already there
    (restart,) = steps_of(shown, "mcoflow.restart")
    assert restart["output"]["restarted"] is True
    assert restart["output"]["status"] == "running"
    # the CLI's table: a row per step that ran, each a success
    rows = table_rows(out)
    for step in [*steps_of(shown, "mcoflow.install"), restart]:
        assert rows[str(step["idx"])][:2] == [step["action"], "success"], out
    await assert_eventually(
        lambda: stack.small.calls().get("host-01") == {"install": 1, "restart": 1}
    )


async def test_install_and_restart_fleet_restarts_only_where_needed(
    stack_up: Stack,
) -> None:
    """host-06 already has nginx (and curl): nothing changes there, its restart is "not
    needed"; host-07 gets nginx, so its restart runs. The CLI prints a per-host table."""
    stack = stack_up
    await stack.small.ready()
    code, out = await stack.cli("install", "host-06", "nginx")
    assert code == 0, out
    code, out = await stack.cli("install-and-restart", "host-06,host-07", "nginx,curl;nginx")
    assert code == 0, out
    rows = table_rows(out)
    assert rows["host-06"][:2] == ["stopped", "success"], out
    assert rows["host-07"][:2] == ["stopped", "success"], out
    world = await stack.world()
    try:
        children = {r.host: r.plan_id for r in await host_results(world, plan_id_of(out))}
    finally:
        await world.close()
    assert sorted(children) == ["host-06", "host-07"]
    not_needed = await stack.show(children["host-06"])
    (restart,) = steps_of(not_needed, "mcoflow.restart")
    assert restart["output"]["status"] == "not needed"
    assert restart["output"]["restarted"] is False
    assert {s["output"]["changed"] for s in steps_of(not_needed, "mcoflow.install")} == {False}
    needed = await stack.show(children["host-07"])
    (restart,) = steps_of(needed, "mcoflow.restart")
    assert (restart["output"]["restarted"], restart["output"]["status"]) == (True, "running")
    # on the hosts: host-06 only ran the first install, host-07 an install and a restart
    await assert_eventually(
        lambda: (
            (stack.small.calls()["host-06"], stack.small.calls()["host-07"])
            == ({"install": 1}, {"install": 1, "restart": 1})
        )
    )


# ---- 2. A failed install: pause, resume after the fix, skip ------------------------------


async def test_failed_install_pauses_skip_and_resume_after_the_fix(stack_up: Stack) -> None:
    stack = stack_up
    await stack.small.ready()
    code, out = await stack.cli("install-and-restart", "host-03", "broken,nginx;nginx")
    assert code != 0, out
    assert "paused" in out
    first = plan_id_of(out)
    shown = await stack.show(first)
    assert (shown["state"], shown["result"]) == ("paused", "error")
    (failed,) = [s for s in shown["steps"] if s["state"] == "error"]
    assert failed["input"]["package"] == "broken"
    assert "package broken is broken" in failed["error"]["message"]
    assert "status 1" in failed["error"]["message"]
    (restart,) = steps_of(shown, "mcoflow.restart")
    assert restart["state"] == "pending"  # waits for the failed install

    # another plan: skipping the failed install skips the restart that needs its output
    code, out = await stack.cli("install-and-restart", "host-04", "broken;nginx")
    assert code != 0, out
    second = plan_id_of(out)
    shown = await stack.show(second)
    (failed,) = [s for s in shown["steps"] if s["state"] == "error"]
    code, out = await stack.cli("plans", "skip", second, str(failed["idx"]))
    assert code == 0, out
    shown = await stack.wait_shown(second, "stopped")
    assert shown["result"] == "warning"
    (restart,) = steps_of(shown, "mcoflow.restart")
    assert restart["state"] == "skipped"
    # on the host: the failed attempt, and no restart
    await assert_eventually(lambda: stack.small.calls()["host-04"] == {"install": 1})

    # the repository is fixed: the agent comes back without the broken package
    stack.small.stop()
    stack.small.start(broken_packages=[])
    await stack.small.ready()
    code, out = await stack.cli("plans", "resume", first)
    assert code == 0, out
    shown = await stack.wait_shown(first, "stopped")
    assert shown["result"] == "success", json.dumps(shown, indent=1)
    changed = {
        s["input"]["package"]: s["output"]["changed"] for s in steps_of(shown, "mcoflow.install")
    }
    assert changed == {"broken": True, "nginx": True}
    (restart,) = steps_of(shown, "mcoflow.restart")
    assert restart["output"]["restarted"] is True
    # the new agent process ran the install again (a fresh request id), then the restart
    await assert_eventually(
        lambda: stack.small.calls().get("host-03") == {"install": 1, "restart": 1}
    )


# ---- 3. A silent host times out, the plan pauses -----------------------------------------


async def test_a_host_nobody_serves_times_out(stack_up: Stack) -> None:
    stack = stack_up
    started = time.monotonic()
    code, out = await stack.cli("install", "nobody-home", "nginx", "--timeout", "2")
    assert code != 0, out
    assert time.monotonic() - started >= 2
    shown = await stack.show(plan_id_of(out))
    assert (shown["state"], shown["result"]) == ("paused", "error")
    (step,) = shown["steps"]
    assert step["error"]["message"] == "no response from nobody-home within 2 s"
    assert "no response from nobody-home within 2 s" in out


async def test_a_stopped_agent_times_out(stack_up: Stack) -> None:
    stack = stack_up
    await stack.small.ready()
    stack.small.stop()
    code, out = await stack.cli("install", "host-05", "nginx", "--timeout", "2")
    assert code != 0, out
    plan_id = plan_id_of(out)
    shown = await stack.show(plan_id)
    assert (shown["state"], shown["result"]) == ("paused", "error")
    assert shown["steps"][0]["error"]["message"] == "no response from host-05 within 2 s"
    stack.timed_out = plan_id  # resumed by the next test


async def test_a_timed_out_plan_resumes_when_the_host_is_back(stack_up: Stack) -> None:
    stack = stack_up
    assert stack.timed_out is not None, "test_a_stopped_agent_times_out must run (and pass) first"
    plan_id = stack.timed_out
    # back, answering in 0.5 s: well within the 2 s the step allows
    stack.small.start(broken_packages=[], delay=0.5)
    await stack.small.ready()
    code, out = await stack.cli("plans", "resume", plan_id)
    assert code == 0, out
    shown = await stack.wait_shown(plan_id, "stopped", "paused")
    assert shown["result"] == "success", json.dumps(shown, indent=1)
    assert shown["steps"][0]["output"]["changed"] is True
    await assert_eventually(lambda: stack.small.calls().get("host-05") == {"install": 1})


# ---- 4. A fleet of 200: concurrency limit, failure threshold, rerun on failed hosts --------


async def _follow_in_flight(
    world: World, cli: asyncio.Task[tuple[int, str]], job_id: str
) -> list[int]:
    """Sample, from the database, how many of the job's host plans are in flight,
    until the CLI (which follows the job) exits."""
    samples = []
    while not cli.done():
        children = await world.store.child_plans(job_id)
        samples.append(sum(c.state in IN_FLIGHT for c in children))
        await asyncio.sleep(0.02)
    return samples


async def _job_id(world: World, label: str) -> str:
    async def newest() -> str:
        page = await world.list_plans(limit=5)
        ids = [p.id for p in page.items if p.action == FleetJob.name and p.label == label]
        assert ids, f"no job {label!r} yet"
        return ids[0]

    return await assert_eventually(newest, timeout=60, interval=0.05)


async def test_fleet_job_never_exceeds_its_concurrency_limit(stack_up: Stack) -> None:
    stack = stack_up
    await stack.fleet.ready()
    hosts = stack.fleet.identities
    limit = 10
    world = await stack.world()
    try:
        cli = asyncio.create_task(
            stack.cli(
                "install-and-restart",
                ",".join(hosts),
                "nginx;nginx",
                "--concurrency",
                str(limit),
                timeout=180,
            )
        )
        job_id = await _job_id(world, f"install-and-restart nginx;nginx on {len(hosts)} hosts")
        samples = await _follow_in_flight(world, cli, job_id)
        code, out = await cli
        assert code == 0, out
        assert max(samples) <= limit, f"{max(samples)} host plans in flight, limit {limit}"
        assert max(samples) == limit  # the limit was used, not just respected
        assert len(samples) > 20
        # also over the whole run, from the start and end times the database kept
        children = await world.store.child_plans(job_id)
        assert len(children) == len(hosts)
        assert {c.result for c in children} == {PlanResult.SUCCESS}
        assert _max_overlap(children) <= limit
    finally:
        await world.close()
    rows = table_rows(out)
    assert all(rows[h][:2] == ["stopped", "success"] for h in hosts), out
    await assert_eventually(
        lambda: (
            [stack.fleet.calls().get(h) for h in hosts]
            == [{"install": 1, "restart": 1}] * len(hosts)
        )
    )


def _max_overlap(children: Sequence[Any]) -> int:
    """The most host plans running at one instant (an end before a start at a tie)."""
    edges = sorted(
        [(c.started_at, 1) for c in children] + [(c.ended_at, -1) for c in children],
        key=lambda e: (e[0], e[1]),
    )
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


async def test_fleet_job_stops_after_max_failures_and_resume_finishes_the_rest(
    stack_up: Stack,
) -> None:
    stack = stack_up
    await stack.fleet.ready()
    hosts = stack.fleet.identities
    before = stack.fleet.calls()
    code, out = await stack.cli(
        "install",
        ",".join(hosts),
        "broken",
        "--concurrency",
        "5",
        "--max-failures",
        "3",
        timeout=120,
    )
    assert code != 0, out
    job_id = plan_id_of(out)
    world = await stack.world()
    try:
        job = await world.get_plan(job_id)
        assert (job.state, job.result) == (PlanState.PAUSED, PlanResult.ERROR)
        (fleet_step,) = [s for s in await world.steps(job_id) if s.action == FleetJob.name]
        assert fleet_step.error is not None
        assert fleet_step.error["message"].startswith("stopped after"), fleet_step.error
        rows = await host_results(world, job_id)
        held = [r for r in rows if r.result is PlanResult.PENDING]
        failed = [r for r in rows if r.result is not PlanResult.PENDING]
        # the threshold stops the rollout; the hosts already running finish (and fail)
        assert 3 <= len(failed) < 3 + 5, [(r.host, r.result) for r in failed]
        assert all(
            r.result is PlanResult.ERROR
            and r.state is PlanState.PAUSED
            and "package broken is broken" in r.message
            for r in failed
        ), [(r.host, r.state, r.result, r.message) for r in failed]
        assert len(failed) + len(held) == len(hosts)
        # the hosts of the plans never started were never asked
        started = {r.host for r in rows if r.duration is not None}
        assert started == {r.host for r in failed}

        def installs() -> set[str]:
            calls = stack.fleet.calls()
            return {
                h
                for h in hosts
                if calls.get(h, {}).get("install", 0) > before.get(h, {}).get("install", 0)
            }

        await assert_eventually(lambda: {r.host for r in failed} <= installs())
        assert installs() <= started

        # the repository is fixed; Resume retries the failed hosts and goes on with the rest
        stack.fleet.stop()
        stack.fleet.start(broken_packages=[])
        await stack.fleet.ready()
        await world.resume(job_id, by="acceptance")
        done = await world.wait(job_id, timeout=120)
        assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.SUCCESS), done.error
        rows = await host_results(world, job_id)
        assert {r.result for r in rows} == {PlanResult.SUCCESS}
        assert len(rows) == len(hosts)
    finally:
        await world.close()
    await assert_eventually(
        lambda: [stack.fleet.calls().get(h) for h in hosts] == [{"install": 1}] * len(hosts)
    )


# ---- 5. SIGKILL the executor in the middle of a fleet job ----------------------------------

ABNORMAL = "AbnormalTermination"


async def test_executor_killed_mid_fleet_job_every_host_installs_exactly_once(
    stack_up: Stack,
) -> None:
    """1,000 hosts; the executor is killed once a fifth of them are done, at whatever it
    was doing, and restarted. Every host runs exactly one install and one restart.

    If the kill caught the job's own step (the fleet step, not idempotent) while it ran,
    the job pauses with "abnormal termination" and is resumed here as an operator would;
    that the job should not need it is the next test's (a known bug)."""
    stack = stack_up
    await stack.crash.ready()
    hosts = stack.crash.identities
    code, out = await stack.cli(
        "install-and-restart", ",".join(hosts), "nginx;nginx", "--no-wait", timeout=60
    )
    assert code == 0, out
    job_id = plan_id_of(out)
    world = await stack.world()
    try:

        async def some_hosts_done() -> None:
            children = await world.store.child_plans(job_id)
            done = sum(c.state is PlanState.STOPPED for c in children)
            assert done >= len(hosts) // 5, f"{done} hosts done"

        await assert_eventually(some_hosts_done, timeout=120, interval=0.05)
        killed = stack.executor
        killed.kill()
        children = await world.store.child_plans(job_id)
        assert sum(c.state is PlanState.STOPPED for c in children) < len(hosts), "too late"

        stack.start_executor()
        done = await world.wait(job_id, timeout=150)
        if done.state is PlanState.PAUSED:
            errors = [(s.action, s.error) for s in await world.steps(job_id) if s.error]
            assert [(a, e["type"]) for a, e in errors] == [(FleetJob.name, ABNORMAL)], errors
            await world.resume(job_id, by="acceptance operator")
            done = await world.wait(job_id, timeout=150)
        assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.SUCCESS), done
        rows = await host_results(world, job_id)
        assert len(rows) == len(hosts)
        assert {r.result for r in rows} == {PlanResult.SUCCESS}
        assert all(e.pid != killed.pid for e in await world.executors())
    finally:
        await world.close()

    def exactly_once() -> None:
        calls = stack.crash.calls()
        wrong = {h: calls.get(h) for h in hosts if calls.get(h) != {"install": 1, "restart": 1}}
        assert not wrong, f"{len(wrong)} hosts did not run exactly one install and restart: " + str(
            dict(list(wrong.items())[:5])
        )

    await assert_eventually(exactly_once, timeout=10)


async def test_fleet_job_finishes_after_a_kill_while_its_own_step_runs(stack_up: Stack) -> None:
    """The worst moment: SIGKILL exactly while the fleet step itself is claimed (checked
    in the database after the kill; retried until a kill lands there)."""
    stack = stack_up
    await stack.fleet.ready()
    hosts = stack.fleet.identities
    code, out = await stack.cli(
        "install", ",".join(hosts), "crashpkg", "--concurrency", "20", "--no-wait", timeout=60
    )
    assert code == 0, out
    job_id = plan_id_of(out)
    world = await stack.world()
    try:
        # set-up problems raise RuntimeError: only the AssertionError below is the bug
        for _attempt in range(10):
            executor = stack.executor
            executor_id = await _registered(world, executor.pid)
            await _fleet_step_runs_on(world, job_id, executor_id)
            executor.kill()
            step = await _fleet_step(world, job_id)
            stack.start_executor()
            if step.state is StepState.RUNNING and step.claimed_by == executor_id:
                break  # killed while it ran
        else:
            raise RuntimeError("no kill landed while the fleet step ran")
        done = await world.wait(job_id, timeout=120)
        errors = [(s.action, s.error) for s in await world.steps(job_id) if s.error]
        assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.SUCCESS), errors
    finally:
        await world.close()


async def _set_up(waiting: Awaitable[T]) -> T:
    """A wait of the set-up: its timeout is a RuntimeError, not a failed assertion."""
    try:
        return await waiting
    except AssertionError as exc:
        raise RuntimeError(str(exc)) from None


async def _registered(world: World, pid: int) -> str:
    """The id of the executor with this pid once it registered (RuntimeError if never)."""

    async def registered() -> str:
        ids = [e.id for e in await world.executors() if e.pid == pid]
        assert ids, f"executor {pid} did not register"
        return ids[0]

    return await _set_up(assert_eventually(registered, timeout=60, interval=0.05))


async def _fleet_step(world: World, job_id: str) -> Step:
    (step,) = [s for s in await world.steps(job_id) if s.action == FleetJob.name]
    return step


async def _fleet_step_runs_on(world: World, job_id: str, executor_id: str) -> None:
    """Return as soon as the job's fleet step runs on that executor (RuntimeError if it
    finishes or does not start there within a minute)."""

    async def runs_there() -> None:
        step = await _fleet_step(world, job_id)
        message = f"the fleet step is {step.state}: no moment to kill"
        if step.state.finished:
            raise RuntimeError(message)  # propagates at once: no retry
        assert step.state is StepState.RUNNING and step.claimed_by == executor_id, message

    await _set_up(assert_eventually(runs_there, timeout=60, interval=0.001))
