"""What mcoflow leaves on RabbitMQ: the properties the broker acts on, read back raw."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest

from mcoflow.rpc.transports.amqp import AmqpTransport, host_queue_name
from tests.rpc_fixtures import require_amqp

pytestmark = pytest.mark.rabbitmq


async def _ignore(body: bytes) -> None:
    raise AssertionError("nothing is consumed here")


@pytest.fixture
async def broker() -> AsyncIterator[tuple[AmqpTransport, aio_pika.abc.AbstractChannel, str]]:
    url = require_amqp()
    transport = AmqpTransport(url)
    await transport.connect()
    raw = await aio_pika.connect(url)
    channel = await raw.channel()
    collective = f"wire{uuid.uuid4().hex[:8]}"
    try:
        yield transport, channel, collective
    finally:
        await channel.queue_delete(host_queue_name(collective, "db1"))
        await raw.close()
        await transport.close()


async def test_direct_requests_persist_and_expire_broadcasts_do_not_persist(
    broker: tuple[AmqpTransport, aio_pika.abc.AbstractChannel, str],
) -> None:
    transport, channel, collective = broker
    subscription = await transport.subscribe_host(
        identity="db1", collective=collective, agents=["package"], handler=_ignore
    )
    await subscription.cancel()  # the host is away: what is sent waits in its queue
    await transport.publish_request(
        b'{"direct": 1}', collective=collective, agent="package", identities=["db1"], ttl=30
    )
    await transport.publish_request(
        b'{"broadcast": 1}', collective=collective, agent="package", identities=None, ttl=2.5
    )
    queue = await channel.declare_queue(host_queue_name(collective, "db1"), passive=True)
    direct = await queue.get(timeout=5)
    broadcast = await queue.get(timeout=5)
    assert direct.body == b'{"direct": 1}'
    assert direct.delivery_mode is aio_pika.DeliveryMode.PERSISTENT
    assert direct.expiration == 30.0  # the ttl: the broker drops it once expired
    assert direct.content_type == "application/json"
    assert broadcast.body == b'{"broadcast": 1}'
    assert broadcast.delivery_mode is aio_pika.DeliveryMode.NOT_PERSISTENT
    assert broadcast.expiration == 2.5


async def test_replies_persist(
    broker: tuple[AmqpTransport, aio_pika.abc.AbstractChannel, str],
) -> None:
    transport, channel, collective = broker
    reply_to = f"{collective}.replies"
    queue = await channel.declare_queue(reply_to, durable=True)
    try:
        await transport.publish_reply(b'{"reply": 1}', reply_to=reply_to)
        reply = await queue.get(timeout=5)
        assert reply.body == b'{"reply": 1}'
        assert reply.delivery_mode is aio_pika.DeliveryMode.PERSISTENT
        assert reply.expiration is None
    finally:
        await queue.delete(if_unused=False, if_empty=False)
