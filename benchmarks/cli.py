"""CLI benchmark: how long the operator waits for the command line itself.

    python benchmarks/cli.py [--json] [--runs 7]

Figures, each the median of ``--runs`` runs: the wall time of ``mcoflow --help``; the
time to import ``mcoflow.cli`` (and, for reference, Python's own start-up); and one
single-host job, ``mcoflow install sim-00001 PKG`` against a ``mcoflow serve
--simulate-hosts 1`` on a temporary SQLite database that the benchmark starts, timed
until the command exits, beside the same job through the Python API in this process
(``Jobs(world).trigger`` then ``world.wait``, on a World opened once). The CLI's
overhead per job is the difference of the two medians; CLI and API runs alternate, so
a drift of the machine's speed weighs on both alike. Each figure with an aim is also
printed as a ratio to it (below 1: the aim is met).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import python_work_ms

from mcoflow.testing import LoggedProcess

AIMS = {"mcoflow --help": 0.3, "CLI overhead per job": 0.4}
HOST = "sim-00001"


def mcoflow_command() -> str:
    """The ``mcoflow`` script installed beside this Python (the venv's)."""
    script = Path(sys.executable).parent / "mcoflow"
    if not script.exists():
        raise SystemExit(f"no {script}: install mcoflow into this Python's environment")
    return str(script)


def wall(argv: list[str], *, env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return elapsed


def import_seconds(module: str, env: dict[str, str], cwd: Path) -> float:
    """Seconds to import ``module`` in a fresh interpreter, timed inside it."""
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, check=True
    )
    return float(done.stdout)


def start_serve(mcoflow: str, url: str, tmp: Path, env: dict[str, str]) -> LoggedProcess:
    with socket.socket() as probe:  # a free port for the web console it also serves
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    serve = LoggedProcess(
        [mcoflow, "serve", "--db", url, "--simulate-hosts", "1", "--no-local-agent",
         "--listen", f"127.0.0.1:{port}", "--log-level", "warning"],
        log=tmp / "serve.log", env=env, cwd=tmp,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while "mcoflow serving" not in serve.output():
        if not serve.alive() or time.monotonic() > deadline:
            serve.stop()
            raise SystemExit(f"mcoflow serve did not start:\n{serve.output()}")
        time.sleep(0.05)
    return serve


async def job_figures(
    mcoflow: str, url: str, runs: int, env: dict[str, str], tmp: Path
) -> tuple[list[float], list[float]]:
    """(CLI seconds, API seconds) of ``runs`` alternating single-host installs."""
    from mcoflow.actions import Jobs
    from mcoflow.engine import PlanResult, World

    cli: list[float] = []
    api: list[float] = []
    world = await World.open(url)
    try:
        jobs = Jobs(world)
        for n in range(runs):
            cli.append(
                await asyncio.to_thread(
                    wall, [mcoflow, "install", "--db", url, HOST, f"cli-{n}"], env=env, cwd=tmp
                )
            )
            started = time.perf_counter()
            plan = await jobs.trigger("install", hosts=HOST, parameter=f"api-{n}", by="bench")
            done = await world.wait(plan.id, timeout=60)
            api.append(time.perf_counter() - started)
            if done.result is not PlanResult.SUCCESS:
                raise SystemExit(f"plan {done.id} ended {done.result.value}: {done.error}")
    finally:
        await world.close()
    return cli, api


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--json", action="store_true", help="one JSON object per figure")
    parser.add_argument("--runs", type=int, default=7, help="runs per figure (median)")
    args = parser.parse_args()
    runs = max(1, args.runs)
    mcoflow = mcoflow_command()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCOFLOW_")}
    env["COLUMNS"] = "80"
    rows: list[tuple[str, float, str, int]] = [
        ("machine: fixed Python work at the start", python_work_ms(), "ms", 1)
    ]
    with tempfile.TemporaryDirectory(prefix="mcoflow-cli-bench-") as tmp_name:
        tmp = Path(tmp_name)
        median = statistics.median
        help_s = median(wall([mcoflow, "--help"], env=env, cwd=tmp) for _ in range(runs))
        rows.append(("mcoflow --help", help_s, "s", runs))
        start_s = median(
            wall([sys.executable, "-c", "pass"], env=env, cwd=tmp) for _ in range(runs)
        )
        rows.append(("python start-up, nothing imported", start_s, "s", runs))
        import_s = median(import_seconds("mcoflow.cli", env, tmp) for _ in range(runs))
        rows.append(("import mcoflow.cli", import_s, "s", runs))
        url = f"sqlite:///{tmp / 'bench.db'}"
        serve = start_serve(mcoflow, url, tmp, env)
        try:
            cli, api = asyncio.run(job_figures(mcoflow, url, runs, env, tmp))
        finally:
            serve.stop()
        rows.append(("single-host job through the CLI", median(cli), "s", runs))
        rows.append(("single-host job through the Python API", median(api), "s", runs))
        rows.append(("CLI overhead per job", median(cli) - median(api), "s", runs))
    for metric, aim in AIMS.items():
        value = next(v for m, v, _, _ in rows if m == metric)
        rows.append((f"{metric} / aim {aim} s", value / aim, "ratio", runs))
    rows.append(("machine: fixed Python work at the end", python_work_ms(), "ms", 1))
    if args.json:
        for metric, value, unit, n in rows:
            record = {"benchmark": "cli", "metric": metric, "value": round(value, 4),
                      "unit": unit, "n": n, "cores": os.cpu_count()}  # fmt: skip
            print(json.dumps(record), flush=True)
        return
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"mcoflow CLI benchmark - {os.cpu_count()} cores, {platform.machine()}, "
        f"Python {platform.python_version()}, load average now {load}"
    )
    width = max(len(metric) for metric, *_ in rows) + 2
    print(f"{'metric':<{width}}{'value':>10}  unit")
    for metric, value, unit, _ in rows:
        print(f"{metric:<{width}}{value:>10,.3f}  {unit}")


if __name__ == "__main__":
    main()
