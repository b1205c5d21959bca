"""Measuring a benchmark's run: the report it prints (with the machine it ran on), the CPU
each process used (from /proc), and py-spy recordings. Shared by the fleet and template
benchmarks."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# ---- reporting ----------------------------------------------------------------------------


@dataclass
class Report:
    store: str
    transport: str
    as_json: bool
    rows: list[tuple[str, str, float, str, int]] = field(default_factory=list)

    def add(self, benchmark: str, metric: str, value: float, unit: str, n: int) -> None:
        self.rows.append((benchmark, metric, value, unit, n))
        if self.as_json:
            record = {
                "benchmark": "fleet",
                "figure": benchmark,
                "metric": metric,
                "value": round(value, 4),
                "unit": unit,
                "store": self.store,
                "transport": self.transport,
                "n": n,
                "cores": os.cpu_count(),
            }
            print(json.dumps(record), flush=True)
        else:
            print(f"  {benchmark}: {metric} = {value:,.2f} {unit}", file=sys.stderr, flush=True)

    def table(self) -> None:
        out = sys.stdout if not self.as_json else sys.stderr
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        print(
            f"\nmcoflow fleet benchmark - store {self.store}, transport {self.transport}, "
            f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
            f"load average now {load}",
            file=out,
        )
        figures = max([len("figure"), *(len(row[0]) for row in self.rows)]) + 2
        metrics = max([len("metric"), *(len(row[1]) for row in self.rows)]) + 2
        print(f"{'figure':<{figures}}{'metric':<{metrics}}{'value':>12}  unit", file=out)
        for benchmark, metric, value, unit, _ in self.rows:
            print(f"{benchmark:<{figures}}{metric:<{metrics}}{value:>12,.2f}  {unit}", file=out)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---- processes ------------------------------------------------------------------------------


def status_kib(path: Path, key: str) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    return 0


@contextlib.contextmanager
def profiled(pid: int, directory: Path | None, name: str) -> Any:
    """py-spy recording of ``pid`` while the block runs (if asked for and installed)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if directory is None or not Path(spy).exists():
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / f"{name}.txt"
    recorder = subprocess.Popen(
        [spy, "record", "-p", str(pid), "-f", "raw", "-o", str(out), "-r", "100"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)
        try:
            recorder.wait(timeout=60)
        except subprocess.TimeoutExpired:
            recorder.kill()
        log(f"profile of {name}: {out}")


TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def _pids_named(*names: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() in names:
                    pids.append(int(entry.name))
    return pids


class CpuMeter:
    """CPU seconds each part of the run used while the block ran: where a figure's time
    went on this machine, where every part shares the same cores."""

    def __init__(self, executor: int, agents: Sequence[int]) -> None:
        self.groups: dict[str, list[int]] = {
            "executor": [executor],
            "agents": list(agents),
            "broker": _pids_named("beam.smp"),
            # each connection is a process of its own; new ones appear while it runs
            "database": _pids_named("postgres"),
            "benchmark": [os.getpid()],
        }
        self.before = {pid: _cpu_seconds(pid) for pids in self.groups.values() for pid in pids}

    def used(self) -> dict[str, float]:
        self.groups["database"] = sorted({*self.groups["database"], *_pids_named("postgres")})
        return {
            group: sum(_cpu_seconds(pid) - self.before.get(pid, 0.0) for pid in pids)
            for group, pids in self.groups.items()
        }


def report_cpu(report: Report, figure: str, used: dict[str, float], per: int, what: str) -> None:
    for group, seconds in used.items():
        report.add(figure, f"CPU ms per {what}: {group}", seconds * 1000 / per, "ms", per)
    # the rate at which this CPU per plan (or host) would keep every core busy: how far
    # the figure is from what the machine's cores allow, whatever the wall clock did
    cores = os.cpu_count() or 1
    total = sum(used.values())
    if total > 0:
        rate = cores * per / total
        report.add(figure, f"{what}s/s all cores allow at that CPU", rate, f"{what}s/s", per)
