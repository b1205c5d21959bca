"""Acceptance (issue 16): a crash of any process loses nothing.

A fleet install on 200 simulated hosts; a process is killed (SIGKILL) at a seeded random
moment while hosts are running the install, and started again. Every host's plan ends in
success long before the step timeout (120 s; the fleet must finish within 30 s of the
restart), and each host ran the install exactly once: one completed execution per host,
counted from the agents' journal file on disk (see tests/acceptance/fleet_crash.py).

- the embedded default: `mcoflow serve --simulate-hosts 200` (SQLite, in-process broker,
  in-process agents), killed and started again: the requests in flight died with it;
- separate processes (`mcoflow executor`, `mcoflow agent`) on PostgreSQL with RabbitMQ
  and with NATS: the executor killed mid-job, then the agent killed mid-command (its
  installs, idempotent in effect, run again once after its restart).
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mcoflow.engine import World
from mcoflow.rpc.transports import transport_from_url
from mcoflow.testing import LoggedProcess, assert_eventually
from tests.acceptance.actions.test_operator_jobs_e2e import MCOFLOW, SimAgent, plan_id_of
from tests.acceptance.fleet_crash import (
    assert_installed_once,
    host_plans,
    running,
    seeded_rng,
    wait_fleet_success,
    wait_until_in_flight,
)
from tests.acceptance.web.serve_process import mcoflow_serve, serve_env
from tests.conftest import fresh_pg_database
from tests.rpc_fixtures import drop_reply_queues, require_amqp, require_nats

HOSTS = [f"sim-{n:05d}" for n in range(1, 201)]
# installs take 1 to 3 s: a kill finds some done, some running
SIMULATION = {"delay": 1.0, "jitter": 2.0}
STEP_TIMEOUT = "120"
RECOVERY = 30.0  # seconds from the restart to the whole fleet's success


async def cli(env: dict[str, str], cwd: Path, *args: str, timeout: float = 60.0) -> str:
    proc = await asyncio.create_subprocess_exec(
        str(MCOFLOW),
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
        cwd=cwd,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, f"mcoflow {args[0]} exited with {proc.returncode}:\n{text}"
    return text


async def install(env: dict[str, str], cwd: Path, package: str, db: str | None = None) -> str:
    """`mcoflow install --no-wait` on every host; the fleet job's plan id."""
    args = ["install", ",".join(HOSTS), package, "--no-wait", "--timeout", STEP_TIMEOUT]
    return plan_id_of(await cli(env, cwd, *args, *(["--db", db] if db else [])))


# ---- the embedded default ------------------------------------------------------------------


async def test_serve_killed_with_hosts_in_flight_loses_nothing(tmp_path: Path) -> None:
    rng = seeded_rng("serve")
    db_url = f"sqlite:///{tmp_path / 'mcoflow.db'}"
    journal = tmp_path / "state" / "simulated-journal.sqlite"
    env = serve_env(tmp_path, {"simulation": SIMULATION})
    args = ["--no-local-agent", "--simulate-hosts", str(len(HOSTS)), "--log-level", "warning"]
    with mcoflow_serve(tmp_path, args, env) as served:
        plan_id = await install(env, tmp_path, "nginx", db=db_url)
        plans = await host_plans(db_url, plan_id, len(HOSTS))
        await wait_until_in_flight(journal, plans)
        await asyncio.sleep(rng.uniform(0.0, 2.5))
        served.process.send_signal(signal.SIGKILL)
        served.process.wait(timeout=10)
    interrupted = running(journal, plans)
    print(f"killed with {len(interrupted)} installs running")
    with mcoflow_serve(tmp_path, args, env):
        took = await wait_fleet_success(db_url, plan_id, HOSTS, within=RECOVERY)
    print(f"the fleet finished {took:.1f} s after the restart")
    assert_installed_once(journal, plans, HOSTS, interrupted)


# ---- separate processes on PostgreSQL, with RabbitMQ and with NATS -------------------------


@dataclass
class Stack:
    """What SimAgent needs of a stack (``amqp_url`` is the broker's URL, NATS too), and
    the executor process."""

    workdir: Path
    db_url: str
    amqp_url: str
    collective: str
    keys_dir: Path
    env: dict[str, str]
    agent: SimAgent | None = None
    executor: LoggedProcess | None = None
    executors: int = 0

    @property
    def journal(self) -> Path:
        return self.workdir / "fleet-journal.sqlite"

    def start_executor(self) -> None:
        self.executors += 1
        self.executor = LoggedProcess(
            [str(MCOFLOW), "executor"],
            log=self.workdir / f"executor-{self.executors}.log",
            env=self.env,
            cwd=self.workdir,
        )

    async def executor_registered(self) -> None:
        world = await World.open(self.db_url, upgrade=False)
        executor = self.executor
        assert executor is not None
        try:

            async def registered() -> None:
                assert executor.alive(), f"the executor exited:\n{executor.output()}"
                try:
                    assert any(e.pid == executor.pid for e in await world.executors())
                except Exception as exc:  # the schema may not be there yet
                    raise AssertionError(f"not registered yet: {exc}") from exc

            await assert_eventually(registered, timeout=60, interval=0.1)
        finally:
            await world.close()


@pytest.fixture(
    params=[
        pytest.param("amqp", marks=[pytest.mark.postgresql, pytest.mark.rabbitmq]),
        pytest.param("nats", marks=[pytest.mark.postgresql, pytest.mark.nats]),
    ]
)
async def stack(
    request: pytest.FixtureRequest, pg_server: str, tmp_path: Path
) -> AsyncIterator[Stack]:
    broker = require_amqp() if request.param == "amqp" else require_nats()
    run = uuid.uuid4().hex[:10]
    databases = fresh_pg_database(pg_server)
    db_url = next(databases)
    collective = f"crash{run}"
    base = {k: v for k, v in os.environ.items() if not k.startswith("MCOFLOW_")}
    env = {
        **base,
        "MCOFLOW_DATABASE_URL": db_url,
        "MCOFLOW_TRANSPORT_URL": broker,
        "MCOFLOW_KEYS_DIR": str(tmp_path / "keys"),
        "MCOFLOW_STATE_DIR": str(tmp_path / "state"),
        "MCOFLOW_COLLECTIVE": collective,
        "MCOFLOW_REPLY_TO": f"mcoflow-crash.replies.{run}",
        "MCOFLOW_ALLOW_UNKNOWN_HOSTS": "true",  # no discovery needed before the job
    }
    stack = Stack(tmp_path, db_url, broker, collective, tmp_path / "keys", env)
    for argv in (["keys", "init"], ["keys", "host", "simulated"]):
        await cli(env, tmp_path, *argv)
    # SimAgent reads the workdir, collective, broker URL, keys and env of a stack
    agent = stack.agent = SimAgent(stack, "fleet", len(HOSTS), "sim-{n:05d}", **SIMULATION)  # type: ignore[arg-type]
    try:
        agent.start()
        stack.start_executor()
        await agent.ready(timeout=60)
        await stack.executor_registered()
        yield stack
    finally:
        for process in (stack.executor, agent.process):
            if process is not None:
                process.stop()
        transport = transport_from_url(broker)
        await transport.connect()
        try:
            for identity in [*agent.identities, agent.fanout]:
                await transport.forget_host(identity=identity, collective=collective)
        finally:
            await transport.close()
        await drop_reply_queues(broker, [env["MCOFLOW_REPLY_TO"]])
        databases.close()


async def test_executor_killed_mid_job_loses_nothing(stack: Stack) -> None:
    rng = seeded_rng(f"executor on {stack.amqp_url.split(':')[0]}")
    plan_id = await install(stack.env, stack.workdir, "nginx")
    plans = await host_plans(stack.db_url, plan_id, len(HOSTS))
    await wait_until_in_flight(stack.journal, plans)
    await asyncio.sleep(rng.uniform(0.0, 2.5))
    assert stack.executor is not None
    stack.executor.kill()
    print(f"executor killed with {len(running(stack.journal, plans))} installs running")
    stack.start_executor()
    took = await wait_fleet_success(stack.db_url, plan_id, HOSTS, within=RECOVERY)
    print(f"the fleet finished {took:.1f} s after the restart")
    # the agent kept running: nothing was interrupted on the hosts
    assert_installed_once(stack.journal, plans, HOSTS, interrupted=set())


async def test_agent_killed_mid_command_runs_its_installs_again_once(stack: Stack) -> None:
    broker = stack.amqp_url.split(":")[0]
    rng = seeded_rng(f"agent on {broker}")
    agent = stack.agent
    assert agent is not None and agent.process is not None
    plan_id = await install(stack.env, stack.workdir, "nginx")
    plans = await host_plans(stack.db_url, plan_id, len(HOSTS))
    await wait_until_in_flight(stack.journal, plans)
    await asyncio.sleep(rng.uniform(0.0, 2.5))
    agent.process.kill()
    interrupted = running(stack.journal, plans)
    print(f"agent killed with {len(interrupted)} installs running")
    agent.start()
    await agent.ready(timeout=60)
    # RabbitMQ gives a killed consumer's messages back at once; JetStream after its
    # ack_wait (30 s)
    redelivery = 30.0 if broker == "nats" else 0.0
    took = await wait_fleet_success(stack.db_url, plan_id, HOSTS, within=RECOVERY + redelivery)
    print(f"the fleet finished {took:.1f} s after the restart")
    assert_installed_once(stack.journal, plans, HOSTS, interrupted)
