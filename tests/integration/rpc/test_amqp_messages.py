"""What mcoflow leaves on RabbitMQ: the properties the broker acts on, read back raw."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest

from mcoflow.rpc.transports.amqp import EPOCH_EXCHANGE, AmqpTransport, host_queue_name
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


async def test_requests_are_transient_and_expire(
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
    # transient: a broker restart loses it, and the sender publishes it again
    assert direct.delivery_mode is aio_pika.DeliveryMode.NOT_PERSISTENT
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


async def test_lost_requests_are_recovered_once_per_broker_restart(
    broker: tuple[AmqpTransport, aio_pika.abc.AbstractChannel, str],
) -> None:
    transport, channel, _ = broker
    runs: list[str] = []

    async def republish() -> None:
        runs.append("republish")

    async def fails() -> None:
        raise RuntimeError("database away")

    await transport.recover_lost_requests(republish)  # whatever the broker's past
    runs.clear()
    assert await transport.recover_lost_requests(republish) is False
    # what a restart does to the non-durable marker
    await channel.exchange_delete(EPOCH_EXCHANGE)
    with pytest.raises(RuntimeError, match="database away"):
        await transport.recover_lost_requests(fails)
    assert runs == []  # not done: the next check does it
    assert await transport.recover_lost_requests(republish) is True
    other = AmqpTransport(transport.url)  # another process sharing the database
    await other.connect()
    try:
        assert await other.recover_lost_requests(republish) is False
    finally:
        await other.close()
    assert await transport.recover_lost_requests(republish) is False
    assert runs == ["republish"]
