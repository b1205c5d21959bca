"""Transports and the URL that selects one."""

from __future__ import annotations

from urllib.parse import urlsplit

from mcoflow.rpc.transport import Transport
from mcoflow.rpc.transports.memory import MemoryBroker, MemoryTransport

__all__ = ["MemoryBroker", "MemoryTransport", "transport_from_url"]


def transport_from_url(url: str) -> Transport:
    """``memory://[name]``, ``amqp://…`` / ``amqps://…`` or ``nats://…`` / ``tls://…``."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "memory":
        name = urlsplit(url).netloc or "default"
        return MemoryTransport(MemoryBroker.named(name))
    if scheme in ("amqp", "amqps"):
        from mcoflow.rpc.transports.amqp import AmqpTransport

        return AmqpTransport(url)
    if scheme in ("nats", "tls"):
        from mcoflow.rpc.transports.nats import NatsTransport

        return NatsTransport(url)
    raise ValueError(f"unsupported transport URL {url!r}: use memory://, amqp(s):// or nats://")
