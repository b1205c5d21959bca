"""RPC benchmark on the MCollective transport: mcoflow against real ``mcollectived`` nodes.

    python benchmarks/rpc.py --transport mcollective [--json] [--seconds 10]
        [--inflight 1,8] [--nodes 1,4] [--discovery-timeout 2]

Figures, from one client process:
- round trips per second from mcoflow to one real node (``echo.run``, a fixed message):
  ``RpcClient.build`` + ``send`` to the node's identity and the reply taken by the
  ``on_reply`` callback (no ``DirectClient.call`` bookkeeping), so what is measured is
  the psk Marshal request and reply, the STOMP transport and the Ruby node;
- beside it, the raw STOMP round trip measured the same way: the same ``StompConnection``
  code, the request (as many bytes as mcoflow's sealed request) sent to the collective's
  directed exchange with a ``reply-to`` on this connection's ``/temp-queue/`` (as
  mcoflow's replies come here), echoed by a Python responder in a subprocess, no
  Marshal, no psk. Both are measured in alternating timed rounds at each number of
  requests in flight, and mcoflow's rate is given as a percentage of the raw one;
- the CPU the node, the broker and this process used per round trip in those rounds;
- discovery: the time ``discover(expect=N)`` takes to hear from all N running nodes
  (median of a few), and a timeout-based discovery (MCollective's way: wait it out).

The nodes are ``tests/mco_nodes.py``'s ``McoCollective``: a collective of their own on
the broker (RabbitMQ's STOMP plugin, vhost /mcollective), deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from machine import python_work_ms
from measure import _cpu_seconds, _pids_named
from rpc_raw import Child

from mcoflow.rpc import StatusCode
from mcoflow.rpc.client import RpcClient
from mcoflow.rpc.mcollective.connection import StompConnection
from mcoflow.rpc.mcollective.options import McollectiveOptions
from mcoflow.rpc.mcollective.stomp import Frame
from mcoflow.rpc.messages import Reply
from mcoflow.rpc.security import Signer
from mcoflow.rpc.transport import TransportError
from mcoflow.rpc.transports import transport_from_url
from mcoflow.rpc.transports.mcollective import parse_mcollective_url
from mcoflow.runtime import tune_gc
from mcoflow.testing import DirectClient
from tests.mco_broker import _missing
from tests.mco_nodes import BrokerSettings, McoCollective

Figure = tuple[str, float, str, int]
OneTrip = Callable[[], Awaitable[None]]
CORES = os.cpu_count() or 1
MESSAGE = "x" * 100  # the echo agent's msg
RAW_IDENTITY = "raw-stomp-echo"
ROUNDS = 10
WAIT = 30.0  # seconds a round trip may take before the benchmark gives up


# -- the machine -------------------------------------------------------------------------


def rabbitmq_version(broker: BrokerSettings) -> str:
    """From the ``server`` header of the broker's STOMP CONNECTED frame."""
    frame = (
        f"CONNECT\naccept-version:1.2\nhost:{broker.vhost}\n"
        f"login:{broker.user}\npasscode:{broker.password}\n\n\0"
    )
    with socket.create_connection((broker.host, broker.stomp_port), timeout=5) as sock:
        sock.sendall(frame.encode())
        answer = sock.recv(4096).decode(errors="replace")
    for line in answer.split("\n\n")[0].splitlines():
        if line.startswith("server:"):
            return line.removeprefix("server:").replace("RabbitMQ/", "")
    return "unknown"


def mcollective_version() -> str:
    done = subprocess.run(
        ["ruby", "-e", 'require "mcollective"; puts MCollective::VERSION'],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"


@dataclass(frozen=True)
class Machine:
    cores: int
    python: str
    rabbitmq: str
    mcollective: str

    def __str__(self) -> str:
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        return (
            f"cores={self.cores}  {platform.machine()}  Python {self.python}  "
            f"RabbitMQ {self.rabbitmq}  MCollective {self.mcollective}  load average now {load}"
        )


# -- the raw STOMP responder (a subprocess) ------------------------------------------------


async def serve_raw(url: str) -> None:
    """Echo every message sent to RAW_IDENTITY's directed queue to its reply-to."""
    parsed = parse_mcollective_url(url)
    connection = StompConnection(parsed.servers)

    async def echo(frame: Frame) -> None:
        await connection.send(frame.header("reply-to"), frame.body)

    await connection.connect()
    destination = f"/exchange/{parsed.collective}_directed/{RAW_IDENTITY}"
    await connection.subscribe(destination, echo, ack="auto", prefetch=100)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await connection.close()


# -- round trips ---------------------------------------------------------------------------


class Waiting:
    """Futures of the round trips in flight, by id."""

    def __init__(self) -> None:
        self.futures: dict[str, asyncio.Future[Any]] = {}

    def add(self, key: str) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.futures[key] = future
        return future

    def resolve(self, key: str, value: object) -> None:
        future = self.futures.pop(key, None)
        if future is not None and not future.done():
            future.set_result(value)


def mcoflow_trip(client: RpcClient, waiting: Waiting, identity: str) -> OneTrip:
    async def one() -> None:
        request = client.build("echo", "run", {"msg": MESSAGE}, ttl=WAIT)
        future = waiting.add(request.id)
        await client.send(request, [identity])
        try:
            reply: Reply = await asyncio.wait_for(future, WAIT)
        except TimeoutError:
            raise RuntimeError(f"no echo.run reply from {identity} within {WAIT:g} s") from None
        if reply.statuscode is not StatusCode.OK or reply.data.get("msg") != MESSAGE:
            raise RuntimeError(f"echo.run on {identity}: {reply.statusmsg} {reply.data}")

    return one


def raw_trip(connection: StompConnection, collective: str, size: int) -> OneTrip:
    waiting = Waiting()

    async def on_reply(frame: Frame) -> None:
        waiting.resolve(frame.body[:32].decode(), None)

    replies = connection.temporary_queue(f"raw-bench.{uuid.uuid4().hex[:12]}", on_reply)
    destination = f"/exchange/{collective}_directed/{RAW_IDENTITY}"
    headers = {"reply-to": replies.destination, "expiration": str(int((WAIT + 10) * 1000))}
    padding = b"x" * max(0, size - 32)

    async def one() -> None:
        key = uuid.uuid4().hex
        future = waiting.add(key)
        await connection.send(destination, key.encode() + padding, headers)
        try:
            await asyncio.wait_for(future, WAIT)
        except TimeoutError:
            raise RuntimeError(f"no raw STOMP echo within {WAIT:g} s") from None

    return one


@dataclass
class Side:
    """One kind of round trip's totals over the rounds."""

    trips: int = 0
    seconds: float = 0.0
    cpu: dict[str, float] | None = None


def cpu_now(groups: dict[str, list[int]]) -> dict[str, float]:
    return {group: sum(_cpu_seconds(pid) for pid in pids) for group, pids in groups.items()}


async def timed_round(
    one: OneTrip, seconds: float, inflight: int, side: Side, groups: dict[str, list[int]]
) -> float:
    """Round trips for ``seconds``, ``inflight`` at a time; adds to ``side``; the rate."""
    before = cpu_now(groups)
    started = time.perf_counter()
    deadline = started + seconds
    done = 0

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await one()
            done += 1

    await asyncio.gather(*(worker() for _ in range(inflight)))
    elapsed = time.perf_counter() - started
    after = cpu_now(groups)
    side.trips += done
    side.seconds += elapsed
    side.cpu = {g: (side.cpu or {}).get(g, 0.0) + after[g] - before[g] for g in groups}
    return done / elapsed


async def compared_rates(
    raw: OneTrip, ours: OneTrip, seconds: float, inflight: int, groups: dict[str, list[int]]
) -> list[Figure]:
    """Raw and mcoflow's rates in alternating rounds (which goes first alternating too)."""
    for _ in range(20):  # warm up both paths
        await raw()
        await ours()
    theirs, mine, percentages = Side(), Side(), []
    for number in range(ROUNDS):
        pair = [(raw, theirs), (ours, mine)]
        rates = [
            await timed_round(one, seconds / ROUNDS / 2, inflight, side, groups)
            for one, side in (pair if number % 2 == 0 else pair[::-1])
        ]
        raw_rate, our_rate = rates if number % 2 == 0 else rates[::-1]
        percentages.append(100 * our_rate / raw_rate)
    shape = f"{inflight} in flight"
    raw_rate, our_rate = theirs.trips / theirs.seconds, mine.trips / mine.seconds
    figures: list[Figure] = [
        (f"raw STOMP echo round trips, {shape}", raw_rate, "1/s", 1),
        (f"mcoflow -> mcollectived echo.run, {shape}", our_rate, "1/s", 1),
        (f"mcoflow / raw STOMP, {shape}", 100 * our_rate / raw_rate, "%", 1),
        (f"mcoflow / raw STOMP, {shape}, slowest round", min(percentages), "%", 1),
        (f"mcoflow / raw STOMP, {shape}, fastest round", max(percentages), "%", 1),
    ]
    for label, side, other in (("raw STOMP", theirs, "node"), ("mcoflow", mine, "raw responder")):
        for group, used in (side.cpu or {}).items():
            if group == other:  # not part of this kind of round trip
                continue
            per_trip = used * 1000 / max(side.trips, 1)
            figures.append((f"CPU ms per round trip, {label} {shape}: {group}", per_trip, "ms", 1))
    node = (mine.cpu or {}).get("node", 0.0)
    figures.append(
        (f"node CPU busy in the mcoflow rounds, {shape}", 100 * node / mine.seconds, "%", 1)
    )
    return figures


async def round_trip_figures(
    nodes: McoCollective, url: str, seconds: float, inflights: list[int]
) -> list[Figure]:
    node = nodes.nodes[0]
    assert node.pid is not None
    groups = {
        "node": [node.pid],
        "broker": _pids_named("beam.smp"),
        "this process": [os.getpid()],
    }
    transport = transport_from_url(url, mcollective=McollectiveOptions(psk=nodes.psk))
    await transport.connect()
    waiting = Waiting()

    async def on_reply(reply: Reply) -> None:
        waiting.resolve(reply.request_id, reply)

    client = RpcClient(
        transport,
        Signer("mcoflow", Ed25519PrivateKey.generate()),
        collective="mcoflow",
        reply_to=f"mcoflow-bench-{uuid.uuid4().hex[:8]}",
        transient_replies=True,  # a /temp-queue/ of the connection, as the raw side's
        on_reply=on_reply,
    )
    size = len(client.wire.seal(client.build("echo", "run", {"msg": MESSAGE})))
    responder = Child(__file__, "--serve-raw", "--url", url)
    raw_connection = StompConnection(parse_mcollective_url(url).servers)
    figures: list[Figure] = [("request size on the wire (both)", size, "bytes", 1)]
    try:
        await responder.ready()
        groups["raw responder"] = [responder.process.pid]
        await raw_connection.connect()
        await client.start()
        raw = raw_trip(raw_connection, nodes.broker.collective, size)
        ours = mcoflow_trip(client, waiting, node.identity)
        for inflight in inflights:
            figures.extend(await compared_rates(raw, ours, seconds, inflight, groups))
    finally:
        await client.close()
        await transport.close()
        await raw_connection.close()
        await responder.stop()
    return figures


# -- discovery -----------------------------------------------------------------------------


async def discovery_figures(
    nodes: McoCollective, url: str, timeout: float, repeat: int = 5
) -> list[Figure]:
    count = len(nodes.nodes)
    transport = transport_from_url(url, mcollective=McollectiveOptions(psk=nodes.psk))
    await transport.connect()
    times = []
    try:
        async with DirectClient(
            transport,
            Signer("mcoflow", Ed25519PrivateKey.generate()),
            collective="mcoflow",
            reply_to=f"mcoflow-bench-{uuid.uuid4().hex[:8]}",
            transient_replies=True,
        ) as client:
            for attempt in range(repeat + 1):  # the first one warms up
                started = time.perf_counter()
                found = await client.discover(timeout=WAIT, expect=count)
                if attempt:
                    times.append(time.perf_counter() - started)
                if len(found) != count:
                    raise RuntimeError(f"discovery found {found}, not all {count} nodes")
            started = time.perf_counter()
            found = await client.discover(timeout=timeout)
            waited = time.perf_counter() - started
            if len(found) != count:
                raise RuntimeError(f"discovery ({timeout:g} s) found {found}, not {count} nodes")
    finally:
        await transport.close()
    return [
        (
            f"discover expect={count}, median of {repeat}",
            statistics.median(times) * 1000,
            "ms",
            count,
        ),
        (f"discover expect={count}, slowest of {repeat}", max(times) * 1000, "ms", count),
        (f"discover timeout={timeout:g}s (mco's way)", waited * 1000, "ms", count),
    ]


# -- the run -------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> list[Figure]:
    rows: list[Figure] = [
        ("machine: fixed Python work at the start (ms)", python_work_ms(), "ms", 1)
    ]
    inflights = [int(n) for n in args.inflight.split(",") if n]
    for number, count in enumerate(int(n) for n in args.nodes.split(",") if n):
        started = time.perf_counter()
        nodes = McoCollective(count)
        async with nodes:
            rows.append(
                ("nodes start (mcollectived subscribed)", time.perf_counter() - started, "s", count)
            )
            url = nodes.broker.mcoflow_url
            if number == 0 and args.seconds > 0:
                rows.extend(await round_trip_figures(nodes, url, args.seconds, inflights))
            rows.extend(await discovery_figures(nodes, url, args.discovery_timeout))
    rows.append(("machine: fixed Python work at the end (ms)", python_work_ms(), "ms", 1))
    return rows


def print_figures(rows: list[Figure], machine: Machine, as_json: bool) -> None:
    if as_json:
        for metric, value, unit, n in rows:
            record = {
                "benchmark": "rpc",
                "metric": metric,
                "value": round(value, 3),
                "unit": unit,
                "transport": "mcollective",
                "n": n,
                "cores": machine.cores,
                "python": machine.python,
                "rabbitmq": machine.rabbitmq,
                "mcollective": machine.mcollective,
            }
            print(json.dumps(record))
        return
    print(f"rpc benchmark  transport=mcollective  {machine}")
    width = max(len(metric) for metric, *_ in rows)
    print(f"{'metric':<{width}} {'n':>7} {'value':>12}  unit")
    for metric, value, unit, n in rows:
        print(f"{metric:<{width}} {n:>7} {value:>12.2f}  {unit}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--transport", choices=["mcollective"], default="mcollective")
    parser.add_argument("--json", action="store_true", help="one JSON object per figure")
    parser.add_argument(
        "--seconds",
        type=float,
        default=20.0,
        help="round-trip time per in-flight level, both kinds",
    )
    parser.add_argument("--inflight", default="1,8", help="round trips in flight, each level")
    parser.add_argument("--nodes", default="1,4", help="nodes running, discovered each time")
    parser.add_argument(
        "--discovery-timeout", type=float, default=2.0, help="the timeout-based discovery's wait"
    )
    parser.add_argument("--serve-raw", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    tune_gc()
    if args.serve_raw:
        asyncio.run(serve_raw(args.url))
        return 0
    broker = BrokerSettings()
    why = _missing(broker)
    if why is not None:
        print(f"rpc_mcollective: real MCollective nodes cannot run here: {why}", file=sys.stderr)
        return 2
    machine = Machine(
        CORES, platform.python_version(), rabbitmq_version(broker), mcollective_version()
    )
    try:
        rows = asyncio.run(run(args))
    except (RuntimeError, TransportError) as exc:  # e.g. the broker went away meanwhile
        print(f"rpc_mcollective: the benchmark failed: {exc}", file=sys.stderr)
        return 1
    print_figures(rows, machine, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
