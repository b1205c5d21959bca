"""RabbitMQ transport (aio-pika).

Topology (all durable, so a broker restart keeps it):
- exchange ``mcoflow.broadcast`` (topic): routing key ``<collective>/<agent>``;
- exchange ``mcoflow.direct`` (direct): routing key ``<collective>/<identity>``;
- one queue per host, ``mcoflow.<collective>.node.<identity>``, bound to both;
- one queue per reply destination, named ``reply_to``, shared by competing consumers,
  reached through the default exchange.

Everything is published with confirms. Replies are persistent; requests are
transient. A persistent message to each of a thousand host queues costs the broker
7 to 10 times the CPU of a transient one (each queue's index journal is synced),
and that was the largest single cost of a fleet job. A direct request waits in its
host's durable queue while the host is away, as long as the broker runs, and carries
the request ttl as its AMQP expiration so a host coming back does not find stale
work. A broker restart loses the requests it held, so senders publish again what
still waits for an answer: the RPC client on ``on_reconnect``, the engine's outbox
through ``recover_lost_requests`` (told by a non-durable marker exchange that
vanishes with a restart). Hosts answer a repeated request id from their journal.
On a cluster (``url`` lists its nodes, see ``amqp_nodes``) the durable queues should
be quorum queues (``queue_type``): a classic queue lives on one node, and requests it
held when that node was lost end as step timeouts (resumable), since the marker
outlives the restart of one node.
The connection is robust: on loss it reconnects and restores the topology and the
consumers, and publishing waits for the reconnection (up to ``publish_timeout``)
instead of losing the message. A retried publish may arrive twice; receivers
deduplicate (see mcoflow.rpc.transport).

Throughput: publishes share one confirming channel but do not wait for each other
(each frame is queued for the connection's writer, then its own confirm awaited);
queue declarations and consumers are spread over up to ``setup_channels`` channels,
since a channel answers one such call at a time and a process serving thousands of
(simulated) identities declares a queue for each. A delivery is acknowledged once its
handler returned, the finished ones of a loop turn together (``amqp_acks``); a
transient reply queue is consumed without acknowledgements. The frames of one loop
turn reach the socket as one write, and a busy connection writes at most once per
millisecond (``amqp_writes``). Deliveries reach the handlers as aiormq reads them,
without aio-pika's message objects and tasks (``amqp_connection``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractQueue,
    AbstractRobustConnection,
)
from aio_pika.exceptions import DeliveryError

from mcoflow.rpc.cluster import QueueType, server_urls
from mcoflow.rpc.tls import (
    TlsError,
    TlsOptions,
    client_context,
    speaks_tls,
    use_tls_url,
    uses_tls,
)
from mcoflow.rpc.transport import (
    Handler,
    ReconnectListener,
    ReconnectListeners,
    Subscription,
    Transport,
    TransportError,
    cancel_tasks,
)
from mcoflow.rpc.transports.amqp_acks import ChannelAcks
from mcoflow.rpc.transports.amqp_connection import DeliveryCallback, McoflowConnection, consume
from mcoflow.rpc.transports.amqp_nodes import node_urls
from mcoflow.rpc.transports.amqp_topology import (
    BROADCAST_EXCHANGE,
    DIRECT_EXCHANGE,
    EPOCH_EXCHANGE,
    EXCHANGES,
    epoch_marker_exists,
    host_queue_name,
    key_of,
    message_properties,
    request_properties,
)
from mcoflow.rpc.unreachable import broker_unreachable

__all__ = ["EPOCH_EXCHANGE", "AmqpTransport", "host_queue_name"]

log = logging.getLogger(__name__)


class _AmqpSubscription(Subscription):
    def __init__(self, transport: AmqpTransport, queue: AbstractQueue, tag: str) -> None:
        self._transport = transport
        self._queue = queue
        self._tag = tag
        self._cancelled = False

    async def cancel(self) -> None:
        if self._cancelled:
            return
        self._cancelled = True
        self._transport._subscriptions.discard(self)
        if self._transport.connected:
            try:
                await self._queue.cancel(self._tag)
            except Exception as exc:  # the channel may already be gone; nothing to undo
                log.debug("cancelling consumer %s failed: %s", self._tag, exc)


class AmqpTransport(Transport):
    def __init__(
        self,
        url: str,
        *,
        prefetch: int = 256,
        publish_timeout: float = 30.0,
        reconnect_interval: float = 0.5,
        requeue_delay: float = 0.5,
        setup_channels: int = 16,
        tls: TlsOptions | None = None,
        queue_type: QueueType = QueueType.CLASSIC,
    ) -> None:
        """``url``: one node, or a cluster's as a comma-separated list; ``queue_type``:
        of the durable queues (hosts', shared replies'), quorum on a cluster.
        ``setup_channels``: at most this many channels declare queues and start
        consumers side by side (AMQP answers one such call at a time per channel, so
        a process subscribing thousands of identities needs several). ``tls``: the
        CA, client certificate and host name check of an ``amqps://`` URL."""
        self.url = url
        self.nodes = node_urls(server_urls(url))
        self.tls = tls
        self.queue_type = queue_type
        # classic: no argument, as queues were always declared (a redeclaration with
        # other arguments is refused)
        self._durable_arguments: dict[str, Any] | None = (
            {"x-queue-type": queue_type.value} if queue_type is not QueueType.CLASSIC else None
        )
        self.prefetch = prefetch
        self.publish_timeout = publish_timeout
        self.reconnect_interval = reconnect_interval
        self.requeue_delay = requeue_delay
        self.setup_channels = max(1, setup_channels)
        self._channels: list[AbstractChannel] = []
        self._channel_load: list[int] = []
        self._channel_lock = asyncio.Lock()
        self._connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._consume_channel: AbstractChannel | None = None
        self._broadcast: AbstractExchange | None = None
        self._direct: AbstractExchange | None = None
        self._consume_broadcast: AbstractExchange | None = None
        self._consume_direct: AbstractExchange | None = None
        self._subscriptions: set[_AmqpSubscription] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._reconnect_listeners = ReconnectListeners(log)
        # per consuming channel (aiormq's; a reconnection opens new ones)
        self._acks: dict[Any, ChannelAcks] = {}
        self._closing = False

    @property
    def connected(self) -> bool:
        connection = self._connection
        return connection is not None and not connection.is_closed and connection.connected.is_set()

    async def connect(self) -> None:
        if self._connection is not None:
            return
        self._closing = False
        try:
            context = client_context(self.url, self.tls, log) if uses_tls(self.url) else None
        except TlsError as exc:
            raise TransportError(str(exc)) from exc
        try:
            self._connection = await aio_pika.connect_robust(
                str(self.nodes[0]),
                ssl_context=context,
                reconnect_interval=self.reconnect_interval,
                client_properties={"connection_name": "mcoflow"},
                connection_class=McoflowConnection.on_nodes(self.nodes),
            )
        except Exception as exc:
            if context is None and await speaks_tls(self.url):
                raise TransportError(use_tls_url(self.url, "amqps")) from exc
            raise TransportError(broker_unreachable("RabbitMQ", self.url, exc)) from exc
        self._connection.reconnect_callbacks.add(self._reconnected)
        self._publish_channel = await self._connection.channel(
            publisher_confirms=True, on_return_raises=True
        )
        self._consume_channel = await self._connection.channel(publisher_confirms=False)
        await self._consume_channel.set_qos(prefetch_count=self.prefetch)
        self._broadcast, self._direct = await self._exchanges(self._publish_channel)
        self._consume_broadcast, self._consume_direct = await self._exchanges(self._consume_channel)
        self._channels, self._channel_load = [self._consume_channel], [0]

    @staticmethod
    async def _exchanges(channel: AbstractChannel) -> tuple[AbstractExchange, AbstractExchange]:
        broadcast = await channel.declare_exchange(
            BROADCAST_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        direct = await channel.declare_exchange(
            DIRECT_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True
        )
        return broadcast, direct

    def on_reconnect(self, listener: ReconnectListener) -> Callable[[], None]:
        return self._reconnect_listeners.add(listener)

    def _reconnected(self, *_: Any) -> None:
        self._reconnect_listeners.notify()  # aio-pika awaits this while it reconnects

    async def recover_lost_requests(self, republish: Callable[[], Awaitable[None]]) -> bool:
        if self._connection is None or self._connection.transport is None:
            raise TransportError("AMQP transport is not connected")
        # Raw channels: aio-pika's robust ones would re-declare the marker on their own.
        amqp = self._connection.transport.connection
        if await epoch_marker_exists(amqp):
            return False
        await republish()
        channel = await amqp.channel()
        try:
            await channel.exchange_declare(
                EPOCH_EXCHANGE, exchange_type="fanout", durable=False, auto_delete=False
            )
        finally:
            await channel.close()
        return True

    async def close(self) -> None:
        self._closing = True
        for subscription in list(self._subscriptions):
            await subscription.cancel()
        await self._reconnect_listeners.cancel()
        await cancel_tasks(self._tasks)
        for acks in list(self._acks.values()):
            await acks.drain()
        connection, self._connection = self._connection, None
        self._channels, self._channel_load = [], []
        if connection is not None:
            await connection.close()

    # -- publishing -------------------------------------------------------------------

    async def _publish_broadcast(
        self, envelope: bytes, collective: str, agent: str, ttl: float | None
    ) -> None:
        await self._publish(
            "broadcast", key_of(collective, agent), envelope, request_properties(ttl)
        )

    async def _publish_direct(
        self, envelope: bytes, collective: str, identity: str, ttl: float | None
    ) -> None:
        await self._publish(
            "direct", key_of(collective, identity), envelope, request_properties(ttl)
        )

    async def publish_reply(self, envelope: bytes, *, reply_to: str) -> None:
        try:
            await self._publish(
                "default", reply_to, envelope, message_properties(persistent=True), mandatory=True
            )
        except DeliveryError:
            # No queue by that name: its caller is gone for good (a transient reply
            # queue) or never existed; retrying cannot help.
            log.warning("reply to %r returned by the broker (no such queue); dropped", reply_to)

    async def _publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: aiormq.spec.Basic.Properties,
        *,
        mandatory: bool = False,
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.publish_timeout
        while True:
            if self._connection is None or self._publish_channel is None:
                raise TransportError("AMQP transport is not connected")
            remaining = deadline - loop.time()
            try:
                if self._publish_channel.is_closed:
                    raise aiormq.exceptions.ChannelInvalidStateError("publish channel closed")
                channel = await self._publish_channel.get_underlay_channel()
                # wait=False: the frame is queued for the connection's writer and the
                # confirm awaited, without holding the channel lock until the socket
                # drained (with it, concurrent publishes go one per writer turn).
                await channel.basic_publish(
                    body,
                    exchange=EXCHANGES[exchange],
                    routing_key=routing_key,
                    properties=properties,
                    mandatory=mandatory,
                    timeout=max(remaining, 0.1),
                    wait=False,  # type: ignore[call-arg]  # aiormq's ABC omits it
                )
                return
            except DeliveryError:
                raise
            except Exception as exc:
                # Broker or connection trouble: wait for the robust connection to come
                # back and publish again rather than lose the message.
                remaining = deadline - loop.time()
                if self._closing or remaining <= 0:
                    raise TransportError(f"publish to {routing_key!r} failed: {exc!r}") from exc
                log.info("publish to %r failed (%r); retrying after reconnection", routing_key, exc)
                await self._wait_connected(min(remaining, 1.0))

    async def _wait_connected(self, limit: float) -> None:
        connection = self._connection
        await asyncio.sleep(0.05)
        if connection is None:
            return
        try:
            # not asyncio.wait_for: on Python 3.11 it can lose a cancellation
            async with asyncio.timeout(limit):
                await connection.connected.wait()
        except TimeoutError:
            return
        # The connection is up before its channels are restored; give them a moment.
        await asyncio.sleep(0.05)

    # -- consuming --------------------------------------------------------------------

    def _callback(self, handler: Handler, *, acknowledge: bool = True) -> DeliveryCallback:
        """``acknowledge=False`` for a consumer that takes deliveries unacknowledged
        (``no_ack``): what its handler fails on is logged and dropped."""

        async def process(message: aiormq.abc.DeliveredMessage, acks: ChannelAcks) -> None:
            tag = message.delivery_tag
            assert tag is not None  # the broker numbers every delivery
            try:
                await handler(message.body)
            except Exception:
                if not acknowledge:
                    log.exception("handler failed; the message is dropped")
                    return
                log.exception("handler failed; message given back to the broker")
                # A short pause so a message that fails at once does not spin.
                await asyncio.sleep(self.requeue_delay)
                await acks.nack(tag)
                return
            if acknowledge:
                acks.ack(tag)

        async def on_message(message: aiormq.abc.DeliveredMessage) -> None:
            acks = self._acks.get(message.channel)
            if acks is None:
                # a new channel: forget those closed since (each holds its channel)
                self._acks = {c: a for c, a in self._acks.items() if not c.is_closed}
                acks = self._acks[message.channel] = ChannelAcks(message.channel)
            if message.delivery_tag is not None:
                if acknowledge:
                    acks.received(message.delivery_tag)
                else:
                    acks.unacknowledged(message.delivery_tag)
            # aiormq cancels consumer callbacks when the connection drops; a broker
            # blip must not kill a command half way, so the work runs in its own task
            # and finishes (its reply waits for the reconnection). Nothing waits for it
            # here: the prefetch count already bounds how many run at once.
            task = asyncio.get_running_loop().create_task(process(message, acks))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        return on_message

    @contextlib.asynccontextmanager
    async def _setup_channel(self) -> AsyncIterator[AbstractChannel]:
        """The least busy consuming channel, opening another (up to ``setup_channels``)
        when all are busy: queue declarations and consumers then proceed in parallel."""
        async with self._channel_lock:
            if not self._channels or self._connection is None:
                raise TransportError("AMQP transport is not connected")
            load = self._channel_load
            index = min(range(len(load)), key=load.__getitem__)
            if load[index] and len(self._channels) < self.setup_channels:
                opened = await self._connection.channel(publisher_confirms=False)
                await opened.set_qos(prefetch_count=self.prefetch)
                self._channels.append(opened)
                load.append(0)
                index = len(load) - 1
            load[index] += 1
            channel = self._channels[index]
        try:
            yield channel
        finally:
            if index < len(self._channel_load) and self._channels[index] is channel:
                self._channel_load[index] -= 1

    async def subscribe_host(
        self, *, identity: str, collective: str, agents: Sequence[str], handler: Handler
    ) -> Subscription:
        async with self._setup_channel() as channel:
            queue = await channel.declare_queue(
                host_queue_name(collective, identity),
                durable=True,
                arguments=self._durable_arguments,
            )
            await queue.bind(DIRECT_EXCHANGE, key_of(collective, identity))
            for agent in dict.fromkeys(agents):
                await queue.bind(BROADCAST_EXCHANGE, key_of(collective, agent))
            tag = await consume(queue, self._callback(handler))
        subscription = _AmqpSubscription(self, queue, tag)
        self._subscriptions.add(subscription)
        return subscription

    async def subscribe_replies(
        self, *, reply_to: str, handler: Handler, transient: bool = False
    ) -> Subscription:
        async with self._setup_channel() as channel:
            if transient:
                # this process's own queue, gone with it: acknowledging its deliveries
                # would cost a frame each and protect nothing
                queue = await channel.declare_queue(reply_to, exclusive=True, auto_delete=True)
                tag = await consume(queue, self._callback(handler, acknowledge=False), no_ack=True)
            else:
                queue = await channel.declare_queue(
                    reply_to, durable=True, arguments=self._durable_arguments
                )
                tag = await consume(queue, self._callback(handler))
        subscription = _AmqpSubscription(self, queue, tag)
        self._subscriptions.add(subscription)
        return subscription

    async def forget_host(self, *, identity: str, collective: str) -> None:
        async with self._setup_channel() as channel:
            await channel.queue_delete(host_queue_name(collective, identity))
