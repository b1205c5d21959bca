"""Deliveries straight from aiormq on the real RabbitMQ: what the handler gets, and the
consumer aio-pika restores after the channel is lost."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import aiormq.abc
import pytest

from mcoflow.rpc.transports.amqp_connection import McoflowConnection, consume
from mcoflow.testing import assert_eventually
from tests.rpc_fixtures import require_amqp

pytestmark = pytest.mark.rabbitmq


async def test_a_consumer_gets_aiormq_deliveries_and_is_restored_with_its_channel() -> None:
    url = require_amqp()
    connection = await aio_pika.connect_robust(
        url, connection_class=McoflowConnection, reconnect_interval=0.2
    )
    name = f"mcoflow-test.direct.{uuid.uuid4().hex[:8]}"
    got: list[aiormq.abc.DeliveredMessage] = []

    async def on_delivery(message: aiormq.abc.DeliveredMessage) -> None:
        got.append(message)

    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(name)
        await consume(queue, on_delivery, no_ack=True)
        await channel.default_exchange.publish(aio_pika.Message(b"first"), name)
        await assert_eventually(lambda: len(got) == 1, timeout=10)
        assert isinstance(got[0], aiormq.abc.DeliveredMessage)
        assert got[0].body == b"first"
        assert got[0].delivery_tag == 1

        # The broker closes the channel (a passive declare of a missing queue); the
        # robust channel reopens and consumes again with the recorded callback.
        with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
            await channel.declare_queue(f"{name}.missing", passive=True)
        await asyncio.wait_for(channel.ready(), timeout=10)  # type: ignore[attr-defined]
        publisher = await connection.channel()
        await publisher.default_exchange.publish(aio_pika.Message(b"second"), name)
        await assert_eventually(lambda: len(got) == 2, timeout=10)
        assert got[1].body == b"second"
        assert got[1].channel is not got[0].channel  # a new underlying channel
    finally:
        cleanup = await connection.channel()
        await cleanup.queue_delete(name)
        await connection.close()


async def test_consume_refuses_a_queue_of_another_kind_of_connection() -> None:
    url = require_amqp()
    connection = await aio_pika.connect_robust(url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)

        async def on_delivery(message: aiormq.abc.DeliveredMessage) -> None:
            raise AssertionError("never consumed")

        with pytest.raises(TypeError, match="not declared on a McoflowConnection"):
            await consume(queue, on_delivery)
    finally:
        await connection.close()
