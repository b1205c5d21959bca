"""Connecting to one of a RabbitMQ cluster's nodes, and to another when it is lost.

aio-pika reconnects to the one URL it was given. The transport's URL may list a
cluster's nodes separated by commas; the connection is made with the first URL (its
user, password, virtual host and options) and this factory, which opens the socket to
the node that answered last and, when that one refuses or does not answer, to the
next in the list: every reconnection of the robust connection goes through it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from aiormq.connection import TransportFactory
from yarl import URL

__all__ = ["NodeFailover", "node_urls"]

log = logging.getLogger("mcoflow.rpc.transports.amqp")

DEFAULT_PORTS = {"amqp": 5672, "amqps": 5671}


def node_urls(urls: Sequence[str]) -> list[URL]:
    """The nodes' URLs; ValueError when they differ in more than host and port (a
    cluster's nodes share the user, the password and the virtual host)."""
    parsed = [URL(url) for url in urls]
    first = parsed[0]
    for url in parsed[1:]:
        if (url.user, url.password, url.path) != (first.user, first.password, first.path):
            raise ValueError(
                f"broker URL {url.with_password(None) if url.password else url}: the "
                "nodes of a cluster must share the user, password and virtual host of "
                "the first URL (only host and port differ)"
            )
    return parsed


class NodeFailover(TransportFactory):
    """Opens the socket to one of ``nodes`` through ``inner``, the node that answered
    last first."""

    def __init__(self, inner: TransportFactory, nodes: Sequence[URL]) -> None:
        self.inner = inner
        self.nodes = list(nodes)
        self.current = 0

    async def create(
        self, url: URL, **kwargs: Any
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if len(self.nodes) < 2:
            return await self.inner.create(url, **kwargs)
        failures: list[Exception] = []
        for step in range(len(self.nodes)):
            index = (self.current + step) % len(self.nodes)
            node = self.nodes[index]
            target = url.with_host(node.host or "localhost").with_port(
                node.port or DEFAULT_PORTS.get(url.scheme, 5672)
            )
            try:
                # each try gets its own copy: the inner factory pops what it uses
                streams = await self.inner.create(target, **dict(kwargs))
            except Exception as exc:
                failures.append(exc)
                log.info("RabbitMQ node %s:%s: %r", target.host, target.port, exc)
                continue
            if index != self.current:
                log.warning("RabbitMQ: connected to node %s:%s", target.host, target.port)
            self.current = index
            return streams
        raise failures[-1]
