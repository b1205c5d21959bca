"""aio-pika's robust connection, with coalesced writes and deliveries handed over as
aiormq reads them.

aio-pika wraps each delivery in an ``IncomingMessage`` and runs the callback in a task
of its own, on top of the task aiormq already starts for it: with the transport's own
task per handler, three tasks and a message object per delivery. The transport only
needs the body, the delivery tag and the channel, which aiormq's ``DeliveredMessage``
has, so its queues consume on the underlying channel directly. Everything else stays
aio-pika's: declaring, binding, and restoring the consumers after a reconnection (the
restore calls ``consume`` again, with the callback recorded here). Two task switches
and an object less per delivery is a measurable share of a round trip (see
docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import aio_pika
import aiormq.abc
from aio_pika.abc import AbstractQueue, ConsumerTag, TimeoutType
from aiormq.abc import ArgumentsType
from yarl import URL

from mcoflow.rpc.transports.amqp_nodes import NodeFailover
from mcoflow.rpc.transports.amqp_writes import CoalescingTransportFactory

__all__ = ["DeliveryCallback", "McoflowConnection", "consume"]

DeliveryCallback = Callable[[aiormq.abc.DeliveredMessage], Coroutine[Any, Any, None]]


class _DirectQueue(aio_pika.RobustQueue):
    async def consume(  # type: ignore[override]  # takes aiormq's deliveries
        self,
        callback: DeliveryCallback,
        no_ack: bool = False,
        exclusive: bool = False,
        arguments: ArgumentsType | None = None,
        consumer_tag: ConsumerTag | None = None,
        timeout: TimeoutType = None,
        robust: bool = True,
    ) -> ConsumerTag:
        channel = await self.channel.get_underlay_channel()
        ok = await channel.basic_consume(
            queue=self.name,
            consumer_callback=callback,
            no_ack=no_ack,
            exclusive=exclusive,
            arguments=arguments,
            consumer_tag=consumer_tag,
            timeout=timeout,
        )
        if ok.consumer_tag is None:  # pamqp's type allows it; a broker never sends it
            raise RuntimeError("the broker named no consumer tag")
        if robust:  # what RobustQueue.restore consumes again after a reconnection
            self._consumers[ok.consumer_tag] = {
                "callback": callback,
                "no_ack": no_ack,
                "exclusive": exclusive,
                "arguments": arguments,
            }
        return ok.consumer_tag


class _Channel(aio_pika.RobustChannel):
    QUEUE_CLASS = _DirectQueue


class McoflowConnection(aio_pika.RobustConnection):
    """aio-pika's robust connection (reconnects included) with coalesced writes, whose
    queues hand each delivery to the consumer as aiormq's ``DeliveredMessage``."""

    CHANNEL_CLASS = _Channel

    nodes: tuple[URL, ...] = ()  # a cluster's nodes, tried in turn (see amqp_nodes)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # passed to aiormq on every (re)connection
        self.kwargs["transport_factory"] = NodeFailover(CoalescingTransportFactory(), self.nodes)

    @classmethod
    def on_nodes(cls, nodes: Sequence[URL]) -> type[McoflowConnection]:
        """This connection class for a cluster's ``nodes`` (aio_pika.connect_robust
        would put a keyword argument into the URL's query as well)."""
        return type(f"{cls.__name__}OnNodes", (cls,), {"nodes": tuple(nodes)})


async def consume(
    queue: AbstractQueue, callback: DeliveryCallback, *, no_ack: bool = False
) -> ConsumerTag:
    """Consume ``queue`` (declared on a ``McoflowConnection``'s channel) with ``callback``."""
    if not isinstance(queue, _DirectQueue):
        raise TypeError(f"{queue!r} was not declared on a McoflowConnection")
    return await queue.consume(callback, no_ack=no_ack)
