"""Transports and the URL that selects one."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from mcoflow.rpc.cluster import ClusterOptions, server_urls
from mcoflow.rpc.tls import TlsOptions, check_tls_url
from mcoflow.rpc.transport import Transport
from mcoflow.rpc.transports.memory import MemoryBroker, MemoryTransport

if TYPE_CHECKING:
    from mcoflow.rpc.mcollective.options import McollectiveOptions

__all__ = ["MemoryBroker", "MemoryTransport", "transport_class", "transport_from_url"]


def transport_class(url: str) -> type[Transport]:
    """The transport a URL selects, not built (nothing connected, no file read): what its
    hosts can do (``describes_agents``, ``check_filter``) without a broker."""
    scheme = urlsplit(server_urls(url)[0]).scheme.lower()
    if scheme in ("stomp+mcollective", "stomp+ssl+mcollective"):
        from mcoflow.rpc.transports.mcollective import McollectiveTransport

        return McollectiveTransport
    return Transport


def transport_from_url(
    url: str,
    *,
    tls: TlsOptions | None = None,
    cluster: ClusterOptions | None = None,
    mcollective: McollectiveOptions | None = None,
) -> Transport:
    """``memory://[name]``, ``amqp://…`` / ``amqps://…``, ``nats://…`` / ``tls://…``
    (a broker's nodes: several, separated by commas) or ``stomp+mcollective://…`` (an
    existing MCollective collective); ``tls``: the CA, client certificate and host name
    check of a TLS URL; ``cluster``: what a clustered broker replicates (NATS stream
    replicas, RabbitMQ queue type); ``mcollective``: the nodes' psk and the caller id."""
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
    if scheme in ("stomp+mcollective", "stomp+ssl+mcollective"):
        from mcoflow.rpc.transports.mcollective import McollectiveTransport

        return McollectiveTransport(url, options=mcollective, tls=tls)
    raise ValueError(
        f"unsupported transport URL {url!r}: use memory://, amqp(s)://, nats:// or "
        "stomp+mcollective://"
    )
