"""How long a big fleet's plan detail takes: the REST API's `GET /api/v1/plans/{id}`, its
`/hosts` pages and the plan page, against a fleet of N hosts (1 in 100 failed, waiting
for the operator). "before" re-runs the previous code path (every child plan loaded,
then each failed host's steps read one host at a time, all rows serialized) on the same
database, for comparison. Medians of several runs.

    .venv/bin/python benchmarks/fleet_pages.py --hosts 20000 [--db URL] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel

from mcoflow.engine import Action, Event, PlanState, SubPlan, WithSubPlans, World
from mcoflow.engine.child_status import ChildCounts, child_status
from mcoflow.engine.records import Plan
from mcoflow.engine.states import PlanResult, StepState
from mcoflow.testing import engine_harness
from mcoflow.web import AuthSettings, create_app
from mcoflow.web.schemas import HostResultOut


class BenchHost(Action):
    """A host's job, done at once; every 100th host fails."""

    class Input(BaseModel):
        host: str
        fail: bool = False

    def run(self, event: Event | None = None) -> None:
        if self.input.fail:
            raise RuntimeError(f"package broken on {self.input.host}")
        self.output["ok"] = True


class BenchFleet(WithSubPlans):
    class Input(BaseModel):
        hosts: list[str]

    def create_sub_plans(self) -> list[SubPlan]:
        return [
            SubPlan(BenchHost, {"host": h, "fail": i % 100 == 7}, label=h)
            for i, h in enumerate(self.input.hosts)
        ]

    def sub_plans_per_run(self) -> int:
        return 5000


async def before_detail(world: World, plan_id: str) -> int:
    """The previous `show_plan`'s host part: every child, one steps read per failed one."""
    children = await world.store.child_plans(plan_id)
    hosts = []
    for c in children:
        message = c.error or ""
        if not message and (c.result is PlanResult.ERROR or c.state is PlanState.PAUSED):
            errors = [s.error for s in await world.steps(c.id) if s.state is StepState.ERROR]
            message = str(errors[0].get("message", "")) if errors and errors[0] else ""
        hosts.append(
            HostResultOut(
                plan_id=c.id,
                host=c.label,
                state=c.state,
                result=c.result,
                status=child_status(c).value,
                message=message,
            ).model_dump(mode="json")
        )
    counts = ChildCounts.of(children)
    return len(json.dumps({"hosts": hosts, "counts": counts.as_dict()}))


async def before_page(world: World, plan_id: str) -> int:
    """The previous page snapshot's host part: every child, the first 1000 as rows."""
    children: list[Plan] = await world.store.child_plans(plan_id)
    rows = []
    for c in children[:1000]:
        message = c.error or ""
        if not message and (c.result is PlanResult.ERROR or c.state is PlanState.PAUSED):
            errors = [s.error for s in await world.steps(c.id) if s.state is StepState.ERROR]
            message = str(errors[0].get("message", "")) if errors and errors[0] else ""
        rows.append({"plan_id": c.id, "host": c.label, "status": child_status(c).value,
                     "message": message})  # fmt: skip
    counts = ChildCounts.of(children)
    return len(json.dumps({"hosts": rows, "counts": counts.as_dict()}))


async def median(runs: int, work: Callable[[], Awaitable[Any]]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        await work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def main(hosts: int, url: str | None, runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="mcoflow-bench-") as tmp:
        db = url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        async with engine_harness(db) as harness:
            world = harness.world
            start = time.perf_counter()
            names = [f"host-{i:06d}" for i in range(hosts)]
            plan = await world.trigger(BenchFleet, hosts=names)
            plan = await world.wait(plan.id, timeout=3600)
            built = time.perf_counter() - start
            counts = await world.store.child_counts(plan.id)
            app = create_app(world, auth=AuthSettings.loopback(), jobs=None, broker_state=None)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:

                async def get(path: str) -> None:
                    r = await c.get(path)
                    r.raise_for_status()

                pid = plan.id
                figures = {
                    "api_detail_s": await median(runs, lambda: get(f"/api/v1/plans/{pid}")),
                    "api_hosts_last_page_s": await median(
                        runs, lambda: get(f"/api/v1/plans/{pid}/hosts?offset={hosts - 100}")
                    ),
                    "api_failed_hosts_s": await median(
                        runs, lambda: get(f"/api/v1/plans/{pid}/hosts?status=failed")
                    ),
                    "page_s": await median(runs, lambda: get(f"/plans/{pid}")),
                    "page_failed_filter_s": await median(
                        runs, lambda: get(f"/plans/{pid}?hosts=error")
                    ),
                    "before_api_detail_hosts_s": await median(
                        runs, lambda: before_detail(world, pid)
                    ),
                    "before_page_hosts_s": await median(runs, lambda: before_page(world, pid)),
                }
    return {
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, "
        f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}",
        "hosts": hosts,
        "database": "postgresql" if url and url.startswith("postgresql") else "sqlite",
        "fleet_built_s": round(built, 1),
        "summary": counts.summary(),
        "runs": runs,
    } | {k: round(v, 4) for k, v in figures.items()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=20_000)
    parser.add_argument("--db", default=None, help="database URL (default: a fresh SQLite file)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    result = asyncio.run(main(options.hosts, options.db, options.runs))
    if options.json:
        # one object per figure, as the other benchmarks print them
        for key, value in result.items():
            if key.endswith("_s"):
                figure = {"benchmark": "fleet_pages", "metric": key, "value": value, "unit": "s",
                          "n": options.runs, "cores": os.cpu_count(), "hosts": options.hosts,
                          "summary": result["summary"]}  # fmt: skip
                sys.stdout.write(json.dumps(figure) + "\n")
    else:
        for key, value in result.items():
            print(f"{key:>28}: {value}")
