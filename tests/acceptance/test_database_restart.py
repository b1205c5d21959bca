"""Acceptance (issue 20 item 3): PostgreSQL restarted (stopped for 10 s, started again)
in the middle of a 1,000-host job run by two executors, and the web console meanwhile.

The server is the test's own (tests/pg_instance.py), on a spare port: the shared one on
:5432 is never stopped. The executors (`mcoflow executor`, two processes) and the
agent (`mcoflow agent` simulating 1,000 hosts) use the shared RabbitMQ under a
collective and a reply queue of this run's own.

What must hold: the job finishes SUCCESS; every host ran its install exactly once (the
agent's journal: one request per host, done, run once); no executor was declared dead
or stopped; each executor's log says "database unreachable" once and "database reachable
again" once, not a line per attempt; no traceback. The web app on that server answers
503 with a clear message and Retry-After while the server is down (HTML for pages, JSON
for the API and /metrics), and 200 again once it is back.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from mcoflow.engine import World
from mcoflow.rpc.transports import transport_from_url
from mcoflow.testing import LoggedProcess, assert_eventually
from mcoflow.web import AuthSettings, create_app
from tests.acceptance.actions.test_operator_jobs_e2e import MCOFLOW, SimAgent, plan_id_of
from tests.acceptance.fleet_crash import (
    assert_installed_once,
    host_plans,
    installs,
    wait_fleet_success,
)
from tests.acceptance.test_crash_recovery import cli
from tests.pg_instance import PgInstance, pg_instance
from tests.rpc_fixtures import drop_reply_queues, require_amqp

HOSTS = [f"sim-{n:05d}" for n in range(1, 1001)]
# each install takes 0.5 to 1.5 s and 100 hosts run at once: the job lasts long enough
# (about 10 s of installs) for the outage to fall in its middle
SIMULATION = {"delay": 0.5, "jitter": 1.0}
CONCURRENCY = "100"
STEP_TIMEOUT = "300"
OUTAGE = 10.0
# hosts done before the database is stopped
DONE_BEFORE_OUTAGE = 150
# from the database's return to the whole fleet's success
RECOVERY = 90.0
UNREACHABLE = "database unreachable"
REACHABLE_AGAIN = "database reachable again"
# the warnings an executor may log once per outage: the outage itself; claims it never
# heard of given back; outcomes of a batch committed just as the connection went, dropped
# when written again; psycopg's own, for a connection lost in the middle of a pipeline
# (once per such connection, at the moment it breaks)
ONCE_PER_OUTAGE = (
    UNREACHABLE,
    "claimable again",
    "no longer claimed by",
    "psycopg: error ignored terminating <psycopg.AsyncPipeline",
)
LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (\w+) ", re.MULTILINE)


@pytest.fixture
def own_pg() -> Iterator[PgInstance]:
    with pg_instance() as instance:
        yield instance


# ---- the web console ------------------------------------------------------------------------


@pytest.fixture
async def web(own_pg: PgInstance) -> AsyncIterator[httpx.AsyncClient]:
    world = await World.open(own_pg.url)
    app = create_app(world, auth=AuthSettings.loopback(), broker_state=lambda: "connected")
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
        ) as client:
            yield client
    finally:
        await world.close()


async def test_the_console_answers_503_while_the_database_is_away(
    own_pg: PgInstance, web: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "mcoflow.store")
    for path in ("/plans", "/api/v1/plans", "/metrics"):
        assert (await web.get(path)).status_code == 200, path
    own_pg.stop()
    try:
        page = await web.get("/plans")
        assert page.status_code == 503
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["retry-after"] == "5"
        assert "the database is unreachable" in page.text
        assert "retry in a moment" in page.text
        assert f"127.0.0.1:{own_pg.port}" in page.text  # which database, for the operator

        api = await web.get("/api/v1/plans")
        assert api.status_code == 503
        assert api.headers["retry-after"] == "5"
        detail = api.json()["detail"]
        assert detail.startswith("the database is unreachable: "), detail
        assert "connection refused" in detail and detail.endswith("; retry in a moment")

        metrics = await web.get("/metrics")
        assert metrics.status_code == 503
        assert metrics.json()["detail"].startswith("the database is unreachable")
    finally:
        own_pg.start()
    for path in ("/plans", "/api/v1/plans", "/metrics"):
        assert (await web.get(path)).status_code == 200, path
    said = [r.getMessage() for r in caplog.records if UNREACHABLE in r.getMessage()]
    assert len(said) == 1, said  # three requests failed, one outage logged
    assert any(REACHABLE_AGAIN in r.getMessage() for r in caplog.records)


# ---- two executors, a 1,000-host job ---------------------------------------------------------


@dataclass
class Stack:
    """What SimAgent reads of a stack (``amqp_url`` is the broker's URL) and the
    executor processes."""

    workdir: Path
    db_url: str
    amqp_url: str
    collective: str
    keys_dir: Path
    env: dict[str, str]
    executors: list[LoggedProcess] = field(default_factory=list)

    @property
    def journal(self) -> Path:
        return self.workdir / "fleet-journal.sqlite"  # SimAgent's, for its name "fleet"

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


async def registered(db_url: str, processes: list[LoggedProcess]) -> None:
    world = await World.open(db_url, upgrade=False)
    try:

        async def all_there() -> None:
            for process in processes:
                assert process.alive(), f"an executor exited:\n{process.output()}"
            pids = {e.pid for e in await world.executors()}
            assert {p.pid for p in processes} <= pids, "not all registered yet"

        await assert_eventually(all_there, timeout=60, interval=0.1)
    finally:
        await world.close()


async def install(stack: Stack) -> str:
    """`mcoflow install --no-wait` on every host; the fleet job's plan id."""
    args = ["install", ",".join(HOSTS), "nginx", "--no-wait", "--concurrency", CONCURRENCY]
    return plan_id_of(await cli(stack.env, stack.workdir, *args, "--timeout", STEP_TIMEOUT))


async def hosts_done(db_url: str, plan_id: str, at_least: int) -> int:
    """Until ``at_least`` hosts of the job are done; how many were."""
    world = await World.open(db_url, upgrade=False)
    try:

        async def enough() -> int:
            done = [p for p in await world.store.child_plans(plan_id) if p.finished]
            assert len(done) >= at_least, f"{len(done)} hosts done"
            return len(done)

        return await assert_eventually(enough, timeout=120, interval=0.1)
    finally:
        await world.close()


def records(text: str, needle: str) -> list[str]:
    return [line for line in text.splitlines() if needle in line]


def warnings(text: str) -> list[str]:
    return [m.group(0) for m in re.finditer(r"^.* WARNING .*$", text, re.MULTILINE)]


def problems(text: str) -> list[str]:
    """Error records and tracebacks in a process's log."""
    starts = [m.start() for m in LOG_RECORD.finditer(text)]
    chunks = [text[a:b] for a, b in zip([0, *starts], [*starts, len(text)], strict=True)]
    found = []
    for chunk in chunks:
        level = LOG_RECORD.match(chunk)
        if "Traceback" in chunk or (level and level[1] in ("ERROR", "CRITICAL")):
            found.append(chunk.strip())
    return found


@pytest.fixture
async def stack(own_pg: PgInstance, tmp_path: Path) -> AsyncIterator[Stack]:
    broker = require_amqp()
    run = uuid.uuid4().hex[:10]
    base = {k: v for k, v in os.environ.items() if not k.startswith("MCOFLOW_")}
    env = {
        **base,
        "MCOFLOW_DATABASE_URL": own_pg.url,
        "MCOFLOW_TRANSPORT_URL": broker,
        "MCOFLOW_KEYS_DIR": str(tmp_path / "keys"),
        "MCOFLOW_STATE_DIR": str(tmp_path / "state"),
        "MCOFLOW_COLLECTIVE": f"dbrestart{run}",
        "MCOFLOW_REPLY_TO": f"mcoflow-dbrestart.replies.{run}",
        "MCOFLOW_ALLOW_UNKNOWN_HOSTS": "true",  # no discovery needed before the job
    }
    stack = Stack(tmp_path, own_pg.url, broker, env["MCOFLOW_COLLECTIVE"], tmp_path / "keys", env)
    for argv in (["db", "upgrade"], ["keys", "init"], ["keys", "host", "simulated"]):
        await cli(env, tmp_path, *argv)
    agent = SimAgent(stack, "fleet", len(HOSTS), "sim-{n:05d}", **SIMULATION)  # type: ignore[arg-type]
    try:
        agent.start()
        stack.start_executor()
        stack.start_executor()
        await agent.ready(timeout=60)
        await registered(stack.db_url, stack.executors)
        yield stack
    finally:
        for process in [*stack.executors, agent.process]:
            if process is not None:
                process.stop()
        transport = transport_from_url(broker)
        await transport.connect()
        try:
            for identity in [*agent.identities, agent.fanout]:
                await transport.forget_host(identity=identity, collective=stack.collective)
        finally:
            await transport.close()
        await drop_reply_queues(broker, [env["MCOFLOW_REPLY_TO"]])


@pytest.mark.rabbitmq
async def test_a_database_restart_mid_job_loses_nothing_and_runs_nothing_twice(
    own_pg: PgInstance, stack: Stack
) -> None:
    started = time.monotonic()
    plan_id = await install(stack)
    plans = await host_plans(stack.db_url, plan_id, len(HOSTS), timeout=120)
    done = await hosts_done(stack.db_url, plan_id, DONE_BEFORE_OUTAGE)
    stopped = time.monotonic()
    own_pg.stop()
    # installs sent and not done when it stopped: their replies come while it is away
    in_flight = len(installs(stack.journal, plans)) - done
    await asyncio.sleep(OUTAGE)
    for process in stack.executors:
        assert process.alive(), (
            f"an executor exited while the database was away:\n{process.output()}"
        )
    own_pg.start()
    back = time.monotonic()
    took = await wait_fleet_success(stack.db_url, plan_id, HOSTS, within=RECOVERY)
    print(
        f"\njob {time.monotonic() - started:.1f} s in all; the database stopped "
        f"{stopped - started:.1f} s in ({done} hosts done, {in_flight} in flight) for "
        f"{back - stopped:.1f} s; "
        "the fleet finished "
        f"{took:.1f} s after it was back"
    )
    assert in_flight > 0
    assert_installed_once(stack.journal, plans, HOSTS, interrupted=set())
    for process in stack.executors:
        assert process.alive(), process.output()
        text = process.output(tail=10**8)
        assert len(records(text, UNREACHABLE)) == 1, records(text, UNREACHABLE)
        assert len(records(text, REACHABLE_AGAIN)) == 1, records(text, REACHABLE_AGAIN)
        assert "declared dead" not in text and "released the claims" not in text
        assert problems(text) == [], "\n".join(problems(text)[:3])
        # nothing else says it per attempt: the warnings are those once per outage
        said = [w for w in warnings(text) if not any(once in w for once in ONCE_PER_OUTAGE)]
        assert said == [], "\n".join(said[:5])
