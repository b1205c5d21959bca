"""Coalesced acks on the real RabbitMQ: quick deliveries are settled even while an
earlier one is still being handled, and the one being handled is not."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from mcoflow.rpc.transports.amqp import AmqpTransport, host_queue_name
from mcoflow.testing import assert_eventually
from tests.rpc_fixtures import require_amqp, wait_for_depth

pytestmark = pytest.mark.rabbitmq


async def test_only_the_delivery_still_being_handled_comes_back() -> None:
    url = require_amqp()
    collective = f"acks{uuid.uuid4().hex[:8]}"
    consumer, sender = AmqpTransport(url), AmqpTransport(url)
    await consumer.connect()
    await sender.connect()
    handled: list[bytes] = []
    release = asyncio.Event()

    async def handler(body: bytes) -> None:
        if body == b"slow":
            await release.wait()  # never set: this delivery is still running at close
        handled.append(body)

    try:
        await consumer.subscribe_host(
            identity="db1", collective=collective, agents=["package"], handler=handler
        )
        bodies = [b"slow", *(f"quick-{n}".encode() for n in range(200))]
        for body in bodies:
            await sender.publish_request(
                body, collective=collective, agent="package", identities=["db1"], ttl=60
            )

        def all_quick_handled() -> None:
            assert len(handled) == 200

        await assert_eventually(all_quick_handled, timeout=20)
        await consumer.close()  # the slow one is interrupted, unacknowledged
        await wait_for_depth(url, host_queue_name(collective, "db1"), 1)

        again: list[bytes] = []
        second = AmqpTransport(url)
        await second.connect()

        async def record(body: bytes) -> None:
            again.append(body)

        await second.subscribe_host(
            identity="db1", collective=collective, agents=["package"], handler=record
        )

        def only_the_slow_one_is_redelivered() -> None:
            assert again == [b"slow"]

        await assert_eventually(only_the_slow_one_is_redelivered, timeout=10)
        await second.close()  # closing sends the pending acks first
        await wait_for_depth(url, host_queue_name(collective, "db1"), 0)
    finally:
        await sender.forget_host(identity="db1", collective=collective)
        await sender.close()
        await consumer.close()
