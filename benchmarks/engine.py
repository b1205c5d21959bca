"""Engine throughput, fan-out, and the cost of suspended steps.

    python benchmarks/engine.py --store sqlite|postgresql [--json] [--scale 1.0]

(a) 1,000 plans x 3 sequential no-op durable steps: plans/s and steps/s
(b) one plan fanning out to 1,000 concurrent steps and joining: wall seconds
(c) 10,000 steps suspended at once: executor RSS and threads before/after, then
    seconds to wake them all by events
(d) the raw rate of single-row INSERT+COMMIT on the same store, so (a) reads as a
    fraction of it
(e) PostgreSQL: failover between two `mcoflow executor` processes. SIGKILL the one
    holding a plan's steps: seconds until the other has claimed them all (found by its
    liveness lock; the killed process is reaped only afterwards, so the same-machine
    pid check cannot find it first, as on separate machines). SIGSTOP it for 25 s
    instead: seconds it was left alone (25 unless wrongly taken over), then SIGCONT and
    its steps finish. Both run with a heartbeat timeout of 60 s: only the lock path counts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy import Column, Integer, MetaData, String, Table, insert
from sqlalchemy.ext.asyncio import create_async_engine

from mcoflow.engine import Action, Event, PlanFilter, PlanResult, PlanState, StepState, World
from mcoflow.engine.liveness import SETTLE
from mcoflow.engine.planner import Planner
from mcoflow.engine.store import normalize_url
from mcoflow.runtime import tune_gc

DEFAULT_PG = os.environ.get("MCOFLOW_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


class NoOp(Action):
    name = "bench.noop"
    idempotent = True

    def run(self, event: Event | None = None) -> None:
        return None


class ThreeInSequence(Action):
    name = "bench.three"

    def plan(self) -> None:
        with self.sequence():
            for _ in range(3):
                self.plan_action(NoOp)


class FanOut(Action):
    name = "bench.fanout"

    def plan(self, n: int) -> None:
        with self.sequence():
            with self.concurrence():
                for _ in range(n):
                    self.plan_action(NoOp)
            self.plan_action(NoOp)


class WaitForEvent(Action):
    name = "bench.wait"

    def run(self, event: Event | None = None) -> None:
        if event is None:
            self.suspend()


class ManyWaiting(Action):
    name = "bench.many_waiting"

    def plan(self, n: int) -> None:
        for _ in range(n):
            self.plan_action(WaitForEvent)


class Hold(Action):
    """Sleeps ``$MCOFLOW_BENCH_HOLD`` s: each executor process holds steps as long as told."""

    name = "bench.hold"
    idempotent = True  # released steps run again on the survivor

    async def run(self, event: Event | None = None) -> None:
        await asyncio.sleep(float(os.environ.get(HOLD_ENV, "0.05")))


class Held(Action):
    name = "bench.held"

    def plan(self, n: int) -> None:
        for _ in range(n):
            self.plan_action(Hold)


HOLD_ENV = "MCOFLOW_BENCH_HOLD"
REPO = Path(__file__).resolve().parents[1]
STALL = 25.0


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


class Report:
    def __init__(self, store: str, as_json: bool) -> None:
        self.store = store
        self.as_json = as_json
        self.rows: list[tuple[str, str, float, str, int]] = []

    def add(self, benchmark: str, metric: str, value: float, unit: str, n: int) -> None:
        self.rows.append((benchmark, metric, value, unit, n))
        if self.as_json:
            print(
                json.dumps(
                    {
                        "benchmark": benchmark,
                        "metric": metric,
                        "value": round(value, 4),
                        "unit": unit,
                        "store": self.store,
                        "n": n,
                        "cores": os.cpu_count(),
                    }
                ),
                flush=True,
            )

    def table(self) -> None:
        print(
            f"\nmcoflow engine benchmark - store {self.store}, {os.cpu_count()} cores, "
            f"{platform.processor() or platform.machine()}, Python {platform.python_version()}"
        )
        print(f"{'benchmark':<40}{'metric':<30}{'value':>14}  unit")
        for benchmark, metric, value, unit, _n in self.rows:
            print(f"{benchmark:<40}{metric:<30}{value:>14,.2f}  {unit}")


@contextlib.asynccontextmanager
async def fresh_database(store: str, tmp: Path, name: str) -> AsyncIterator[str]:
    """An empty database for one figure, dropped again afterwards (PostgreSQL)."""
    if store == "sqlite":
        yield f"sqlite:///{tmp / (name + '.db')}"
        return
    base = normalize_url(DEFAULT_PG)
    admin = create_async_engine(base, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            await conn.exec_driver_sql(f"CREATE DATABASE {name}")
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as conn:
            await conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.dispose()


async def wait_all_stopped(world: World, total: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while True:
        page = await world.list_plans(limit=1)
        done = await world.list_plans(PlanFilter(state=PlanState.STOPPED), limit=1)
        if done.total >= total:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{done.total}/{page.total} plans stopped")
        await asyncio.sleep(0.1)


async def bench_sequential(report: Report, url: str, n: int) -> None:
    world = await World.open(url)
    t0 = time.perf_counter()
    for start in range(0, n, 500):
        await world.trigger_many(ThreeInSequence, [{}] * min(500, n - start))
    planned = time.perf_counter() - t0
    await world.close()
    world = await World.open(url, execute=True, poll_interval=0.05)
    t1 = time.time()
    await wait_all_stopped(world, n)
    # the end is the last plan's own end time, not when the poll above noticed it (the
    # 0.1 s poll would add up to 15% noise to a run of well under a second)
    last = await world.list_plans(PlanFilter(state=PlanState.STOPPED), limit=1, order="-ended_at")
    ended = last.items[0].ended_at
    assert ended is not None
    ran = ended - t1
    await world.close()
    name = f"(a) {n} plans x 3 sequential steps"
    report.add(name, "trigger (plan+insert) rate", n / planned, "plans/s", n)
    report.add(name, "execution plans/s", n / ran, "plans/s", n)
    report.add(name, "execution steps/s", 3 * n / ran, "steps/s", n)
    report.add(name, "end-to-end plans/s", n / (planned + ran), "plans/s", n)


async def bench_fanout(report: Report, url: str, n: int) -> None:
    world = await World.open(url, execute=True, poll_interval=0.05)
    t0 = time.perf_counter()
    plan = await world.trigger(FanOut, n=n)
    planned = time.perf_counter() - t0
    done = await world.wait(plan.id, timeout=600, interval=0.01)
    wall = time.perf_counter() - t0
    await world.close()
    assert done.result.value == "success", done
    name = f"(b) fan-out {n} + join"
    report.add(name, "planning+insert seconds", planned, "s", n)
    report.add(name, "wall seconds trigger->done", wall, "s", n)


async def bench_suspended(report: Report, url: str, n: int) -> None:
    import gc

    world = await World.open(url)
    plan = Planner().plan(ManyWaiting, {"n": n})
    await world.store.insert_plans([plan], start=True, by="bench")
    plan_id = plan.id
    del plan
    await world.close()
    gc.collect()
    world = await World.open(url, execute=True, poll_interval=0.05)
    await asyncio.sleep(0.2)
    gc.collect()
    rss_before, threads_before = rss_kib(), os_threads()
    t0 = time.perf_counter()
    while (await world.store.count_steps(plan_id)).get(StepState.SUSPENDED, 0) < n:
        await asyncio.sleep(0.05)
    suspend_s = time.perf_counter() - t0
    gc.collect()
    await asyncio.sleep(0.3)
    gc.collect()
    rss_after, threads_after = rss_kib(), os_threads()
    name = f"(c) {n} suspended steps"
    report.add(name, "seconds to suspend all", suspend_s, "s", n)
    report.add(name, "executor RSS before", rss_before / 1024, "MiB", n)
    report.add(name, "executor RSS after", rss_after / 1024, "MiB", n)
    report.add(name, "RSS per suspended step", (rss_after - rss_before) * 1024 / n, "bytes", n)
    report.add(name, "OS threads before", threads_before, "threads", n)
    report.add(name, "OS threads after", threads_after, "threads", n)
    report.add(name, "Python threads after", threading.active_count(), "threads", n)
    t1 = time.perf_counter()
    for start in range(2, n + 2, 1000):
        await world.events(
            [(plan_id, idx, {"go": True}, None) for idx in range(start, min(start + 1000, n + 2))]
        )
    delivered = time.perf_counter() - t1
    done = await world.wait(plan_id, timeout=600, interval=0.02)
    wake = time.perf_counter() - t1
    await world.close()
    assert done.result.value == "success", done
    report.add(name, "seconds to deliver events", delivered, "s", n)
    report.add(name, "seconds to wake all (->done)", wake, "s", n)


async def bench_raw_insert(report: Report, url: str, n: int) -> None:
    engine = create_async_engine(normalize_url(url))
    meta = MetaData()
    table = Table(
        "raw_bench", meta, Column("id", Integer, primary_key=True), Column("v", String(64))
    )
    async with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            await conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        await conn.run_sync(meta.drop_all)
        await conn.run_sync(meta.create_all)
    if engine.dialect.name == "sqlite":
        # the same durability settings the store uses
        async with engine.connect() as conn:
            await conn.exec_driver_sql("PRAGMA synchronous=NORMAL")
    t0 = time.perf_counter()
    async with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            await conn.exec_driver_sql("PRAGMA synchronous=NORMAL")
        for i in range(n):
            await conn.execute(insert(table).values(v=f"row {i}"))
            await conn.commit()
    elapsed = time.perf_counter() - t0
    await engine.dispose()
    report.add("(d) raw single-row INSERT+COMMIT", "rate", n / elapsed, "rows/s", n)


def spawn_executor(url: str, hold: float, tmp: Path, name: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCOFLOW_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(REPO)) if p)
    env[HOLD_ENV] = str(hold)
    argv = [
        str(Path(sys.executable).with_name("mcoflow")), "executor", "--db", url,
        "--import", "benchmarks.engine", "--poll-interval", "0.05",
        "--heartbeat-interval", "0.5", "--dead-after", "60",
    ]  # fmt: skip
    with (tmp / f"{name}.log").open("ab") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp)


async def registered(world: World, proc: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"executor exited with {proc.returncode}"
        found = [e.id for e in await world.executors() if e.pid == proc.pid]
        if found:
            return found[0]
        await asyncio.sleep(0.05)
    raise TimeoutError("executor did not register")


async def holders(world: World, plan_id: str) -> dict[int, tuple[str | None, StepState, int]]:
    return {
        s.idx: (s.claimed_by, s.state, s.attempts)
        for s in await world.steps(plan_id)
        if s.action == Hold.name
    }


async def takeover(url: str, tmp: Path, n: int, stall: bool) -> float:
    """One failover scenario: seconds to take over (kill) or seconds left alone (stall)."""
    world = await World.open(url)
    plan = await world.trigger(Held, n=n)
    victim = spawn_executor(url, SETTLE + 4 if stall else 600, tmp, f"victim-{stall}")
    survivor: subprocess.Popen[bytes] | None = None
    try:
        victim_id = await registered(world, victim)
        while {h[0] for h in (await holders(world, plan.id)).values()} != {victim_id}:
            await asyncio.sleep(0.05)
        survivor = spawn_executor(url, 0.05, tmp, f"survivor-{stall}")
        survivor_id = await registered(world, survivor)
        await asyncio.sleep(SETTLE + 0.5)  # the survivor judges no one before
        victim.send_signal(signal.SIGSTOP if stall else signal.SIGKILL)  # killed: not reaped
        t0 = time.monotonic()
        while True:
            held = (await holders(world, plan.id)).values()
            if all(h[0] == survivor_id or (h[1] is StepState.SUCCESS and h[2] > 1) for h in held):
                break  # taken over
            if stall and time.monotonic() - t0 >= STALL:
                break
            await asyncio.sleep(0.01)
        elapsed = time.monotonic() - t0
        if stall:
            victim.send_signal(signal.SIGCONT)
            if elapsed < STALL:
                print(f"the stalled executor was taken over after {elapsed:.1f} s", file=sys.stderr)
        done = await world.wait(plan.id, timeout=120, interval=0.05)
        assert done.result is PlanResult.SUCCESS, done
        return elapsed
    finally:
        for proc in (victim, survivor):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
            if proc is not None:
                proc.wait(timeout=60)
        await world.close()


async def bench_takeover(report: Report, url: str, n: int) -> None:
    name = f"(e) failover, {n} steps held"
    with tempfile.TemporaryDirectory(prefix="mcoflow-failover-") as logs:
        try:
            took = await takeover(url, Path(logs), n, stall=False)
            report.add(name, "SIGKILL -> survivor claimed", took, "s", n)
            alone = await takeover(url, Path(logs), n, stall=True)
            report.add(name, f"SIGSTOP {STALL:.0f} s: left alone", alone, "s", n)
        except BaseException:
            print_logs(Path(logs))
            raise


def print_logs(directory: Path) -> None:
    for log in sorted(directory.glob("*.log")):
        print(f"--- {log.name}:\n{log.read_text()[-3000:]}", file=sys.stderr)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--json", action="store_true", help="one JSON object per figure")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every n")
    parser.add_argument("--only", choices=["a", "b", "c", "d", "e"], action="append")
    args = parser.parse_args()
    report = Report(args.store, args.json)
    # (e): PostgreSQL alone (SQLite is one machine: the heartbeat and pid checks stay)
    only = set(args.only or ("abcde" if args.store == "postgresql" else "abcd"))

    def n(base: int) -> int:
        return max(1, int(base * args.scale))

    with tempfile.TemporaryDirectory(prefix="mcoflow-bench-") as tmp_name:
        tmp = Path(tmp_name)
        for key, bench, name, base_n in (
            ("d", bench_raw_insert, "mcoflow_bench_raw", 2000),
            ("a", bench_sequential, "mcoflow_bench_a", 1000),
            ("b", bench_fanout, "mcoflow_bench_b", 1000),
            ("c", bench_suspended, "mcoflow_bench_c", 10000),
            ("e", bench_takeover, "mcoflow_bench_e", 4),
        ):
            if key in only:
                if key == "e" and args.store != "postgresql":
                    continue
                async with fresh_database(args.store, tmp, name) as url:
                    await bench(report, url, n(base_n))
    if not args.json:
        report.table()
    else:
        report.table() if sys.stdout.isatty() else None


if __name__ == "__main__":
    tune_gc()  # the executor runs in this process: as `mcoflow executor` sets it
    asyncio.run(main())
