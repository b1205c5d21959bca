"""Job templates against the hand-written jobs on a simulated fleet: the general path
measured against the special one.

    python benchmarks/templates.py [--json] [--transport amqp|memory] [--hosts 1000,10000]
                                   [--store postgresql|sqlite] [--agents K] [--profile DIR]

For each fleet size N, in the same run and on the same agents, each as one fleet job
with a fresh database and executor (``benchmarks/fleet.py``'s harness):

(b) InstallAndRestart (the Python action): install a package, restart ``nginx`` if the
    install changed the host;
(t) the shipped ``install-and-restart`` template, the same work on the general path;
(r) the shipped ``rolling-package-update`` template: update a package (installed at an
    older version on every host), restart ``nginx`` where that changed something, poll
    its status until it runs (one call more per host than (b)).

All three run with the rolling update's fleet options (its batches and failure
threshold), so the fleets have the same shape. Each figure uses packages of its own, so
every host changes in every figure. Printed: seconds from the trigger to the job
stopped, hosts/s, the CPU per host of every part, and the ratios (t)/(b) and (r)/(b) of
seconds and of CPU per host (the aim: within 1.3x).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from fleet import POLL, Databases, Fleet, _ended_at, machine_speed, timed_executor
from measure import Report, log, profiled, report_cpu

from mcoflow.actions import Jobs
from mcoflow.engine import Plan, PlanResult, World
from mcoflow.runtime import tune_gc
from mcoflow.templates import template_library

PATTERN = "sim-{n:05d}"
ROLLING = "rolling-package-update"
INSTALL_AND_RESTART = "install-and-restart"
SERVICE = "nginx"
OLD_VERSION = "0.9-1"

Start = Callable[[Jobs, list[str], dict[str, Any]], Awaitable[Plan]]


def fleet_options() -> dict[str, Any]:
    """The rolling update's fleet defaults, given to every figure."""
    defaults = template_library().get(ROLLING).defaults
    return defaults.model_dump(exclude_none=True)


def simulation(sizes: list[int]) -> dict[str, Any]:
    """Every host has an old version of each figure's package to update."""
    return {"packages": {f"upd-{n}": OLD_VERSION for n in (0, *sizes)}}  # 0: the warm-up


def _rolling_inputs(n: int) -> dict[str, Any]:
    template = template_library().get(ROLLING)
    names = {i.name for i in template.inputs}
    inputs: dict[str, Any] = {"package": f"upd-{n}"}
    for name in ("service", "services"):
        if name in names:
            inputs[name] = SERVICE
    return inputs


def _install_inputs(n: int) -> dict[str, Any]:
    template = template_library().get(INSTALL_AND_RESTART)
    names = {i.name for i in template.inputs}
    packages = "packages" if "packages" in names else "package"
    services = "services" if "services" in names else "service"
    return {packages: f"tir-{n}", services: SERVICE}


def figures(n: int, options: dict[str, Any]) -> list[tuple[str, str, Start]]:
    """(key, figure name, how to start it) for a fleet of ``n`` hosts."""
    shape = ", ".join(f"{k} {v}" for k, v in options.items()) or "no fleet options"

    async def hand_written(jobs: Jobs, hosts: list[str], opts: dict[str, Any]) -> Plan:
        return await jobs.trigger(
            "install-and-restart",
            hosts=hosts,
            parameter=f"ir-{n};{SERVICE}",
            timeout=600,
            by="bench",
            **opts,
        )

    def template(name: str, inputs: dict[str, Any]) -> Start:
        async def start(jobs: Jobs, hosts: list[str], opts: dict[str, Any]) -> Plan:
            from mcoflow.templates import run_template

            return await run_template(
                jobs, name, inputs, hosts=hosts, timeout=600, by="bench", **opts
            )

        return start

    found = [("b", f"(b) InstallAndRestart on {n} hosts ({shape})", hand_written)]
    if INSTALL_AND_RESTART in template_library():
        found.append(
            (
                "t",
                f"(t) template {INSTALL_AND_RESTART} on {n} hosts ({shape})",
                template(INSTALL_AND_RESTART, _install_inputs(n)),
            )
        )
    found.append(
        (
            "r",
            f"(r) template {ROLLING} on {n} hosts ({shape})",
            template(ROLLING, _rolling_inputs(n)),
        )
    )
    return found


async def timed_job(
    report: Report, world: World, hosts: list[str], figure: str, start: Start
) -> float:
    """One fleet job over ``hosts``; its seconds from the trigger to its end."""
    t0 = time.time()
    job = await start(Jobs(world, check_hosts=False), hosts, fleet_options())
    triggered = time.time() - t0
    done = await world.wait(job.id, timeout=3600, interval=POLL)
    if done.result is not PlanResult.SUCCESS:
        raise RuntimeError(
            f"{figure}: job {done.id} ended {done.state} {done.result}: {done.error}"
        )
    elapsed = _ended_at(done) - t0
    report.add(figure, "seconds trigger -> job stopped", elapsed, "s", len(hosts))
    report.add(figure, "seconds to trigger", triggered, "s", len(hosts))
    report.add(figure, "hosts/s", len(hosts) / elapsed, "hosts/s", len(hosts))
    return elapsed


async def warm_up(world: World, hosts: list[str]) -> None:
    """Each kind of job once, untimed, on a few hosts (packages of their own): the
    first job after a start pays for imports and caches, which no figure should."""
    for _, name, start in figures(0, {}):
        job = await start(Jobs(world, check_hosts=False), hosts, {})
        done = await world.wait(job.id, timeout=600, interval=POLL)
        if done.result is not PlanResult.SUCCESS:
            raise RuntimeError(f"warm-up {name}: ended {done.state} {done.result}")


def report_ratios(report: Report, n: int, results: dict[str, tuple[float, float]]) -> None:
    """(t)/(b) and (r)/(b): seconds and CPU per host (all parts), against the aim 1.3."""
    base_seconds, base_cpu = results["b"]
    for key in ("t", "r"):
        if key not in results:
            continue
        seconds, cpu = results[key]
        name = f"ratio ({key})/(b) on {n} hosts"
        report.add(name, "seconds, template / hand-written", seconds / base_seconds, "x", n)
        if base_cpu > 0:
            report.add(name, "CPU per host, template / hand-written", cpu / base_cpu, "x", n)


# ---- amqp: real processes ------------------------------------------------------------------


async def run_amqp(args: argparse.Namespace, report: Report) -> None:
    biggest = max(args.hosts)
    with tempfile.TemporaryDirectory(prefix="mcoflow-template-bench-") as tmp:
        fleet = Fleet(Path(tmp), args.store, biggest, args.agents, simulation(args.hosts))
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
            async with timed_executor(fleet, databases, "warm", args) as t:
                await warm_up(t.world, fleet.identities[: min(biggest, 100)])
            for n in args.hosts:
                results: dict[str, tuple[float, float]] = {}
                for key, name, start in figures(n, fleet_options()):
                    async with timed_executor(fleet, databases, f"{key}{n}", args) as t:
                        hosts = fleet.identities[:n]
                        elapsed = await timed_job(report, t.world, hosts, name, start)
                        used = t.cpu.used()
                        report_cpu(report, name, used, n, "host")
                        report.add(name, "executor peak RSS", t.executor.peak_rss_mib(), "MiB", n)
                    results[key] = (elapsed, sum(used.values()) / n)
                report_ratios(report, n, results)
        finally:
            await fleet.close()
            await databases.drop()
            await asyncio.sleep(1)
            machine_speed(report, "end")


# ---- memory: the embedded default, one process ---------------------------------------------


@contextlib.asynccontextmanager
async def embedded(url: str, tmp: Path, hosts: int, sim: dict[str, Any]) -> AsyncIterator[Any]:
    from mcoflow.orchestrator import build_orchestrator
    from mcoflow.settings import Settings

    settings = Settings(
        database_url=url,
        transport_url=f"memory://{uuid.uuid4().hex}",
        keys_dir=tmp / "keys",
        state_dir=tmp / f"state-{uuid.uuid4().hex[:6]}",
    )
    orchestrator = await build_orchestrator(settings, simulate_hosts=hosts, simulation=sim)
    await orchestrator.start()
    try:
        yield orchestrator
    finally:
        await orchestrator.stop()


async def run_memory(args: argparse.Namespace, report: Report) -> None:
    with tempfile.TemporaryDirectory(prefix="mcoflow-template-bench-") as tmp_name:
        tmp = Path(tmp_name)
        databases = Databases(args.store, tmp)
        warmed = False
        try:
            for n in args.hosts:
                hosts = [PATTERN.format(n=i) for i in range(1, n + 1)]
                results: dict[str, tuple[float, float]] = {}
                for key, name, start in figures(n, fleet_options()):
                    url = await databases.fresh(f"{key}{n}")
                    async with embedded(url, tmp, n, simulation(args.hosts)) as o:
                        if not warmed:
                            await warm_up(o.world, hosts[: min(n, 20)])
                            warmed = True
                        cpu = time.process_time()
                        with profiled(os.getpid(), args.profile, f"{key}{n}"):
                            elapsed = await timed_job(report, o.world, hosts, name, start)
                        # executor, broker and hosts are this one process here
                        used = {"this process (all in one)": time.process_time() - cpu}
                        report_cpu(report, name, used, n, "host")
                    results[key] = (elapsed, sum(used.values()) / n)
                report_ratios(report, n, results)
        finally:
            await databases.drop()
            machine_speed(report, "end")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--json", action="store_true", help="one JSON object per figure")
    parser.add_argument("--transport", choices=["amqp", "memory"], default="amqp")
    parser.add_argument("--store", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument(
        "--hosts",
        type=lambda s: [int(x) for x in s.split(",") if x],
        default=[1000, 10000],
        help="fleet sizes, comma-separated",
    )
    parser.add_argument("--agents", type=int, default=4, help="agent processes (amqp)")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy output folder")
    args = parser.parse_args()
    report = Report(args.store, args.transport, args.json)
    machine_speed(report, "start")
    if args.transport == "memory":
        tune_gc()  # this process is then the executor and the hosts, as `mcoflow serve` is
    try:
        asyncio.run(
            run_amqp(args, report) if args.transport == "amqp" else run_memory(args, report)
        )
    finally:
        report.table()


if __name__ == "__main__":
    main()
