"""Acceptance (issue 16): a job on 100,000 hosts does not stall `mcoflow serve`. While
the request is parsed and planned, and while the executor then creates the fleet's
sub-plans, the console keeps answering within a second (the same event loop runs the
web, the executor and the in-process agents)."""

from __future__ import annotations

import json
import statistics
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from serve_process import mcoflow_serve, serve_env

HOSTS = 100_000
# how long the console is probed once the job was accepted: its sub-plans are being
# created meanwhile, a chunk per executor run
AFTER_ACCEPTED = 20.0
PROBE_EVERY = 0.1
MAX_LATENCY = 1.0


def _get(url: str) -> tuple[int, float]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as response:
        response.read()
        return response.status, time.perf_counter() - started


def _post(url: str, body: dict[str, object]) -> tuple[int, dict[str, object], float]:
    started = time.perf_counter()
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.status, json.loads(response.read()), time.perf_counter() - started


def test_a_100000_host_job_leaves_the_console_answering(tmp_path: Path) -> None:
    # the names were never discovered: the setting lets the job be sent anyway
    env = serve_env(tmp_path, {"allow_unknown_hosts": True})
    args = ["--no-local-agent", "--log-level", "warning"]
    with mcoflow_serve(tmp_path, args, env) as served, ThreadPoolExecutor(1) as pool:
        body = {
            "kind": "install",
            "hosts": [f"host-{n:06d}.example.com" for n in range(HOSTS)],
            "parameter": "curl",
            "concurrency": 10,
        }
        big = pool.submit(_post, f"{served.url}/api/v1/jobs", body)
        latencies: dict[str, list[float]] = {"/api/v1/plans": [], "/plans": []}
        accepted_at: float | None = None
        stop = threading.Event()
        while not stop.is_set():
            for path, seen in latencies.items():
                status, seconds = _get(served.url + path)
                assert status == 200
                seen.append(seconds)
            if big.done() and accepted_at is None:
                accepted_at = time.monotonic()
            if accepted_at is not None and time.monotonic() > accepted_at + AFTER_ACCEPTED:
                stop.set()
            time.sleep(PROBE_EVERY)
        status, plan, post_seconds = big.result()
        assert status == 201, plan
        assert plan["label"] == f"install curl on {HOSTS} hosts"
        with urllib.request.urlopen(
            f"{served.url}/api/v1/plans?parent={plan['id']}&top_level=false&limit=1", timeout=30
        ) as response:
            created = json.loads(response.read())["total"]
        report = {
            "post_seconds": round(post_seconds, 2),
            "sub_plans_created": created,
            **{
                path: {
                    "n": len(seen),
                    "median": round(statistics.median(seen), 3),
                    "max": round(max(seen), 3),
                }
                for path, seen in latencies.items()
            },
        }
        print(f"100,000-host job: {json.dumps(report)}")
        assert created > 0, f"the fleet creates its sub-plans meanwhile: {report}"
        for path, seen in latencies.items():
            assert max(seen) < MAX_LATENCY, f"{path} answered in {max(seen):.2f} s: {report}"
