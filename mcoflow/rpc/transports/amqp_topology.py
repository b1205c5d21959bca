"""The RabbitMQ transport's names and message properties: its exchanges, the host queues'
names, routing keys, and the properties of requests and replies (see ``amqp``)."""

from __future__ import annotations

import aiormq

from mcoflow.rpc.transport import TransportError

BROADCAST_EXCHANGE = "mcoflow.broadcast"
DIRECT_EXCHANGE = "mcoflow.direct"
# non-durable: gone after a broker restart, and with it the transient requests
EPOCH_EXCHANGE = "mcoflow.epoch"
MAX_KEY = 255
EXCHANGES = {"broadcast": BROADCAST_EXCHANGE, "direct": DIRECT_EXCHANGE, "default": ""}


def key_of(*parts: str) -> str:
    key = "/".join(parts)
    if len(key.encode()) > MAX_KEY:
        raise TransportError(f"AMQP routing key too long ({len(key)} > {MAX_KEY}): {key[:40]}…")
    return key


def host_queue_name(collective: str, identity: str) -> str:
    return f"mcoflow.{collective}.node.{identity}"


async def epoch_marker_exists(amqp: aiormq.abc.AbstractConnection) -> bool:
    channel = await amqp.channel()
    try:
        await channel.exchange_declare(EPOCH_EXCHANGE, exchange_type="fanout", passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        return False  # gone with a restart, or never made (this also closed the channel)
    await channel.close()
    return True


def request_properties(ttl: float | None) -> aiormq.spec.Basic.Properties:
    # properties built directly: an aio_pika.Message per publish only to read these
    # back cost a few per cent of a busy agent's or client's CPU
    expiration = str(int(max(ttl, 0.001) * 1000)) if ttl is not None else None
    return message_properties(persistent=False, expiration=expiration)


def message_properties(
    *, persistent: bool, expiration: str | None = None
) -> aiormq.spec.Basic.Properties:
    return aiormq.spec.Basic.Properties(
        content_type="application/json",
        delivery_mode=2 if persistent else 1,
        expiration=expiration,
    )
