"""Transports and the URL that selects one."""

from __future__ import annotations

from urllib.parse import urlsplit

from mcoflow.rpc.cluster import ClusterOptions, server_urls
from mcoflow.rpc.tls import TlsOptions, check_tls_url
from mcoflow.rpc.transport import Transport
from mcoflow.rpc.transports.memory import MemoryBroker, MemoryTransport

__all__ = ["MemoryBroker", "MemoryTransport", "transport_from_url"]


def transport_from_url(
    url: str, *, tls: TlsOptions | None = None, cluster: ClusterOptions | None = None
) -> Transport:
    """``memory://[name]``, ``amqp://…`` / ``amqps://…`` or ``nats://…`` / ``tls://…``
    (a broker's nodes: several, separated by commas); ``tls``: the CA, client
    certificate and host name check of a TLS URL; ``cluster``: what a clustered broker
    replicates (NATS stream replicas, RabbitMQ queue type)."""
    scheme = urlsplit(server_urls(url)[0]).scheme.lower()
    check_tls_url(url, tls)
    cluster = cluster or ClusterOptions()
    if scheme == "memory":
        name = urlsplit(url).netloc or "default"
        return MemoryTransport(MemoryBroker.named(name))
    if scheme in ("amqp", "amqps"):
        from mcoflow.rpc.transports.amqp import AmqpTransport

        return AmqpTransport(url, tls=tls, queue_type=cluster.amqp_queue_type)
    if scheme in ("nats", "tls"):
        from mcoflow.rpc.transports.nats import NatsTransport

        return NatsTransport(url, tls=tls, replicas=cluster.nats_replicas)
    raise ValueError(f"unsupported transport URL {url!r}: use memory://, amqp(s):// or nats://")
