"""A transport to an existing MCollective 2.x collective: STOMP to RabbitMQ, the way
MCollective's ``rabbitmq`` connector talks, with the ``psk`` security scheme.

``stomp+mcollective://USER:PASSWORD@HOST:61613/VHOST?collective=mcollective`` (the vhost
URL-quoted: ``%2Fmcollective``; ``stomp+ssl+mcollective://`` for TLS; several brokers
separated by commas). The nodes run ``mcollectived``, nothing of mcoflow's: requests go
to ``/exchange/<collective>_broadcast/<agent>`` (every node serving the agent, the filter
applied on the node) or ``/exchange/<collective>_directed/<identity>``, each with a
``reply-to`` naming mcoflow's reply queue. That queue is a durable ``/queue/<reply_to>``,
not MCollective's per-connection ``/temp-queue/``: replies wait there while an
orchestrator restarts, and each is acknowledged only once it is stored. The messages
themselves are sealed and opened by :class:`~mcoflow.rpc.mcollective.wire.PskWire`.

What MCollective lacks changes two guarantees (the README says what they mean):
- a node keeps no journal of the requests it ran, so a request sent again runs again;
- a node away from the broker misses what was sent meanwhile (its queues are tied to its
  connection): the step ends as "no response" and Resume sends it again.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from mcoflow.rpc.cluster import server_urls
from mcoflow.rpc.filters import Filter
from mcoflow.rpc.mcollective.connection import StompConnection, StompServer, StompSubscription
from mcoflow.rpc.mcollective.filters import to_mcollective
from mcoflow.rpc.mcollective.options import McollectiveOptions
from mcoflow.rpc.mcollective.stomp import Frame
from mcoflow.rpc.mcollective.wire import PskWire
from mcoflow.rpc.tls import TlsOptions, client_context
from mcoflow.rpc.transport import (
    Handler,
    ReconnectListener,
    Subscription,
    Transport,
    TransportError,
)
from mcoflow.rpc.wire import Wire

__all__ = [
    "MCOLLECTIVE_SCHEMES",
    "McollectiveOptions",
    "McollectiveTransport",
    "parse_mcollective_url",
]

log = logging.getLogger("mcoflow.rpc.mcollective")

MCOLLECTIVE_SCHEMES = frozenset({"stomp+mcollective", "stomp+ssl+mcollective"})
DEFAULT_PORT = 61613
DEFAULT_COLLECTIVE = "mcollective"
# how long a broker keeps a request or reply beyond its ttl, as MCollective's connector does
_EXPIRY_MARGIN = 10.0
_REPLY_PREFETCH = 500


@dataclass(frozen=True)
class McollectiveUrl:
    servers: tuple[StompServer, ...]
    collective: str


def parse_mcollective_url(url: str, tls: TlsOptions | None = None) -> McollectiveUrl:
    """The brokers and collective of a ``stomp+mcollective://`` URL (ValueError naming
    what is wrong)."""
    servers: list[StompServer] = []
    collectives: set[str] = set()
    for part in server_urls(url):
        parts = urlsplit(part)
        scheme = parts.scheme.lower()
        if scheme not in MCOLLECTIVE_SCHEMES:
            raise ValueError(f"{scheme}:// is not an MCollective URL (stomp+mcollective://)")
        if not parts.hostname:
            raise ValueError(f"MCollective URL {part.split('@')[-1]!r} names no broker host")
        query = parse_qs(parts.query)
        unknown = sorted(set(query) - {"collective"})
        if unknown:
            raise ValueError(f"MCollective URL: unknown parameter {unknown[0]!r} (collective=)")
        collective = query.get("collective", [DEFAULT_COLLECTIVE])[-1]
        if not collective.replace("_", "").isalnum():
            raise ValueError(f"MCollective URL: collective {collective!r} is not a plain name")
        collectives.add(collective)
        secure = scheme == "stomp+ssl+mcollective"
        servers.append(
            StompServer(
                host=parts.hostname,
                port=parts.port or DEFAULT_PORT,
                login=unquote(parts.username or ""),
                passcode=unquote(parts.password or ""),
                vhost=unquote(parts.path[1:]) if len(parts.path) > 1 else "/",
                ssl=client_context(part, tls, log) if secure else None,
            )
        )
    if len(collectives) > 1:
        raise ValueError("MCollective URLs of one collective name different collectives")
    return McollectiveUrl(tuple(servers), collectives.pop())


class _Replies(Subscription):
    def __init__(self, subscription: StompSubscription) -> None:
        self._subscription = subscription

    async def cancel(self) -> None:
        await self._subscription.cancel()


class McollectiveTransport(Transport):
    # MCollective's rpcutil has no agent_interfaces: the node's DDL checks the inputs
    describes_agents = False

    @classmethod
    def check_filter(cls, filter: Filter) -> None:
        to_mcollective(filter)

    def __init__(
        self,
        url: str,
        *,
        options: McollectiveOptions | None = None,
        tls: TlsOptions | None = None,
        connection: StompConnection | None = None,
    ) -> None:
        parsed = parse_mcollective_url(url, tls)
        self.options = options or McollectiveOptions()
        self.collective = parsed.collective
        self.connection = connection or StompConnection(parsed.servers, log=log)
        self._reply_queue: str | None = None
        self._wires: list[PskWire] = []

    def client_wire(self, signed: Wire) -> Wire:
        wire = PskWire(
            psk=self.options.psk,
            collective=self.collective,
            callerid=self.options.resolved_callerid(),
        )
        self._wires.append(wire)
        return wire

    def dropped_replies(self) -> dict[str, int]:
        """Replies refused so far (bad digest, expired, malformed), by reason."""
        counts: dict[str, int] = {}
        for wire in self._wires:
            for reason, count in wire.dropped.items():
                counts[reason.value] = counts.get(reason.value, 0) + count
        return counts

    async def connect(self) -> None:
        await self.connection.connect()

    async def close(self) -> None:
        await self.connection.close()

    @property
    def connected(self) -> bool:
        return self.connection.connected

    def on_reconnect(self, listener: ReconnectListener) -> Callable[[], None]:
        # The broker's requests are not republished here: a node would run them again
        # (it keeps no journal). A step that got no answer ends as "no response".
        return self.connection.on_reconnect(listener)

    def _headers(self, ttl: float | None) -> dict[str, str]:
        if self._reply_queue is None:
            raise TransportError(
                "no reply queue: subscribe to the replies before sending MCollective requests"
            )
        headers = {"reply-to": self._reply_queue}
        if ttl is not None:
            headers["expiration"] = str(int((ttl + _EXPIRY_MARGIN) * 1000))
        return headers

    async def _publish_broadcast(
        self, envelope: bytes, collective: str, agent: str, ttl: float | None
    ) -> None:
        await self.connection.send(
            f"/exchange/{self.collective}_broadcast/{agent}", envelope, self._headers(ttl)
        )

    async def _publish_direct(
        self, envelope: bytes, collective: str, identity: str, ttl: float | None
    ) -> None:
        await self.connection.send(
            f"/exchange/{self.collective}_directed/{identity}", envelope, self._headers(ttl)
        )

    async def publish_reply(self, envelope: bytes, *, reply_to: str) -> None:
        raise TransportError("MCollective nodes answer themselves: mcoflow sends no replies")

    async def subscribe_host(
        self, *, identity: str, collective: str, agents: Sequence[str], handler: Handler
    ) -> Subscription:
        raise TransportError(
            "mcoflow's agent does not run on an MCollective collective: its hosts run "
            "mcollectived (use amqp:// or nats:// for mcoflow's own agents)"
        )

    async def subscribe_replies(
        self, *, reply_to: str, handler: Handler, transient: bool = False
    ) -> Subscription:
        async def on_frame(frame: Frame) -> None:
            await handler(frame.body)

        if transient:
            # a one-off command: a queue of this connection's own, as `mco` uses
            name = f"{reply_to}.{uuid.uuid4().hex[:12]}"
            subscription = self.connection.temporary_queue(name, on_frame)
            self._reply_queue = subscription.destination
            return _Replies(subscription)
        # durable, as RabbitMQ declares a /queue/ by default (a node's reply, sent there,
        # declares it the same way)
        destination = f"/queue/{reply_to}"
        subscription = await self.connection.subscribe(
            destination, on_frame, ack="client-individual", prefetch=_REPLY_PREFETCH
        )
        self._reply_queue = destination
        return _Replies(subscription)

    async def forget_host(self, *, identity: str, collective: str) -> None:
        # a node's queues are its own connection's and vanish with it: nothing to delete
        log.info("forgetting %s: an MCollective node keeps no queue at the broker", identity)
