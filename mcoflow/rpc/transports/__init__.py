"""Transports and the URL that selects one."""

from __future__ import annotations

from urllib.parse import urlsplit

from mcoflow.rpc.tls import TlsOptions, check_tls_url
from mcoflow.rpc.transport import Transport
from mcoflow.rpc.transports.memory import MemoryBroker, MemoryTransport

__all__ = ["MemoryBroker", "MemoryTransport", "transport_from_url"]


def transport_from_url(url: str, *, tls: TlsOptions | None = None) -> Transport:
    """``memory://[name]``, ``amqp://…`` / ``amqps://…`` or ``nats://…`` / ``tls://…``;
    ``tls``: the CA, client certificate and host name check of a TLS URL."""
    scheme = urlsplit(url).scheme.lower()
    check_tls_url(url, tls)
    if scheme == "memory":
        name = urlsplit(url).netloc or "default"
        return MemoryTransport(MemoryBroker.named(name))
    if scheme in ("amqp", "amqps"):
        from mcoflow.rpc.transports.amqp import AmqpTransport

        return AmqpTransport(url, tls=tls)
    if scheme in ("nats", "tls"):
        from mcoflow.rpc.transports.nats import NatsTransport

        return NatsTransport(url, tls=tls)
    raise ValueError(f"unsupported transport URL {url!r}: use memory://, amqp(s):// or nats://")
