"""The operator's jobs over a simulated fleet: remote steps per second, fleet jobs.

    python benchmarks/fleet.py [--json] [--transport amqp|memory] [--hosts 1000,10000]
                               [--plans 1000] [--repeat 3] [--store postgresql|sqlite]
                               [--agents K] [--only a|b] [--profile DIR]

(a) ``--plans`` plans (default 1,000) of one remote step each (Install on one of the
    simulated hosts, a package of its own per plan): all triggered in bulk, then timed
    until every plan stopped -> plans/s. Twice: spread over as many hosts as plans,
    then all to one host (``--transport amqp`` only). A run lasts about a second, so
    each is run ``--repeat`` times (a fresh database and executor each): the median
    run's figures are reported, with the slowest and fastest beside them.
Times are the plans' own: from the trigger to the end time the executor recorded for
the last plan (not to the benchmark's next look at the database).
(b) InstallAndRestart ``nginx;nginx`` as one fleet job on each of ``--hosts``
    simulated hosts (no concurrency limit): seconds from trigger to the job stopped,
    and the executor's peak RSS (VmHWM of its process; a fresh executor per figure).

With ``--transport amqp`` (the default) everything is a real process: the executor is
``mcoflow executor``, the simulated hosts are ``mcoflow agent`` processes (``--agents``
of them share the hosts; an agent subscribes a queue per host, so 10,000 hosts take a
while to start: that start-up is timed on its own, before and outside the figures).
The broker is ``MCOFLOW_TEST_AMQP_URL`` and the database a fresh one on
``MCOFLOW_TEST_PG_URL`` (or SQLite with ``--store sqlite``). With ``--transport memory``
the executor and the simulated hosts share this process (the embedded default); the
RSS figure is then this whole process.

Beside the figures: the CPU each part used while a figure ran (executor, agents, broker,
database, this benchmark), per plan or per host, read from /proc, and the rate at which
that CPU would keep every core busy (the most the machine allows); and, before them, the
broker's own floor: one persistent message to each of ``--plans`` durable queues with
plain aio-pika and no mcoflow (its CPU per message; a remote step needs one such
message and a reply).

``--profile DIR`` records the executor of every timed figure with py-spy (collapsed
stacks, ``DIR/<figure>.txt``) when py-spy is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from machine import python_work_ms
from measure import CpuMeter, Report, log, profiled, report_cpu, status_kib
from sqlalchemy.ext.asyncio import create_async_engine

from mcoflow.actions import Install, Jobs
from mcoflow.engine import Plan, PlanFilter, PlanResult, PlanState, World
from mcoflow.engine.store import normalize_url
from mcoflow.orchestrator import ensure_caller_key, ensure_host_key
from mcoflow.runtime import tune_gc
from mcoflow.testing import LoggedProcess

AMQP_URL = os.environ.get("MCOFLOW_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
PG_URL = os.environ.get("MCOFLOW_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
MCOFLOW = Path(sys.executable).parent / "mcoflow"
PATTERN = "sim-{n:05d}"
AGENT_START_LIMIT = 1800.0
# how often the benchmark looks at the database for "done" (each look costs the
# database a query or two that the executor competes with); the times reported are
# the plans' own end times, so this does not add to them
POLL = 0.1


class Databases:
    """A fresh database per figure, dropped at the end (PostgreSQL) or in the tmp dir."""

    def __init__(self, store: str, workdir: Path) -> None:
        self.store = store
        self.workdir = workdir
        self.run = uuid.uuid4().hex[:8]
        self.created: list[str] = []

    async def fresh(self, figure: str) -> str:
        name = f"mcoflow_fleet_{figure}_{self.run}"
        if self.store == "sqlite":
            return f"sqlite:///{self.workdir / (name + '.db')}"
        base = normalize_url(PG_URL)
        admin = create_async_engine(base, isolation_level="AUTOCOMMIT")
        async with admin.connect() as conn:
            await conn.exec_driver_sql(f"CREATE DATABASE {name}")
        await admin.dispose()
        self.created.append(name)
        return base.set(database=name).render_as_string(hide_password=False)

    async def drop(self) -> None:
        if not self.created:
            return
        admin = create_async_engine(normalize_url(PG_URL), isolation_level="AUTOCOMMIT")
        async with admin.connect() as conn:
            for name in self.created:
                await conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.dispose()


# ---- the fleet (amqp) -------------------------------------------------------------------------


class Fleet:
    """Keys, simulated-host agents and an executor per figure, on a real broker."""

    def __init__(
        self,
        workdir: Path,
        store: str,
        hosts: int,
        agents: int,
        simulation: dict[str, Any] | None = None,
    ) -> None:
        """``simulation``: the simulated hosts' settings (SimulationSettings)."""
        self.simulation = simulation or {}
        self.workdir = workdir
        self.store = store
        self.hosts = hosts
        self.run = uuid.uuid4().hex[:8]
        self.collective = f"bench{self.run}"
        self.reply_to = f"mcoflow-bench.replies.{self.run}"
        self.keys = workdir / "keys"
        ensure_caller_key(self.keys, "mcoflow")
        ensure_host_key(self.keys, "simulated")
        self.identities = [PATTERN.format(n=n) for n in range(1, hosts + 1)]
        per = -(-hosts // agents)
        self.slices = [self.identities[i : i + per] for i in range(0, hosts, per)]
        base = {k: v for k, v in os.environ.items() if not k.startswith("MCOFLOW_")}
        self.env = {
            **base,
            "MCOFLOW_TRANSPORT_URL": AMQP_URL,
            "MCOFLOW_KEYS_DIR": str(self.keys),
            "MCOFLOW_STATE_DIR": str(workdir / "state"),
            "MCOFLOW_COLLECTIVE": self.collective,
            "MCOFLOW_REPLY_TO": self.reply_to,
        }
        self.agents: list[LoggedProcess] = []
        self.executors: list[LoggedProcess] = []

    def fanout(self, number: int) -> str:
        return f"{self.collective}-agent{number}"

    async def start_agents(self) -> float:
        """Start the agents; seconds until every one of them subscribed all its hosts."""
        started = time.monotonic()
        for number, names in enumerate(self.slices, 1):
            config = {
                "collective": self.collective,
                "broker_url": AMQP_URL,
                "identities": names,
                "package_provider": "simulated",
                "service_provider": "simulated",
                "key_file": str(self.keys / "host-keys" / "simulated.key"),
                "key_name": "simulated",
                "trusted_keys": str(self.keys / "callers"),
                "journal_file": str(self.workdir / f"journal-{number}.sqlite"),
                "fanout_name": self.fanout(number),
            }
            if self.simulation:
                config["simulation"] = self.simulation
            path = self.workdir / f"agent-{number}.yaml"
            path.write_text(yaml.safe_dump(config))
            self.agents.append(
                LoggedProcess(
                    [str(MCOFLOW), "agent", "--config", str(path), "--log-level", "warning"],
                    log=self.workdir / f"agent-{number}.log",
                    env=self.env,
                    cwd=self.workdir,
                )
            )
        # the agents log at WARNING (a line per request costs), so readiness is read on
        # the broker: an agent subscribes its fanout queue after every host queue
        pending = set(range(len(self.agents)))
        deadline = started + AGENT_START_LIMIT
        while pending:
            for i in sorted(pending):
                agent = self.agents[i]
                if not agent.alive():
                    raise RuntimeError(f"agent {i + 1} exited:\n{agent.output()}")
                if await _consumers_ready(self.collective, [self.fanout(i + 1)]):
                    pending.discard(i)
            if time.monotonic() > deadline:
                raise TimeoutError(f"agents not ready after {AGENT_START_LIMIT} s")
            await asyncio.sleep(0.5)
        return time.monotonic() - started

    async def executor(self, db_url: str, name: str) -> LoggedProcess:
        process = LoggedProcess(
            [str(MCOFLOW), "executor", "--log-level", "warning"],
            log=self.workdir / f"executor-{name}.log",
            env={**self.env, "MCOFLOW_DATABASE_URL": db_url},
            cwd=self.workdir,
        )
        self.executors.append(process)
        # ready once it registered (it creates the schema first)
        deadline = time.monotonic() + 120
        while True:
            if not process.alive():
                raise RuntimeError(f"executor exited:\n{process.output()}")
            with contextlib.suppress(Exception):
                async with await World.open(db_url, upgrade=False) as world:
                    if any(e.pid == process.pid for e in await world.executors()):
                        return process
            if time.monotonic() > deadline:
                raise TimeoutError(f"executor did not register:\n{process.output()}")
            await asyncio.sleep(0.2)

    async def close(self) -> None:
        for process in [*self.executors, *self.agents]:
            process.stop()
        queues = [f"mcoflow.{self.collective}.node.{name}" for name in self.identities]
        queues += [
            f"mcoflow.{self.collective}.node.{self.fanout(i + 1)}" for i in range(len(self.slices))
        ]
        await _drop_queues([*queues, self.reply_to])


async def _consumers_ready(collective: str, names: Sequence[str]) -> bool:
    """Every one of these host queues exists and has a consumer (passive declare)."""
    import aio_pika

    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        for name in names:
            channel = await connection.channel()
            try:
                queue = await channel.declare_queue(
                    f"mcoflow.{collective}.node.{name}", passive=True
                )
            except Exception:  # no such queue yet (and the channel is closed)
                return False
            if not queue.declaration_result.consumer_count:
                return False
    return True


async def _drop_queues(names: Sequence[str]) -> None:
    import aio_pika

    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        for name in names:
            try:
                await channel.queue_delete(name)
            except Exception:
                channel = await connection.channel()


# ---- the figures ------------------------------------------------------------------------------


async def raw_broker_floor(report: Report, queues: int) -> None:
    for persistent in (False, True):
        await _raw_broker_floor(report, queues, persistent)


async def _raw_broker_floor(report: Report, queues: int, persistent: bool) -> None:
    """What the broker alone spends, with no mcoflow at all, on the messages a fleet
    sends: one confirmed message to each of ``queues`` durable queues (as a request to
    each of that many hosts), consumed and acknowledged; transient with an expiration,
    as mcoflow sends requests, and persistent for comparison. Every remote step costs
    one such message and one reply; the broker shares this machine's cores."""
    import aio_pika

    kind = "persistent" if persistent else "transient"
    name = f"raw: 1 {kind} msg to each of {queues} queues"
    run = uuid.uuid4().hex[:8]
    names = [f"mcoflow-bench.raw.{run}.{n}" for n in range(queues)]
    connection = await aio_pika.connect(AMQP_URL)
    try:
        publisher = await connection.channel(publisher_confirms=True)
        consumer = await connection.channel()
        await consumer.set_qos(prefetch_count=256)
        received = 0
        done = asyncio.Event()

        async def on_message(message: Any) -> None:
            nonlocal received
            await message.ack()
            received += 1
            if received == queues:
                done.set()

        for queue_name in names:
            queue = await consumer.declare_queue(queue_name, durable=True)
            await queue.consume(on_message)
        await asyncio.sleep(1.0)  # let the new queues settle, as a fleet's idle ones are
        cpu = CpuMeter(os.getpid(), [])
        started = time.perf_counter()
        body = b"x" * 800  # about a signed request's size
        message = (
            aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
            if persistent
            else aio_pika.Message(body, expiration=60)
        )
        room = asyncio.Semaphore(500)

        async def send(queue_name: str) -> None:
            async with room:
                await publisher.default_exchange.publish(message, queue_name)

        await asyncio.gather(*(send(queue_name) for queue_name in names))
        await asyncio.wait_for(done.wait(), 300)
        elapsed = time.perf_counter() - started
        broker = cpu.used()["broker"]
    finally:
        await connection.close()
        await _drop_queues(names)
    report.add(name, "messages/s", queues / elapsed, "1/s", queues)
    report.add(name, "broker CPU ms per message", broker * 1000 / queues, "ms", queues)


async def wait_stopped(world: World, total: int, timeout: float) -> None:
    """Until ``total`` plans stopped (or paused: a failure, reported by the caller)."""
    deadline = time.monotonic() + timeout
    while True:
        done = 0
        for state in (PlanState.STOPPED, PlanState.PAUSED):
            done += (await world.list_plans(PlanFilter(state=state), limit=1)).total
        if done >= total:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{done}/{total} plans stopped after {timeout} s")
        await asyncio.sleep(POLL)


async def remote_steps(world: World, plans: int, hosts: Sequence[str]) -> tuple[float, float]:
    """(a): ``plans`` Install plans, one remote step each. Returns the seconds to trigger
    them and the seconds from the trigger to the last one stopped."""
    args = [
        {"hostname": hosts[i % len(hosts)], "package": f"bench-{i}", "timeout": 300}
        for i in range(plans)
    ]
    t0 = time.time()
    for start in range(0, plans, 1000):
        await world.trigger_many(Install, args[start : start + 1000], by="bench")
    triggered = time.time() - t0
    await wait_stopped(world, plans, timeout=max(600.0, plans / 5))
    last = await world.list_plans(PlanFilter(state=PlanState.STOPPED), limit=1, order="-ended_at")
    elapsed = _ended_at(last.items[0]) - t0
    succeeded = await world.list_plans(PlanFilter(result=PlanResult.SUCCESS), limit=1)
    if succeeded.total != plans:
        raise RuntimeError(f"only {succeeded.total} of {plans} plans succeeded")
    return triggered, elapsed


def report_runs(report: Report, figure: str, plans: int, runs: list[tuple[float, float]]) -> None:
    """(a)'s figures: the median run's, and the slowest and fastest beside it (a run
    lasts about a second here, and the machine's speed moves more than that)."""
    rates = sorted(plans / elapsed for _, elapsed in runs)
    report.add(
        figure, "plans/s (trigger -> all stopped)", statistics.median(rates), "plans/s", plans
    )
    if len(runs) > 1:
        report.add(figure, f"plans/s, slowest of {len(runs)} runs", rates[0], "plans/s", plans)
        report.add(figure, f"plans/s, fastest of {len(runs)} runs", rates[-1], "plans/s", plans)
    triggered = statistics.median(t for t, _ in runs)
    report.add(figure, "seconds to trigger", triggered, "s", plans)
    elapsed = statistics.median(e for _, e in runs)
    report.add(figure, "seconds trigger -> all stopped", elapsed, "s", plans)


async def fleet_job(report: Report, world: World, hosts: Sequence[str], figure: str) -> None:
    """(b): one InstallAndRestart fleet job over ``hosts``; seconds to finish."""
    t0 = time.time()
    job = await Jobs(world, check_hosts=False).trigger(
        "install-and-restart", hosts=list(hosts), parameter="nginx;nginx", timeout=600, by="bench"
    )
    triggered = time.time() - t0
    done = await world.wait(job.id, timeout=3600, interval=POLL)
    elapsed = _ended_at(done) - t0
    if done.result is not PlanResult.SUCCESS:
        raise RuntimeError(f"fleet job {done.id} ended {done.state} {done.result}: {done.error}")
    report.add(figure, "seconds trigger -> job stopped", elapsed, "s", len(hosts))
    report.add(figure, "seconds to trigger", triggered, "s", len(hosts))
    report.add(figure, "hosts/s", len(hosts) / elapsed, "hosts/s", len(hosts))


def _ended_at(plan: Plan) -> float:
    """When the executor stopped ``plan`` (wall clock, this machine's), not when the
    benchmark's next look at the database saw it."""
    if plan.ended_at is None:
        raise RuntimeError(f"plan {plan.id} is {plan.state} with no end time")
    return plan.ended_at


def machine_speed(report: Report, when: str) -> None:
    """The fixed piece of Python work (``machine.py``): compare runs by it."""
    report.add("machine: fixed Python work", f"ms at the {when} (lower: faster)",
               python_work_ms(), "ms", 1)  # fmt: skip


async def run_amqp(args: argparse.Namespace, report: Report) -> None:
    try:
        await _run_amqp(args, report)
    finally:
        await asyncio.sleep(2)  # the agents and the executor wind down first
        machine_speed(report, "end")


@dataclass(frozen=True)
class TimedExecutor:
    world: World
    executor: LoggedProcess
    cpu: CpuMeter


@contextlib.asynccontextmanager
async def timed_executor(
    fleet: Fleet, databases: Databases, key: str, args: argparse.Namespace
) -> AsyncIterator[TimedExecutor]:
    """A fresh database and ``mcoflow executor`` for one timed figure, the CPU of every
    part metered from here (and the executor recorded with ``--profile``)."""
    url = await databases.fresh(key)
    executor = await fleet.executor(url, key)
    world = await World.open(url, upgrade=False)
    try:
        cpu = CpuMeter(executor.pid, [agent.pid for agent in fleet.agents])
        with profiled(executor.pid, args.profile, key):
            yield TimedExecutor(world, executor, cpu)
    finally:
        await world.close()
        executor.stop()


async def _run_amqp(args: argparse.Namespace, report: Report) -> None:
    biggest = max([*args.hosts, args.plans if "a" in args.only else 0])
    with tempfile.TemporaryDirectory(prefix="mcoflow-fleet-bench-") as tmp:
        fleet = Fleet(Path(tmp), args.store, biggest, args.agents)
        databases = Databases(args.store, Path(tmp))
        try:
            log(f"starting {len(fleet.slices)} agent(s) for {biggest} simulated hosts")
            startup = await fleet.start_agents()
            report.add(
                f"agents for {biggest} hosts ({len(fleet.slices)} processes)",
                "start-up seconds (not timed below)",
                startup,
                "s",
                biggest,
            )
            await raw_broker_floor(report, args.plans)
            if "a" in args.only:
                # to as many hosts as plans (a request per host queue, as a fleet sends),
                # then all to one host (one busy queue: the broker's cheapest case)
                spreads = {
                    ("a", f"(a) {args.plans} plans x 1 remote step"): args.plans,
                    ("a1", f"(a) {args.plans} plans x 1 remote step, one host"): 1,
                }
                for (key, name), spread in spreads.items():
                    hosts = fleet.identities[:spread]
                    runs: list[tuple[float, float]] = []
                    used: dict[str, float] = {}
                    peak = 0.0
                    for run in range(args.repeat):
                        async with timed_executor(fleet, databases, f"{key}_{run}", args) as t:
                            runs.append(await remote_steps(t.world, args.plans, hosts))
                            for group, seconds in t.cpu.used().items():
                                used[group] = used.get(group, 0.0) + seconds
                            peak = max(peak, t.executor.peak_rss_mib())
                    report_runs(report, name, args.plans, runs)
                    report_cpu(report, name, used, args.plans * args.repeat, "plan")
                    report.add(name, "executor peak RSS", peak, "MiB", args.plans)
            if "b" in args.only:
                for n in args.hosts:
                    name = f"(b) InstallAndRestart on {n} hosts"
                    async with timed_executor(fleet, databases, f"b{n}", args) as t:
                        await fleet_job(report, t.world, fleet.identities[:n], name)
                        report_cpu(report, name, t.cpu.used(), n, "host")
                        report.add(name, "executor peak RSS", t.executor.peak_rss_mib(), "MiB", n)
        finally:
            await fleet.close()
            await databases.drop()


# ---- the embedded default (memory) -------------------------------------------------------------


@contextlib.asynccontextmanager
async def embedded(url: str, tmp: Path, hosts: int) -> AsyncIterator[Any]:
    from mcoflow.orchestrator import build_orchestrator
    from mcoflow.settings import Settings

    settings = Settings(
        database_url=url,
        transport_url=f"memory://{uuid.uuid4().hex}",
        keys_dir=tmp / "keys",
        state_dir=tmp / f"state-{uuid.uuid4().hex[:6]}",
    )
    orchestrator = await build_orchestrator(settings, simulate_hosts=hosts)
    await orchestrator.start()
    try:
        yield orchestrator
    finally:
        await orchestrator.stop()


async def run_memory(args: argparse.Namespace, report: Report) -> None:
    with tempfile.TemporaryDirectory(prefix="mcoflow-fleet-bench-") as tmp_name:
        tmp = Path(tmp_name)
        databases = Databases(args.store, tmp)
        try:
            await raw_broker_floor(report, args.plans)
            if "a" in args.only:
                name = f"(a) {args.plans} plans x 1 remote step"
                hosts = [PATTERN.format(n=n) for n in range(1, args.plans + 1)]
                runs = []
                for run in range(args.repeat):
                    async with embedded(await databases.fresh(f"a_{run}"), tmp, args.plans) as o:
                        with profiled(os.getpid(), args.profile, f"a_{run}"):
                            runs.append(await remote_steps(o.world, args.plans, hosts))
                report_runs(report, name, args.plans, runs)
            if "b" in args.only:
                for n in args.hosts:
                    name = f"(b) InstallAndRestart on {n} hosts"
                    async with embedded(await databases.fresh(f"b{n}"), tmp, n) as o:
                        hosts = [PATTERN.format(n=i) for i in range(1, n + 1)]
                        with profiled(os.getpid(), args.profile, f"b{n}"):
                            await fleet_job(report, o.world, hosts, name)
                    peak = status_kib(Path("/proc/self/status"), "VmHWM") / 1024
                    report.add(name, "process peak RSS (all in one)", peak, "MiB", n)
        finally:
            await databases.drop()


def _at_least_one(text: str) -> int:
    number = int(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--json", action="store_true", help="one JSON object per figure")
    parser.add_argument("--transport", choices=["amqp", "memory"], default="amqp")
    parser.add_argument("--store", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument(
        "--hosts",
        type=lambda s: [int(x) for x in s.split(",") if x],
        default=[1000, 10000],
        help="fleet sizes for (b), comma-separated",
    )
    parser.add_argument("--plans", type=int, default=1000, help="plans for (a)")
    parser.add_argument(
        "--repeat", type=_at_least_one, default=3, help="runs of (a) (the median is reported)"
    )
    parser.add_argument("--agents", type=int, default=4, help="agent processes (amqp)")
    parser.add_argument("--only", choices=["a", "b"], action="append")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy output folder")
    args = parser.parse_args()
    args.only = set(args.only or "ab")
    report = Report(args.store, args.transport, args.json)
    machine_speed(report, "start")
    runner = run_amqp if args.transport == "amqp" else run_memory
    if runner is run_memory:
        tune_gc()  # this process is then the executor and the hosts, as `mcoflow serve` is
    try:
        asyncio.run(runner(args, report))
    finally:
        report.table()


if __name__ == "__main__":
    main()
