"""The one small interface every transport (memory, AMQP, NATS) implements, and the
helpers they share.

Delivery contract: a message is acknowledged to the broker only after the handler
returned without raising, so a consumer can commit what it received first. When
the handler raises, the message is given back to the broker for redelivery
(AMQP requeue, JetStream nak) or logged (memory, core NATS). Handlers therefore
must tolerate duplicates: requests are deduplicated by id on the host and replies
by (request id, sender) at the caller.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from mcoflow.rpc.filters import Filter
    from mcoflow.rpc.wire import Wire

__all__ = [
    "Handler",
    "ReconnectListener",
    "ReconnectListeners",
    "Subscription",
    "Transport",
    "TransportError",
    "cancel_tasks",
]

Handler = Callable[[bytes], Awaitable[None]]
ReconnectListener = Callable[[], Awaitable[None]]


class TransportError(RuntimeError):
    """The broker could not take a message (e.g. unreachable past the publish timeout)."""


class Subscription(ABC):
    @abstractmethod
    async def cancel(self) -> None:
        """Stop receiving; messages not yet acknowledged go back to the broker."""


class Transport(ABC):
    # the hosts answer ``rpcutil.agent_interfaces`` (mcoflow's agent does; mcollectived not)
    describes_agents: ClassVar[bool] = True

    @classmethod
    def check_filter(cls, filter: Filter) -> None:
        """Refuse (FilterError, naming it) a filter the hosts behind this transport
        cannot apply, before a job using it is started."""
        return None  # mcoflow's agents apply every filter

    @abstractmethod
    async def connect(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @property
    @abstractmethod
    def connected(self) -> bool: ...

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
        if identities is None:
            await self._publish_broadcast(envelope, collective, agent, ttl)
        elif len(identities) == 1:  # the usual case: no task for gather to wrap it in
            await self._publish_direct(envelope, collective, identities[0], ttl)
        else:
            await asyncio.gather(
                *(self._publish_direct(envelope, collective, i, ttl) for i in identities)
            )

    @abstractmethod
    async def _publish_broadcast(
        self, envelope: bytes, collective: str, agent: str, ttl: float | None
    ) -> None:
        """Send one request to every host of ``collective`` serving ``agent``."""

    @abstractmethod
    async def _publish_direct(
        self, envelope: bytes, collective: str, identity: str, ttl: float | None
    ) -> None:
        """Send one request to the queue of the host ``identity``."""

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

    def client_wire(self, signed: Wire) -> Wire:
        """The wire a client on this transport seals and opens messages with: mcoflow's
        own ``signed`` one, unless the transport speaks another system's protocol."""
        return signed

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


async def cancel_tasks(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until every one has finished."""
    cancelled = list(tasks)
    for task in cancelled:
        task.cancel()
    await asyncio.gather(*cancelled, return_exceptions=True)


class ReconnectListeners:
    """What ``Transport.on_reconnect`` registered, for a broker client that awaits its
    reconnection callback: a listener that publishes must not hold the reconnection
    up, so each runs in a task of its own, and its failure is logged to ``log``."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._listeners: list[ReconnectListener] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def add(self, listener: ReconnectListener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def notify(self) -> None:
        loop = asyncio.get_running_loop()
        for listener in list(self._listeners):
            task = loop.create_task(self._call(listener))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _call(self, listener: ReconnectListener) -> None:
        try:
            await listener()
        except Exception:
            self._log.exception("reconnect listener %r failed", listener)

    async def cancel(self) -> None:
        """Stop the listeners still running."""
        await cancel_tasks(self._tasks)
