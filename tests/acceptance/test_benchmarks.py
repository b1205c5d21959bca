"""The benchmark scripts, run as a reader runs them but at a tiny scale, on the real
servers: each finishes, and with ``--json`` prints one JSON object per figure with its
benchmark, metric, value and unit and the parameters it ran with. Speed is not
asserted (that is what the scripts are for); that they keep working is."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.mco_nodes import require_mcollective
from tests.rpc_fixtures import require_amqp, require_nats

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
EVERY_FIGURE = {"benchmark", "metric", "value", "unit", "n", "cores"}


def run_benchmark(script: str, *args: str) -> list[dict[str, Any]]:
    completed = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    figures = [json.loads(line) for line in completed.stdout.splitlines()]
    assert figures, "no figures printed"
    for figure in figures:
        assert figure.keys() >= EVERY_FIGURE, figure
        assert isinstance(figure["value"], int | float) and math.isfinite(figure["value"]), figure
    return figures


def databases_named(pg_url: str, prefix: str) -> list[str]:
    import psycopg

    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (prefix,)
        ).fetchall()
    return [name for (name,) in rows]


def values(figures: list[dict[str, Any]], **where: Any) -> dict[str, float]:
    return {
        f["metric"]: f["value"]
        for f in figures
        if all(f.get(key) == wanted for key, wanted in where.items())
    }


@pytest.mark.parametrize(
    "store", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]
)
def test_engine_benchmark(store: str, request: pytest.FixtureRequest) -> None:
    pg_url = request.getfixturevalue("pg_server") if store == "postgresql" else None
    figures = run_benchmark("engine.py", "--store", store, "--scale", "0.01")
    assert {f["store"] for f in figures} == {store}
    assert all(f["value"] > 0 for f in figures if f["unit"].endswith("/s")), figures
    if pg_url is not None:  # its databases are dropped again
        assert databases_named(pg_url, "mcoflow_bench") == []


MESSAGE_WORK = "signed message work per round trip, no transport (us)"


def _rpc(transport: str) -> dict[str, float]:
    figures = run_benchmark(
        "rpc.py", "--transport", transport, "--sequential", "40", "--parallel", "200",
        "--hosts", "10",
    )  # fmt: skip
    assert {f["transport"] for f in figures} == {transport}
    found = values(figures)
    assert found["round trips sequential"] > 0
    assert found["round trips 100 in flight"] > 0
    assert values(figures, n=10)["discover and call hosts"] > 0
    assert found[MESSAGE_WORK] > 0
    return found


def test_rpc_benchmark_in_memory() -> None:
    found = _rpc("memory")
    assert not any("raw" in metric for metric in found)  # no broker to compare with


@pytest.mark.parametrize(
    ("transport", "same_delivery"),
    [
        pytest.param("amqp", "raw transient+confirms", marks=pytest.mark.rabbitmq),
        pytest.param("nats", "raw jetstream", marks=pytest.mark.nats),
    ],
)
def test_rpc_benchmark_compares_with_the_raw_broker(transport: str, same_delivery: str) -> None:
    require_amqp() if transport == "amqp" else require_nats()
    found = _rpc(transport)
    for shape in ("sequential", "100 in flight"):
        ratio = f"round trips {shape} / {same_delivery}"
        assert found[ratio] == pytest.approx(
            100 * found[f"round trips {shape}"] / found[f"{same_delivery} {shape}"], rel=1e-3
        )
        # over all rounds, the ratio is the rounds' percentages weighted by mcoflow's time
        slowest, fastest = found[f"{ratio}, slowest round"], found[f"{ratio}, fastest round"]
        assert slowest - 0.01 <= found[ratio] <= fastest + 0.01
    # what the raw sequential rate would be with mcoflow's message work added to each trip
    raw_us = 1e6 / found[f"{same_delivery} sequential"]
    assert found[f"{same_delivery} sequential + that work, % of raw"] == pytest.approx(
        100 * raw_us / (raw_us + found[MESSAGE_WORK]), rel=1e-3
    )


@pytest.mark.rabbitmq
def test_rpc_benchmark_against_real_mcollective_nodes() -> None:
    require_mcollective()
    figures = run_benchmark(
        "rpc.py", "--transport", "mcollective", "--seconds", "1", "--inflight", "1,2",
        "--nodes", "1,2", "--discovery-timeout", "0.5",
    )  # fmt: skip
    assert {f["transport"] for f in figures} == {"mcollective"}
    assert all(f["rabbitmq"] != "unknown" and f["mcollective"] != "unknown" for f in figures)
    found = values(figures)
    for shape in ("1 in flight", "2 in flight"):
        ours = found[f"mcoflow -> mcollectived echo.run, {shape}"]
        raw = found[f"raw STOMP echo round trips, {shape}"]
        assert ours > 0 and raw > 0
        assert found[f"mcoflow / raw STOMP, {shape}"] == pytest.approx(100 * ours / raw, rel=1e-3)
        assert found[f"CPU ms per round trip, mcoflow {shape}: node"] > 0
    for count in (1, 2):
        discovery = values(figures, n=count)
        assert 0 < discovery[f"discover expect={count}, median of 5"] < 500  # ms
        assert discovery["discover timeout=0.5s (mco's way)"] >= 500  # it waits it out


@pytest.mark.postgresql
def test_hotpaths_benchmark(pg_server: str) -> None:
    found = values(run_benchmark("hotpaths.py", "--rounds", "2"))
    assert found["bulk UPDATE params, 500 rows: mcoflow dumper"] > 0
    assert found["Ed25519 check: libsodium (PyNaCl)"] > 0


def _fleet(*args: str) -> list[dict[str, Any]]:
    figures = run_benchmark("fleet.py", "--hosts", "20", "--plans", "20", "--repeat", "1", *args)
    plans = values(figures, figure="(a) 20 plans x 1 remote step")
    assert plans["plans/s (trigger -> all stopped)"] > 0
    job = values(figures, figure="(b) InstallAndRestart on 20 hosts")
    assert job["seconds trigger -> job stopped"] > 0
    return figures


def test_fleet_benchmark_embedded() -> None:
    figures = _fleet("--transport", "memory", "--store", "sqlite")
    assert {(f["transport"], f["store"]) for f in figures} == {("memory", "sqlite")}


@pytest.mark.postgresql
@pytest.mark.rabbitmq
def test_fleet_benchmark_on_rabbitmq_and_postgresql(pg_server: str) -> None:
    require_amqp()
    figures = _fleet("--agents", "1")
    assert {(f["transport"], f["store"]) for f in figures} == {("amqp", "postgresql")}
    # the executor is a process of its own here, measured
    job = values(figures, figure="(b) InstallAndRestart on 20 hosts")
    assert job["executor peak RSS"] > 0
    assert job["CPU ms per host: executor"] > 0
    # the rate every core busy would give at the CPU per host the parts used
    cpu_ms = sum(v for metric, v in job.items() if metric.startswith("CPU ms per host: "))
    assert job["hosts/s all cores allow at that CPU"] == pytest.approx(
        figures[0]["cores"] * 1000 / cpu_ms, rel=0.01
    )
    assert databases_named(pg_server, "mcoflow_fleet") == []


def test_cli_benchmark() -> None:
    found = values(run_benchmark("cli.py", "--runs", "2"))
    assert found["mcoflow --help"] > found["python start-up, nothing imported"] > 0
    assert found["import mcoflow.cli"] > 0
    cli = found["single-host job through the CLI"]
    api = found["single-host job through the Python API"]
    assert cli > 0 and api > 0
    # the overhead is the difference of the two medians, each figure read against its aim
    overhead = found["CLI overhead per job"]
    assert overhead == pytest.approx(cli - api, abs=2e-4)
    assert found["mcoflow --help / aim 0.3 s"] == pytest.approx(
        found["mcoflow --help"] / 0.3, abs=1e-3
    )
    assert found["CLI overhead per job / aim 0.4 s"] == pytest.approx(overhead / 0.4, abs=1e-3)


def test_fleet_pages_benchmark() -> None:
    found = run_benchmark("fleet_pages.py", "--hosts", "200", "--runs", "1")
    (summary,) = {f["summary"] for f in found}
    assert summary.startswith("200 hosts: 198 succeeded, 2 failed"), summary
    timed = values(found)
    assert {"api_detail_s", "page_s", "before_api_detail_hosts_s", "fleet_built_s"} <= timed.keys()
    assert all(value > 0 for value in timed.values()), timed


def test_templates_benchmark_embedded() -> None:
    figures = run_benchmark(
        "templates.py", "--transport", "memory", "--store", "sqlite", "--hosts", "10"
    )
    for key in ("t", "r"):
        ratio = values(figures, figure=f"ratio ({key})/(b) on 10 hosts")
        assert ratio["seconds, template / hand-written"] > 0, figures
        assert ratio["CPU per host, template / hand-written"] > 0, figures
    # each ratio is the template's figure over the hand-written one, from the same run
    seconds = {
        f["figure"][:3]: f["value"]
        for f in figures
        if f["metric"] == "seconds trigger -> job stopped"
    }
    assert set(seconds) == {"(b)", "(t)", "(r)"}, seconds
    ratio = values(figures, figure="ratio (r)/(b) on 10 hosts")["seconds, template / hand-written"]
    assert ratio == pytest.approx(seconds["(r)"] / seconds["(b)"], rel=0.01, abs=0.01)
