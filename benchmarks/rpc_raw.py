"""The raw broker round trips that ``benchmarks/rpc.py`` sets mcoflow's against: plain
aio-pika / nats-py, no mcoflow, to a responder in a subprocess (this file, run as a
script); and the subprocess both kinds of responder run in.

    python benchmarks/rpc_raw.py --url URL    # the raw responder, until stdin closes
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from mcoflow.runtime import tune_gc

RAW_QUEUE = "mcoflow-bench.raw"

RoundTrip = Callable[[int], Awaitable[None]]


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
    """A responder subprocess (``script`` with ``args``: an agent, or the raw
    responder); it stops when its stdin closes."""

    def __init__(self, script: str, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, script, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    async def ready(self) -> float:
        assert self.process.stdout is not None
        line = await asyncio.get_running_loop().run_in_executor(None, self.process.stdout.readline)
        if not line.startswith("ready"):
            raise RuntimeError(f"responder did not start: {line!r}")
        words = line.split()
        return float(words[1]) if len(words) > 1 else 0.0

    async def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        await asyncio.get_running_loop().run_in_executor(None, self.process.wait, 600)


@contextlib.asynccontextmanager
async def raw_round_trips(url: str) -> AsyncIterator[dict[str, RoundTrip]]:
    """One raw round trip per delivery kind (plain aio-pika / nats-py, no mcoflow), to
    a raw responder subprocess: {"raw transient+confirms": one, ...}."""
    child = Child(__file__, "--url", url)
    await child.ready()
    ones: dict[str, RoundTrip] = {}
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
                ones[f"raw {label}"] = one
            try:
                yield ones
            finally:
                await connection.close()
        else:
            import nats

            nc = await nats.connect(url)

            async def core(n: int) -> None:
                await nc.request(f"{RAW_QUEUE}.core", b"x" * 64, timeout=10)

            ones["raw core request"] = core
            js = nc.jetstream()
            waiting_js: dict[bytes, asyncio.Future[None]] = {}

            async def on_js_reply(msg: Any) -> None:
                future = waiting_js.pop(msg.data, None)
                if future is not None:
                    future.set_result(None)
                await msg.ack()

            sub = await js.subscribe(
                f"{RAW_QUEUE}.js.rep", durable="raw_rep", cb=on_js_reply, manual_ack=True
            )

            async def jetstream(n: int) -> None:
                key = uuid.uuid4().bytes
                future = waiting_js[key] = asyncio.get_running_loop().create_future()
                await js.publish(f"{RAW_QUEUE}.js.req", key)
                await future

            ones["raw jetstream"] = jetstream
            try:
                yield ones
            finally:
                await sub.unsubscribe()
                with contextlib.suppress(Exception):
                    await js.delete_stream("MCOFLOW_BENCH_RAW")
                await nc.close()
    finally:
        await child.stop()
        if url.startswith("amqp"):
            await drop_raw_queues(url)


async def drop_raw_queues(url: str) -> None:
    import aio_pika

    connection = await aio_pika.connect(url)
    async with connection:
        for persistent in (False, True):
            channel = await connection.channel()
            await channel.queue_delete(f"{RAW_QUEUE}.{persistent}")


def main() -> None:
    parser = argparse.ArgumentParser(description="the raw responder (no mcoflow)")
    parser.add_argument("--url", required=True, help="broker URL")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    tune_gc()  # as rpc.py's agent sets it: the same ground for both
    asyncio.run(serve_raw(args.url))


if __name__ == "__main__":
    main()
