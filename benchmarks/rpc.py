"""RPC benchmark: round trips and simulated fleets over memory, RabbitMQ or NATS.

    python benchmarks/rpc.py --transport amqp|nats|memory [--json] [--hosts 1000,10000]
    python benchmarks/rpc.py --transport amqp|nats --agent-footprint [--json]
    python benchmarks/rpc.py --transport mcollective [--json]   # see rpc_mcollective.py

Figures: mcoflow round trips per second for one client and one agent (``rpcutil.ping``
to one named host), sequential and with 100 requests in flight; the time an agent
serving N simulated identities takes to start (subscribe every identity); the time
to discover N simulated hosts and to discover them and call ``package.status`` on
all of them; and, beside them, the raw broker round-trip rate with plain aio-pika /
nats-py and no mcoflow, and mcoflow's round trips as a percentage of the raw rate
sent the same way (AMQP: transient requests, replies to the client's own transient
queue, both with confirms; NATS: JetStream both ways). That raw rate and mcoflow's are
measured in alternating rounds (ten each) with both responders running, so a drift of
the machine's speed during the run weighs on both alike; the slowest and fastest
round's percentage show how much the machine moved.

Beside the ratio: the time mcoflow's signed messages take per round trip with no
transport at all (the request built, sealed and opened, the reply built, sealed and
opened: two Ed25519 signatures and two checks), and the percentage of the raw rate a
round trip would reach if that work were all mcoflow added to the raw one: what
signing and checking every message costs, which the raw round trip does not pay.

The hosts are the real agent daemon (``mcoflow.agent.daemon.AgentDaemon`` with
``simulate_hosts``): in a subprocess for RabbitMQ and NATS, in this process for the
memory transport. ``--reply-batch 1`` makes the agent sign and send every reply on
its own (as N separate hosts would) instead of batching the replies ready together.
The raw responder and round trips are in ``rpc_raw.py``.

``--agent-footprint`` prints instead what the agent costs a host (``agent_footprint.py``
says how each figure is taken): its import time, its start, its idle RSS, PSS and USS,
and its CPU idle and per request, on a ``mcoflow agent`` process with a host's
configuration on the real broker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from agent_footprint import Figure, agent_footprint, bench_client
from machine import python_work_ms
from rpc_agents import agent_config, host_names, serve_agent, start_agent
from rpc_raw import Child, RoundTrip, raw_round_trips

from mcoflow.agent.daemon import AgentDaemon
from mcoflow.rpc import (
    Filter,
    Signer,
    StatusCode,
    Verifier,
    build_reply,
    build_request,
    generate_keypair,
    open_replies,
    open_request,
    seal,
    transport_from_url,
)
from mcoflow.runtime import tune_gc

DEFAULT_URLS = {
    "memory": "memory://bench",
    "amqp": os.environ.get("MCOFLOW_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    "nats": os.environ.get("MCOFLOW_TEST_NATS_URL", "nats://127.0.0.1:4222"),
}
CORES = os.cpu_count() or 1


# -- measurements -----------------------------------------------------------------------


async def _timed(one: RoundTrip, count: int, inflight: int) -> float:
    """Seconds for ``count`` round trips, ``inflight`` at a time."""
    started = time.perf_counter()
    if inflight == 1:
        for n in range(count):
            await one(n)
    else:
        semaphore = asyncio.Semaphore(inflight)

        async def limited(n: int) -> None:
            async with semaphore:
                await one(n)

        await asyncio.gather(*(limited(n) for n in range(count)))
    return time.perf_counter() - started


async def rate(one: RoundTrip, count: int, inflight: int) -> float:
    for n in range(min(50, count)):  # warm up
        await one(n)
    return count / await _timed(one, count, inflight)


async def interleaved_rates(
    raw: RoundTrip, ours: RoundTrip, count: int, inflight: int, rounds: int = 10
) -> tuple[float, float, list[float]]:
    """The raw and mcoflow round-trip rates, measured in alternating rounds of
    ``count / rounds`` trips (the first of each pair alternating too), so that the
    machine's drift during the run weighs on both alike. Returns both rates over all
    rounds and mcoflow's rate as a percentage of raw's in each round (the spread)."""
    per_round = max(1, count // rounds)
    for n in range(min(50, count)):  # warm up
        await raw(n)
        await ours(n)
    raw_seconds = our_seconds = 0.0
    percentages = []
    for number in range(rounds):
        if number % 2:
            mine = await _timed(ours, per_round, inflight)
            theirs = await _timed(raw, per_round, inflight)
        else:
            theirs = await _timed(raw, per_round, inflight)
            mine = await _timed(ours, per_round, inflight)
        raw_seconds += theirs
        our_seconds += mine
        percentages.append(100 * theirs / mine)
    total = per_round * rounds
    return total / raw_seconds, total / our_seconds, percentages


async def mcoflow_figures(
    kind: str,
    url: str,
    keydir: Path,
    sequential: int,
    parallel: int,
    fleets: list[int],
    reply_batch: int | None,
    round_trips: bool = True,
    raw: tuple[str, RoundTrip] | None = None,
) -> list[Figure]:
    """``raw``: the raw round trip sent as mcoflow sends (and its label), measured in
    alternating rounds with mcoflow's."""
    figures: list[Figure] = []
    collective = f"bench{uuid.uuid4().hex[:8]}"
    transport = transport_from_url(url)
    await transport.connect()
    client = await bench_client(transport, keydir, collective, collective)

    async def with_fleet(count: int) -> tuple[Child | None, AgentDaemon | None, float]:
        if kind == "memory":
            agent_transport = transport_from_url(url)
            await agent_transport.connect()
            config = agent_config(url, keydir, collective, count, reply_batch)
            daemon, startup = await start_agent(config, agent_transport)
            return None, daemon, startup
        child = Child(
            __file__, "--serve", "--url", url, "--keydir", str(keydir), "--collective", collective,
            "--hosts", str(count), "--reply-batch", str(reply_batch or 0),
        )  # fmt: skip
        startup = await child.ready()
        return child, None, startup

    async def without_fleet(child: Child | None, daemon: AgentDaemon | None) -> None:
        if child is not None:
            await child.stop()
        if daemon is not None:
            await daemon.stop(grace=5)
            await daemon.transport.close()

    async def round_trip_figures(figures: list[Figure]) -> None:
        child, daemon, _ = await with_fleet(1)
        target = host_names(1)

        async def one(n: int) -> None:
            result = await client.call("rpcutil", "ping", identities=target, timeout=30)
            if not result.ok:
                raise RuntimeError(result.results[0].statusmsg)

        for shape, count, inflight in (
            ("sequential", sequential, 1),
            ("100 in flight", parallel, 100),
        ):
            if raw is None:
                figures.append((f"round trips {shape}", await rate(one, count, inflight), "1/s", 1))
                continue
            label, raw_one = raw
            theirs, ours, percentages = await interleaved_rates(raw_one, one, count, inflight)
            figures.append((f"{label} {shape}", theirs, "1/s", 1))
            figures.append((f"round trips {shape}", ours, "1/s", 1))
            ratio = f"round trips {shape} / {label}"
            figures.append((f"{ratio}, slowest round", min(percentages), "%", 1))
            figures.append((f"{ratio}, fastest round", max(percentages), "%", 1))
        await without_fleet(child, daemon)

    try:
        if round_trips:
            await round_trip_figures(figures)

        for count in fleets:
            child, daemon, startup = await with_fleet(count)
            figures.append(("agent start (subscribe all identities)", startup, "s", count))
            started = time.perf_counter()
            result = await client.call(
                "package",
                "status",
                {"package": "hello"},
                filter=Filter(),
                timeout=60,
                discovery_timeout=60,
                expect=count,
            )
            total = time.perf_counter() - started
            answered = len(result.stats.responded)
            if answered != count or len(result.stats.discovered) != count:
                raise RuntimeError(
                    f"{count} hosts: discovered {len(result.stats.discovered)}, answered {answered}"
                )
            if not result.ok:
                raise RuntimeError(f"{count} hosts: {result.results[0].statusmsg}")
            figures.append(("discover hosts", result.stats.discovery_seconds, "s", count))
            figures.append(("discover and call hosts", total, "s", count))
            await without_fleet(child, daemon)
    finally:
        await client.close()
        await transport.close()
    return figures


# The raw figure sent as mcoflow sends: transient requests (AMQP; JetStream on NATS) and
# replies to this client's own transient reply queue.
SAME_DELIVERY = {"amqp": "raw transient+confirms", "nats": "raw jetstream"}


def ratios_to_raw(rows: list[Figure], transport: str) -> list[Figure]:
    """mcoflow's round trips as a percentage of the raw rate with the same delivery."""
    values = {metric: value for metric, value, _, _ in rows}
    raw = SAME_DELIVERY.get(transport)
    ratios = []
    for shape in ("sequential", "100 in flight"):
        ours, theirs = values.get(f"round trips {shape}"), values.get(f"{raw} {shape}")
        if ours and theirs:
            ratios.append((f"round trips {shape} / {raw}", 100 * ours / theirs, "%", 1))
    return ratios


def message_work_us(keydir: Path, count: int = 2000) -> float:
    """Microseconds per round trip of mcoflow's own message work at both ends, with no
    transport: what the client and the agent do to every request and reply."""
    caller, host = Signer.from_file(keydir / "bench.key"), Signer.from_file(keydir / "hosts.key")
    at_host = Verifier({"bench": caller.public_key})
    at_client = Verifier({"hosts": host.public_key})
    started = time.perf_counter()
    for _ in range(count):  # a new id each time: no envelope is opened from a cache
        request = build_request(
            sender="bench", caller="bench", collective="bench", agent="rpcutil",
            action="ping", reply_to="mcoflow-bench.replies",
        )  # fmt: skip
        received = open_request(seal(request, caller), at_host)
        pong = {"pong": time.time()}
        reply = build_reply(received, sender="bench-host", statuscode=StatusCode.OK, data=pong)
        open_replies(seal(reply, host), at_client)
    return (time.perf_counter() - started) / count * 1e6


def message_work_figures(rows: list[Figure], transport: str, keydir: Path) -> list[Figure]:
    """The message work per round trip, and the share of the raw sequential rate left
    if it were all mcoflow added to a raw round trip."""
    work = message_work_us(keydir)
    figures = [("signed message work per round trip, no transport (us)", work, "us", 1)]
    same = SAME_DELIVERY.get(transport)
    raw = {metric: value for metric, value, _, _ in rows}.get(f"{same} sequential")
    if raw:
        raw_us = 1e6 / raw
        label = f"{same} sequential + that work, % of raw"
        figures.append((label, 100 * raw_us / (raw_us + work), "%", 1))
    return figures


async def rpc_figures(args: argparse.Namespace, url: str, keydir: Path) -> list[Figure]:
    """Everything but the agent's footprint: raw and mcoflow round trips, fleets, the
    message work and the ratios."""
    rows: list[Figure] = []
    async with contextlib.AsyncExitStack() as stack:
        raw: tuple[str, RoundTrip] | None = None
        if args.transport != "memory" and not args.no_raw and not args.no_round_trips:
            ones = await stack.enter_async_context(raw_round_trips(url))
            same = SAME_DELIVERY[args.transport]
            raw = (same, ones.pop(same))
            for label, one in ones.items():  # the others alone, for comparison
                rows.append((f"{label} sequential", await rate(one, args.sequential, 1), "1/s", 1))
                rows.append(
                    (f"{label} 100 in flight", await rate(one, args.parallel, 100), "1/s", 1)
                )
        rows.extend(
            await mcoflow_figures(
                args.transport,
                url,
                keydir,
                args.sequential,
                args.parallel,
                [int(n) for n in args.hosts.split(",") if n],
                args.reply_batch or None,
                round_trips=not args.no_round_trips,
                raw=raw,
            )
        )
    rows.extend(message_work_figures(rows, args.transport, keydir))
    rows.extend(ratios_to_raw(rows, args.transport))
    return rows


async def run(args: argparse.Namespace) -> list[Figure]:
    url = args.url or DEFAULT_URLS[args.transport]
    rows: list[Figure] = [
        ("machine: fixed Python work at the start (ms)", python_work_ms(), "ms", 1)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        keydir = Path(tmp)
        generate_keypair(keydir, "bench")
        generate_keypair(keydir, "hosts")
        if args.agent_footprint:
            rows.extend(await agent_footprint(args.transport, url, keydir))
        else:
            rows.extend(await rpc_figures(args, url, keydir))
    rows.append(("machine: fixed Python work at the end (ms)", python_work_ms(), "ms", 1))
    return rows


def print_figures(rows: list[Figure], args: argparse.Namespace) -> None:
    batch = args.reply_batch or "auto"
    if args.json:
        for metric, value, unit, n in rows:
            print(
                json.dumps(
                    {
                        "benchmark": "rpc",
                        "metric": metric,
                        "value": round(value, 3),
                        "unit": unit,
                        "transport": args.transport,
                        "n": n,
                        "cores": CORES,
                        "reply_batch": batch,
                    }
                )
            )
        return
    print(f"rpc benchmark  transport={args.transport}  cores={CORES}  reply_batch={batch}")
    width = max(len(metric) for metric, *_ in rows)
    print(f"{'metric':<{width}} {'n':>7} {'value':>12}  unit")
    for metric, value, unit, n in rows:
        print(f"{metric:<{width}} {n:>7} {value:>12.2f}  {unit}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--transport", choices=[*sorted(DEFAULT_URLS), "mcollective"], default="memory"
    )
    parser.add_argument("--url", help="broker URL (default: the test servers)")
    parser.add_argument("--json", action="store_true", help="one JSON object per figure")
    parser.add_argument("--sequential", type=int, default=500, help="sequential round trips")
    parser.add_argument("--parallel", type=int, default=3000, help="round trips, 100 in flight")
    parser.add_argument("--hosts", default="1000,10000", help="simulated fleet sizes")
    parser.add_argument("--no-raw", action="store_true", help="skip the raw broker figures")
    parser.add_argument(
        "--reply-batch",
        type=int,
        default=0,
        help="agent replies per signed envelope (default: the agent's own; 1: no batching)",
    )
    parser.add_argument(
        "--no-round-trips", action="store_true", help="only the simulated fleet figures"
    )
    parser.add_argument(
        "--agent-footprint",
        action="store_true",
        help="only the agent's footprint: import time, memory, CPU (amqp or nats)",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--keydir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--collective", help=argparse.SUPPRESS)
    transport = argparse.ArgumentParser(add_help=False)
    transport.add_argument("--transport")
    if transport.parse_known_args()[0].transport == "mcollective":  # options of its own
        import rpc_mcollective

        sys.exit(rpc_mcollective.main(sys.argv[1:]))
    args = parser.parse_args()
    if args.agent_footprint and args.transport == "memory":
        parser.error("--agent-footprint measures an agent process: --transport amqp or nats")
    logging.basicConfig(level=logging.WARNING)
    # the garbage collector as `mcoflow agent` and `mcoflow executor` set it
    tune_gc()
    if args.serve:
        asyncio.run(
            serve_agent(
                args.url, args.keydir, args.collective, int(args.hosts), args.reply_batch or None
            )
        )
    else:
        print_figures(asyncio.run(run(args)), args)


if __name__ == "__main__":
    main()
