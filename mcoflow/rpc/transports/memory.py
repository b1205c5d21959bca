"""In-process transport: the embedded default (one process, no broker to run).

It mirrors the broker semantics the other transports give, so code tested on it
behaves the same on RabbitMQ or NATS: a host queue outlives its subscription and
keeps direct requests until the host subscribes again; broadcasts reach the hosts
subscribed at that moment; a reply queue is shared by competing consumers and keeps
replies while nobody consumes. Nothing survives the process, and a message whose
handler raises is logged and dropped (there is no broker to give it back to).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence

from mcoflow.rpc.transport import Handler, Subscription, Transport, TransportError, cancel_tasks

__all__ = ["MemoryBroker", "MemoryTransport"]

log = logging.getLogger(__name__)

QUEUE_LIMIT = 100_000


class _Consumer:
    def __init__(self, handler: Handler, prefetch: int) -> None:
        self.handler = handler
        self._slots = asyncio.Semaphore(prefetch)
        self._tasks: set[asyncio.Task[None]] = set()

    def deliver(self, body: bytes) -> None:
        task = asyncio.get_running_loop().create_task(self._run(body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, body: bytes) -> None:
        async with self._slots:
            try:
                await self.handler(body)
            except Exception:
                log.exception("memory transport: handler failed; message dropped")

    async def stop(self) -> None:
        await cancel_tasks(self._tasks)


class _Queue:
    """A named queue: buffered while nobody consumes, round-robin among consumers."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.backlog: deque[bytes] = deque(maxlen=QUEUE_LIMIT)
        self.consumers: list[_Consumer] = []
        self._turn = 0

    def put(self, body: bytes) -> None:
        if not self.consumers:
            if len(self.backlog) == self.backlog.maxlen:
                log.warning("memory queue %s is full; dropping its oldest message", self.name)
            self.backlog.append(body)
            return
        self._turn = (self._turn + 1) % len(self.consumers)
        self.consumers[self._turn].deliver(body)

    def attach(self, consumer: _Consumer) -> None:
        self.consumers.append(consumer)
        while self.backlog:
            consumer.deliver(self.backlog.popleft())

    def detach(self, consumer: _Consumer) -> None:
        if consumer in self.consumers:
            self.consumers.remove(consumer)


class MemoryBroker:
    """The shared state of every MemoryTransport using the same broker name."""

    _named: dict[str, MemoryBroker] = {}

    def __init__(self) -> None:
        self.host_queues: dict[tuple[str, str], _Queue] = {}
        # (collective, agent) -> host queues currently subscribed to its broadcasts
        self.broadcast: dict[tuple[str, str], set[_Queue]] = {}
        self.reply_queues: dict[str, _Queue] = {}

    @classmethod
    def named(cls, name: str = "default") -> MemoryBroker:
        broker = cls._named.get(name)
        if broker is None:
            broker = cls._named[name] = cls()
        return broker


class _MemorySubscription(Subscription):
    def __init__(self, transport: MemoryTransport, queue: _Queue, consumer: _Consumer) -> None:
        self._transport = transport
        self.queue = queue
        self.consumer = consumer
        self.bindings: list[tuple[str, str]] = []
        self.drop_queue_from: dict[str, _Queue] | None = None
        self._cancelled = False

    async def cancel(self) -> None:
        if self._cancelled:
            return
        self._cancelled = True
        broker = self._transport.broker
        for key in self.bindings:
            bound = broker.broadcast.get(key)
            if bound is not None:
                bound.discard(self.queue)
                if not bound:
                    del broker.broadcast[key]
        self.queue.detach(self.consumer)
        if self.drop_queue_from is not None and not self.queue.consumers:
            self.drop_queue_from.pop(self.queue.name, None)
        self._transport._subscriptions.discard(self)
        await self.consumer.stop()


class MemoryTransport(Transport):
    def __init__(self, broker: MemoryBroker | None = None, *, prefetch: int = 100) -> None:
        self.broker = broker if broker is not None else MemoryBroker.named()
        self.prefetch = prefetch
        self._connected = False
        self._subscriptions: set[_MemorySubscription] = set()

    @property
    def connected(self) -> bool:
        return self._connected

    async def connect(self) -> None:
        self._connected = True

    async def close(self) -> None:
        for subscription in list(self._subscriptions):
            await subscription.cancel()
        self._connected = False

    def _require_connection(self) -> None:
        if not self._connected:
            raise TransportError("memory transport is not connected")

    async def _publish_broadcast(
        self, envelope: bytes, collective: str, agent: str, ttl: float | None
    ) -> None:
        self._require_connection()
        body = bytes(envelope)
        for queue in list(self.broker.broadcast.get((collective, agent), ())):
            queue.put(body)

    async def _publish_direct(
        self, envelope: bytes, collective: str, identity: str, ttl: float | None
    ) -> None:
        self._require_connection()
        # Like an AMQP direct exchange: a host never seen has no queue, so it is lost.
        host_queue = self.broker.host_queues.get((collective, identity))
        if host_queue is not None:
            host_queue.put(bytes(envelope))

    async def publish_reply(self, envelope: bytes, *, reply_to: str) -> None:
        self._require_connection()
        queue = self.broker.reply_queues.get(reply_to)
        if queue is None:
            log.warning("memory transport: no reply queue %r; reply dropped", reply_to)
            return
        queue.put(bytes(envelope))

    async def subscribe_host(
        self, *, identity: str, collective: str, agents: Sequence[str], handler: Handler
    ) -> Subscription:
        self._require_connection()
        key = (collective, identity)
        queue = self.broker.host_queues.get(key) or _Queue(f"{collective}.node.{identity}")
        self.broker.host_queues[key] = queue
        subscription = _MemorySubscription(self, queue, _Consumer(handler, self.prefetch))
        for agent in dict.fromkeys(agents):
            binding = (collective, agent)
            self.broker.broadcast.setdefault(binding, set()).add(queue)
            subscription.bindings.append(binding)
        queue.attach(subscription.consumer)
        self._subscriptions.add(subscription)
        return subscription

    async def subscribe_replies(
        self, *, reply_to: str, handler: Handler, transient: bool = False
    ) -> Subscription:
        self._require_connection()
        queues = self.broker.reply_queues
        queue = queues.get(reply_to) or _Queue(reply_to)
        queues[reply_to] = queue
        subscription = _MemorySubscription(self, queue, _Consumer(handler, self.prefetch))
        if transient:
            subscription.drop_queue_from = queues
        queue.attach(subscription.consumer)
        self._subscriptions.add(subscription)
        return subscription

    async def forget_host(self, *, identity: str, collective: str) -> None:
        queue = self.broker.host_queues.get((collective, identity))
        if queue is not None and not queue.consumers:
            del self.broker.host_queues[(collective, identity)]
