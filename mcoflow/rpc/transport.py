"""The one small interface every transport (memory, AMQP, NATS) implements.

Delivery contract: a message is acknowledged to the broker only after the handler
returned without raising, so a consumer can commit what it received first. When
the handler raises, the message is given back to the broker for redelivery
(AMQP requeue, JetStream nak) or logged (memory, core NATS). Handlers therefore
must tolerate duplicates: requests are deduplicated by id on the host and replies
by (request id, sender) at the caller.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence

__all__ = ["Handler", "ReconnectListener", "Subscription", "Transport", "TransportError"]

Handler = Callable[[bytes], Awaitable[None]]
ReconnectListener = Callable[[], Awaitable[None]]


class TransportError(RuntimeError):
    """The broker could not take a message (e.g. unreachable past the publish timeout)."""


class Subscription(ABC):
    @abstractmethod
    async def cancel(self) -> None:
        """Stop receiving; messages not yet acknowledged go back to the broker."""


class Transport(ABC):
    @abstractmethod
    async def connect(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @property
    @abstractmethod
    def connected(self) -> bool: ...

    @abstractmethod
    async def publish_request(
        self,
        envelope: bytes,
        *,
        collective: str,
        agent: str,
        identities: Sequence[str] | None,
        ttl: float | None = None,
    ) -> None:
        """Send a request: ``identities=None`` broadcasts to every host of ``collective``
        serving ``agent`` (each host applies the filter); otherwise one copy goes to
        each named host's own queue, kept for it while it is away. ``ttl`` (seconds)
        lets the broker drop it once the request has expired anyway."""

    @abstractmethod
    async def publish_reply(self, envelope: bytes, *, reply_to: str) -> None:
        """Send a reply to the caller's reply destination."""

    @abstractmethod
    async def subscribe_host(
        self, *, identity: str, collective: str, agents: Sequence[str], handler: Handler
    ) -> Subscription:
        """Receive the direct requests for ``identity`` and the broadcasts for ``agents``."""

    @abstractmethod
    async def subscribe_replies(
        self, *, reply_to: str, handler: Handler, transient: bool = False
    ) -> Subscription:
        """Receive replies sent to ``reply_to``.

        Durable by default: replies wait for a consumer, and several processes using
        the same ``reply_to`` share them as competing consumers. ``transient=True``
        (a one-off CLI call) is dropped with the subscription.
        """

    def on_reconnect(self, listener: ReconnectListener) -> Callable[[], None]:
        """Call ``listener`` after each reconnection to the broker, when requests it had
        taken may be gone: a sender then publishes again what still waits for an answer
        (hosts answer a repeated request id from their journal). Returns what removes it.

        The memory transport, which lives and dies with the process, never calls it."""
        return lambda: None

    async def recover_lost_requests(self, republish: Callable[[], Awaitable[None]]) -> bool:
        """If the broker lost the requests it held (it restarted) since the last recovery
        by any process, await ``republish`` (which publishes again what still waits for
        an answer), then remember that it is done; True if it ran. Several processes
        sharing one database thus republish once between them. An exception from
        ``republish`` leaves the recovery to the next call. A transport that cannot tell
        either runs it every time (NATS: broadcasts missed while away) or never (memory:
        nothing outlives the process; the orchestrator republishes at its start)."""
        return False

    @abstractmethod
    async def forget_host(self, *, identity: str, collective: str) -> None:
        """Delete a decommissioned host's queue and the requests still waiting in it."""

    async def __aenter__(self) -> Transport:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
