"""RPC benchmark: round trips and simulated fleets over memory, RabbitMQ or NATS.

    python benchmarks/rpc.py --transport amqp|nats|memory [--json] [--url URL]

Figures: mcoflow round trips per second for one client and one responder process,
sequential and with 100 requests in flight; the time to discover and call 1,000 and
10,000 simulated hosts (one responder process answering for all of them); and, beside
them, the raw broker round-trip rate with plain aio-pika / nats-py and no mcoflow.

The simulated hosts are served by ``mcoflow.rpc.Responder`` with an echo action (the
agent daemon's ``simulated`` provider adds package bookkeeping on top of the same path).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from mcoflow.rpc import (
    Filter,
    HostProfile,
    Outcome,
    Request,
    Responder,
    RpcClient,
    Signer,
    Transport,
    Verifier,
    generate_keypair,
    transport_from_url,
)
from mcoflow.rpc.responder import ping

DEFAULT_URLS = {
    "memory": "memory://bench",
    "amqp": os.environ.get("MCOFLOW_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    "nats": os.environ.get("MCOFLOW_TEST_NATS_URL", "nats://127.0.0.1:4222"),
}
CORES = os.cpu_count() or 1
RAW_QUEUE = "mcoflow-bench.raw"


async def echo(request: Request, host: HostProfile) -> Outcome:
    return Outcome(data={"identity": host.identity})


ACTIONS = {"rpcutil": {"ping": ping}, "echo": {"run": echo}}


def host_names(count: int) -> list[str]:
    return [f"sim{n:05}.bench" for n in range(count)]


# -- responder side (also run as a subprocess) --------------------------------------


async def start_responder(
    transport: Transport, keydir: Path, collective: str, count: int
) -> Responder:
    responder = Responder(
        transport,
        collective=collective,
        signer=Signer.from_file(keydir / "hosts.key"),
        verifier=Verifier({"bench": Signer.from_file(keydir / "bench.key").public_key}),
        actions=ACTIONS,
        hosts=[HostProfile(identity=name) for name in host_names(count)],
    )
    # Subscriptions are independent; declaring them concurrently saves minutes at 10,000.
    semaphore = asyncio.Semaphore(200)

    async def one(host: HostProfile) -> None:
        async with semaphore:
            sub = await transport.subscribe_host(
                identity=host.identity,
                collective=collective,
                agents=responder.agents,
                handler=responder._handler_for(host),
            )
            responder._subscriptions.append(sub)

    await asyncio.gather(*(one(h) for h in responder.hosts))
    return responder


async def forget_hosts(transport: Transport, collective: str, count: int) -> None:
    semaphore = asyncio.Semaphore(200)

    async def one(identity: str) -> None:
        async with semaphore:
            with contextlib.suppress(Exception):
                await transport.forget_host(identity=identity, collective=collective)

    await asyncio.gather(*(one(i) for i in host_names(count)))


async def serve(url: str, keydir: Path, collective: str, count: int) -> None:
    transport = transport_from_url(url)
    await transport.connect()
    responder = await start_responder(transport, keydir, collective, count)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await responder.stop()
    await forget_hosts(transport, collective, count)
    await transport.close()


async def serve_raw(url: str) -> None:
    if url.startswith("amqp"):
        import aio_pika

        connection = await aio_pika.connect(url)
        channel = await connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=256)
        for persistent in (False, True):
            queue = await channel.declare_queue(f"{RAW_QUEUE}.{persistent}", durable=persistent)
            mode = aio_pika.DeliveryMode.PERSISTENT if persistent else None

            def make(m: Any) -> Callable[[Any], Awaitable[None]]:
                async def on_request(message: Any) -> None:
                    await channel.default_exchange.publish(
                        aio_pika.Message(message.body, delivery_mode=m), message.reply_to
                    )
                    await message.ack()

                return on_request

            await queue.consume(make(mode))
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await connection.close()
        return
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name="MCOFLOW_BENCH_RAW", subjects=[f"{RAW_QUEUE}.js.>"])

    async def core_reply(msg: Any) -> None:
        await nc.publish(msg.reply, msg.data)

    async def js_reply(msg: Any) -> None:
        await js.publish(f"{RAW_QUEUE}.js.rep", msg.data)
        await msg.ack()

    await nc.subscribe(f"{RAW_QUEUE}.core", cb=core_reply)
    await js.subscribe(f"{RAW_QUEUE}.js.req", durable="raw_req", cb=js_reply, manual_ack=True)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await nc.close()


class Child:
    """A responder subprocess; it stops when its stdin closes."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    async def ready(self) -> None:
        assert self.process.stdout is not None
        line = await asyncio.get_running_loop().run_in_executor(None, self.process.stdout.readline)
        if line.strip() != "ready":
            raise RuntimeError(f"responder did not start: {line!r}")

    async def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        await asyncio.get_running_loop().run_in_executor(None, self.process.wait, 600)


# -- measurements -----------------------------------------------------------------------


async def rate(one: Callable[[int], Awaitable[None]], count: int, inflight: int) -> float:
    semaphore = asyncio.Semaphore(inflight)

    async def limited(n: int) -> None:
        async with semaphore:
            await one(n)

    for n in range(min(50, count)):  # warm up
        await one(n)
    started = time.perf_counter()
    if inflight == 1:
        for n in range(count):
            await one(n)
    else:
        await asyncio.gather(*(limited(n) for n in range(count)))
    return count / (time.perf_counter() - started)


async def raw_rates(url: str, sequential: int, parallel: int) -> dict[str, float]:
    child = Child("--serve-raw", "--url", url)
    await child.ready()
    figures: dict[str, float] = {}
    try:
        if url.startswith("amqp"):
            import aio_pika

            connection = await aio_pika.connect(url)
            channel = await connection.channel(publisher_confirms=True)
            for persistent in (False, True):
                reply_queue = await channel.declare_queue(exclusive=True, auto_delete=True)
                waiting: dict[bytes, asyncio.Future[None]] = {}

                async def on_reply(
                    message: Any, waiting: dict[bytes, asyncio.Future[None]] = waiting
                ) -> None:
                    waiting.pop(message.body).set_result(None)
                    await message.ack()

                await reply_queue.consume(on_reply)
                mode = aio_pika.DeliveryMode.PERSISTENT if persistent else None

                async def one(
                    n: int,
                    waiting: dict[bytes, asyncio.Future[None]] = waiting,
                    mode: Any = mode,
                    name: str = reply_queue.name,
                    persistent: bool = persistent,
                ) -> None:
                    key = uuid.uuid4().bytes
                    future = waiting[key] = asyncio.get_running_loop().create_future()
                    await channel.default_exchange.publish(
                        aio_pika.Message(key, delivery_mode=mode, reply_to=name),
                        f"{RAW_QUEUE}.{persistent}",
                    )
                    await future

                label = "persistent+confirms" if persistent else "transient+confirms"
                figures[f"raw {label} sequential"] = await rate(one, sequential, 1)
                figures[f"raw {label} 100 in flight"] = await rate(one, parallel, 100)
            await connection.close()
        else:
            import nats

            nc = await nats.connect(url)

            async def core(n: int) -> None:
                await nc.request(f"{RAW_QUEUE}.core", b"x" * 64, timeout=10)

            figures["raw core request sequential"] = await rate(core, sequential, 1)
            figures["raw core request 100 in flight"] = await rate(core, parallel, 100)
            js = nc.jetstream()
            waiting: dict[bytes, asyncio.Future[None]] = {}

            async def on_reply(msg: Any) -> None:
                future = waiting.pop(msg.data, None)
                if future is not None:
                    future.set_result(None)
                await msg.ack()

            sub = await js.subscribe(
                f"{RAW_QUEUE}.js.rep", durable="raw_rep", cb=on_reply, manual_ack=True
            )

            async def jetstream(n: int) -> None:
                key = uuid.uuid4().bytes
                future = waiting[key] = asyncio.get_running_loop().create_future()
                await js.publish(f"{RAW_QUEUE}.js.req", key)
                await future

            figures["raw jetstream sequential"] = await rate(jetstream, sequential, 1)
            figures["raw jetstream 100 in flight"] = await rate(jetstream, parallel, 100)
            await sub.unsubscribe()
            with contextlib.suppress(Exception):
                await js.delete_stream("MCOFLOW_BENCH_RAW")
            await nc.close()
    finally:
        await child.stop()
    return figures


async def mcoflow_figures(
    kind: str, url: str, keydir: Path, sequential: int, parallel: int, fleets: list[int]
) -> list[tuple[str, float, str, int]]:
    figures: list[tuple[str, float, str, int]] = []
    collective = f"bench{uuid.uuid4().hex[:8]}"
    transport = transport_from_url(url)
    await transport.connect()
    client = RpcClient(
        transport,
        Signer.from_file(keydir / "bench.key"),
        collective=collective,
        reply_to=f"mcoflow-bench.replies.{collective}",
        transient_replies=True,
        verifier=Verifier({"hosts": Signer.from_file(keydir / "hosts.key").public_key}),
    )
    await client.start()

    async def with_fleet(count: int) -> tuple[Child | None, Responder | None]:
        if kind == "memory":
            return None, await start_responder(transport, keydir, collective, count)
        child = Child(
            "--serve", "--url", url, "--keydir", str(keydir), "--collective", collective,
            "--hosts", str(count),
        )  # fmt: skip
        await child.ready()
        return child, None

    async def without_fleet(child: Child | None, responder: Responder | None, n: int) -> None:
        if child is not None:
            await child.stop()
        if responder is not None:
            await responder.stop()
            await forget_hosts(transport, collective, n)

    try:
        child, responder = await with_fleet(1)
        target = host_names(1)

        async def one(n: int) -> None:
            result = await client.call("echo", "run", {"n": n}, identities=target, timeout=30)
            if not result.ok:
                raise RuntimeError(result.results[0].statusmsg)

        figures.append(("round trips sequential", await rate(one, sequential, 1), "1/s", 1))
        figures.append(("round trips 100 in flight", await rate(one, parallel, 100), "1/s", 1))
        await without_fleet(child, responder, 1)

        for count in fleets:
            child, responder = await with_fleet(count)
            started = time.perf_counter()
            result = await client.call(
                "echo", "run", filter=Filter(), timeout=60, discovery_timeout=60, expect=count
            )
            total = time.perf_counter() - started
            answered = len(result.stats.responded)
            if answered != count or len(result.stats.discovered) != count:
                raise RuntimeError(
                    f"{count} hosts: discovered {len(result.stats.discovered)}, answered {answered}"
                )
            figures.append(("discover hosts", result.stats.discovery_seconds, "s", count))
            figures.append(("discover and call hosts", total, "s", count))
            await without_fleet(child, responder, count)
    finally:
        await client.close()
        await transport.close()
    return figures


async def run(args: argparse.Namespace) -> None:
    url = args.url or DEFAULT_URLS[args.transport]
    fleets = [int(n) for n in args.hosts.split(",") if n]
    rows: list[tuple[str, float, str, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        keydir = Path(tmp)
        generate_keypair(keydir, "bench")
        generate_keypair(keydir, "hosts")
        if args.transport != "memory" and not args.no_raw:
            raw = await raw_rates(url, args.sequential, args.parallel)
            rows.extend((name, value, "1/s", 1) for name, value in raw.items())
        rows.extend(
            await mcoflow_figures(
                args.transport, url, keydir, args.sequential, args.parallel, fleets
            )
        )
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
                    }
                )
            )
        return
    print(f"rpc benchmark  transport={args.transport}  cores={CORES}")
    print(f"{'metric':<48} {'n':>7} {'value':>12}  unit")
    for metric, value, unit, n in rows:
        print(f"{metric:<48} {n:>7} {value:>12.2f}  {unit}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--transport", choices=sorted(DEFAULT_URLS), default="memory")
    parser.add_argument("--url", help="broker URL (default: the test servers)")
    parser.add_argument("--json", action="store_true", help="one JSON object per figure")
    parser.add_argument("--sequential", type=int, default=500, help="sequential round trips")
    parser.add_argument("--parallel", type=int, default=3000, help="round trips, 100 in flight")
    parser.add_argument("--hosts", default="1000,10000", help="simulated fleet sizes")
    parser.add_argument("--no-raw", action="store_true", help="skip the raw broker figures")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-raw", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--keydir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--collective", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.url, args.keydir, args.collective, int(args.hosts)))
    elif args.serve_raw:
        asyncio.run(serve_raw(args.url))
    else:
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
