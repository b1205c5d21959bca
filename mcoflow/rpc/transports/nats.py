"""NATS transport (nats-py).

Subjects: ``<collective>.broadcast.<agent>`` (broadcast), ``<collective>.node.<identity>``
(direct) and ``<reply_to>`` (replies).

Durability: direct requests and replies go through JetStream, so they wait for a
host or caller that is away or reconnecting and are acknowledged only after the
handler returned:
- stream ``MCOFLOW_NODES`` (work-queue retention, subjects ``*.node.>``) with one
  durable consumer per host;
- one stream per reply destination with one durable consumer shared by the
  caller's processes as a deliver group (competing consumers).
Publishes carry a ``Nats-Msg-Id`` so a publish retried after a disconnection is
stored once. Broadcasts use core NATS: they reach the hosts connected at that
moment and are lost for a host that is disconnected (the caller then reports it
as "no response"), which matches what a broadcast is for.
A transient reply destination (``transient=True``) is a core subscription; a reply
sent to it while the caller is disconnected is lost.
After a reconnection the ``on_reconnect`` listeners run, and ``recover_lost_requests``
always republishes: the transport cannot tell which broadcasts the hosts missed while
they or the server were away (a direct request repeated is stored again, and the host
answers it from its journal).
On a cluster (``url`` lists its servers) the streams have ``replicas`` copies, and
JetStream calls are retried while the survivors of a lost server elect leaders.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import BadRequestError, NotFoundError

from mcoflow.rpc.tls import TlsOptions
from mcoflow.rpc.transport import (
    Handler,
    ReconnectListener,
    ReconnectListeners,
    Subscription,
    Transport,
    TransportError,
    cancel_tasks,
)
from mcoflow.rpc.transports.nats_connect import first_connection
from mcoflow.rpc.transports.nats_jetstream import (
    bind_durable,
    raise_replicas,
    retried,
    stream_exists,
)

__all__ = ["NatsTransport"]

log = logging.getLogger(__name__)

NODES_STREAM = "MCOFLOW_NODES"
CLUSTER_SETTLE = 15.0  # seconds after a reconnection to a cluster: publish again
_T = TypeVar("_T")


def _durable_name(prefix: str, *parts: str) -> str:
    # Consumer and stream names may not contain '.', '*', '>' or spaces; a digest
    # keeps different names different after the unsafe characters are replaced.
    readable = re.sub(r"[^A-Za-z0-9_-]", "_", "_".join(parts))[:64]
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]
    return f"{prefix}{readable}_{digest}"


def _msg_id(*parts: bytes | str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return digest.hexdigest()


class _NatsSubscription(Subscription):
    def __init__(self, transport: NatsTransport, subs: list[Any]) -> None:
        self._transport = transport
        self._subs = subs
        self._tasks: set[asyncio.Task[None]] = set()
        self._cancelled = False

    async def cancel(self) -> None:
        if self._cancelled:
            return
        self._cancelled = True
        self._transport._subscriptions.discard(self)
        for sub in self._subs:
            try:
                # unsubscribe keeps a durable consumer (unlike JetStream's helper
                # which deletes ephemeral ones only); its unacked messages return.
                await sub.unsubscribe()
            except Exception as exc:
                log.debug("unsubscribe failed: %r", exc)
        await cancel_tasks(self._tasks)


class NatsTransport(Transport):
    def __init__(
        self,
        url: str,
        *,
        prefetch: int = 256,
        publish_timeout: float = 30.0,
        requeue_delay: float = 0.5,
        stream_max_age: float = 7 * 24 * 3600.0,
        tls: TlsOptions | None = None,
        replicas: int = 1,
    ) -> None:
        """``url``: one server, or a cluster's as a comma-separated list; ``tls``: the
        CA, client certificate and host name check of a ``tls://`` URL; ``replicas``:
        the servers that store each stream this transport creates (a cluster's)."""
        self.url = url
        self.tls = tls
        self.replicas = replicas
        self.prefetch = prefetch
        self.publish_timeout = publish_timeout
        self.requeue_delay = requeue_delay
        self.stream_max_age = stream_max_age
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._subscriptions: set[_NatsSubscription] = set()
        self._stream_cache: dict[str, tuple[bool, float]] = {}
        self._reconnect_listeners = ReconnectListeners(log)
        self._closing = False
        self._settle_call: asyncio.TimerHandle | None = None

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    async def connect(self) -> None:
        if self._nc is not None:
            return
        self._closing = False
        self._nc = await first_connection(self.url, self.tls, self._reconnected)
        self._js = self._nc.jetstream(timeout=5)
        await self._ensure_stream(
            NODES_STREAM, ["*.node.>"], retention=api.RetentionPolicy.WORK_QUEUE
        )

    async def _ensure_stream(
        self, name: str, subjects: list[str], *, retention: api.RetentionPolicy
    ) -> None:
        js = self._require_js()
        config = api.StreamConfig(
            name=name,
            subjects=subjects,
            retention=retention,
            storage=api.StorageType.FILE,
            max_age=self.stream_max_age,
            duplicate_window=120.0,
            num_replicas=self.replicas,
        )
        try:
            await self._retried(f"stream {name}", lambda: js.add_stream(config))
        except BadRequestError as exc:
            # Already there with other settings (e.g. another max_age): use it as is,
            # with at least the replicas asked for.
            log.debug("stream %s exists: %r", name, exc)
            await raise_replicas(js, name, self.replicas)

    def _reconnected(self) -> None:
        self._reconnect_listeners.notify()
        if self.replicas > 1 and self._settle_call is None:
            # A cluster that lost a node can still lose messages it had acknowledged
            # while it recovers (seen with nats-server 2.9: "Resetting stream cluster
            # state"): the listeners run again once it had time to settle, so what
            # still waits for an answer is published once more (hosts answer a
            # repeated request from their journal).
            loop = asyncio.get_running_loop()
            self._settle_call = loop.call_later(CLUSTER_SETTLE, self._settled)

    def _settled(self) -> None:
        self._settle_call = None
        if not self._closing and self.connected:
            log.info("NATS cluster: publishing what still waits again, %.0f s on", CLUSTER_SETTLE)
            self._reconnect_listeners.notify()

    def on_reconnect(self, listener: ReconnectListener) -> Callable[[], None]:
        return self._reconnect_listeners.add(listener)

    async def recover_lost_requests(self, republish: Callable[[], Awaitable[None]]) -> bool:
        await republish()
        return True

    async def close(self) -> None:
        self._closing = True
        if self._settle_call is not None:
            self._settle_call.cancel()
            self._settle_call = None
        await self._reconnect_listeners.cancel()
        for subscription in list(self._subscriptions):
            await subscription.cancel()
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            try:
                await nc.drain()
            except Exception as exc:
                log.debug("drain failed: %r", exc)
            if not nc.is_closed:
                await nc.close()

    def _require_js(self) -> JetStreamContext:
        if self._js is None:
            raise TransportError("NATS transport is not connected")
        return self._js

    def _require_nc(self) -> Client:
        if self._nc is None:
            raise TransportError("NATS transport is not connected")
        return self._nc

    # -- publishing -------------------------------------------------------------------

    async def _publish_broadcast(
        self, envelope: bytes, collective: str, agent: str, ttl: float | None
    ) -> None:
        await self._require_nc().publish(f"{collective}.broadcast.{agent}", envelope)

    async def _publish_direct(
        self, envelope: bytes, collective: str, identity: str, ttl: float | None
    ) -> None:
        await self._js_publish(f"{collective}.node.{identity}", envelope)

    async def publish_reply(self, envelope: bytes, *, reply_to: str) -> None:
        if await self._durable_destination(reply_to):
            try:
                await self._js_publish(reply_to, envelope)
                return
            except _NoStream:
                self._stream_cache.pop(reply_to, None)
        # No durable reply destination: a transient caller listens on core NATS.
        # (A JetStream publish there would wait for an ack nobody sends.)
        await self._require_nc().publish(reply_to, envelope)

    async def _durable_destination(self, subject: str) -> bool:
        loop = asyncio.get_running_loop()
        cached = self._stream_cache.get(subject)
        if cached is not None and cached[1] > loop.time():
            return cached[0]
        try:
            await self._require_js().find_stream_name_by_subject(subject)
            durable = True
        except NotFoundError:
            durable = False
        except Exception as exc:
            # Unknown (e.g. reconnecting): assume durable, the publish retries.
            log.info("stream lookup for %r failed: %r", subject, exc)
            return True
        self._stream_cache[subject] = (durable, loop.time() + 30.0)
        return durable

    async def _js_publish(self, subject: str, envelope: bytes) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.publish_timeout
        headers = {"Nats-Msg-Id": _msg_id(subject, envelope)}
        while True:
            js = self._require_js()
            remaining = deadline - loop.time()
            try:
                await js.publish(
                    subject, envelope, timeout=max(min(remaining, 5.0), 0.1), headers=headers
                )
                return
            except nats.errors.NoRespondersError:
                # Connected, yet no stream answered: none listens on that subject, or
                # its leader is being elected (a cluster's node was lost)
                if self.connected and not await stream_exists(self._require_js(), subject):
                    raise _NoStream(subject) from None
                exc: Exception = TransportError("no stream leader (disconnected or electing)")
            except Exception as error:
                exc = error
            remaining = deadline - loop.time()
            if self._closing or remaining <= 0:
                raise TransportError(f"publish to {subject!r} failed: {exc!r}") from exc
            log.info("publish to %r failed (%r); retrying", subject, exc)
            await asyncio.sleep(min(0.2, remaining))

    # -- consuming --------------------------------------------------------------------

    def _callback(self, subscription: _NatsSubscription, handler: Handler, *, acked: bool) -> Any:
        slots = asyncio.Semaphore(self.prefetch)

        async def run(msg: Msg) -> None:
            async with slots:
                try:
                    await handler(msg.data)
                except Exception:
                    if acked:
                        log.exception("handler failed; message given back to the broker")
                        await _settle(msg, ack=False, delay=self.requeue_delay)
                    else:
                        log.exception("handler failed; core NATS message dropped")
                    return
                if acked:
                    await _settle(msg, ack=True, delay=0)

        async def on_message(msg: Msg) -> None:
            # nats-py runs one callback at a time per subscription; run each message
            # in its own task so one slow handler does not hold up the others.
            task = asyncio.get_running_loop().create_task(run(msg))
            subscription._tasks.add(task)
            task.add_done_callback(subscription._tasks.discard)

        return on_message

    async def subscribe_host(
        self, *, identity: str, collective: str, agents: Sequence[str], handler: Handler
    ) -> Subscription:
        nc = self._require_nc()
        subscription = _NatsSubscription(self, [])
        subject = f"{collective}.node.{identity}"
        await self._consume_durably(
            subscription,
            handler,
            subject,
            stream=NODES_STREAM,
            durable=_durable_name("node_", collective, identity),
            max_ack_pending=self.prefetch,
            filter_subject=subject,
        )
        for agent in dict.fromkeys(agents):
            subscription._subs.append(
                await nc.subscribe(
                    f"{collective}.broadcast.{agent}",
                    cb=self._callback(subscription, handler, acked=False),
                )
            )
        if agents:
            await self._flush(nc)
        self._subscriptions.add(subscription)
        return subscription

    @staticmethod
    async def _flush(nc: Client) -> None:
        # A core subscription is live once the server has processed it; without this
        # a broadcast sent right after subscribe_* returned could miss it.
        try:
            await nc.flush(timeout=5)
        except Exception as exc:  # disconnected: it is resent on reconnection
            log.info("flush after subscribing failed: %r", exc)

    async def subscribe_replies(
        self, *, reply_to: str, handler: Handler, transient: bool = False
    ) -> Subscription:
        nc = self._require_nc()
        subscription = _NatsSubscription(self, [])
        if transient:
            subscription._subs.append(
                await nc.subscribe(reply_to, cb=self._callback(subscription, handler, acked=False))
            )
            await self._flush(nc)
        else:
            stream = _durable_name("MCOFLOW_REPLY_", reply_to)
            await self._ensure_stream(stream, [reply_to], retention=api.RetentionPolicy.WORK_QUEUE)
            durable = _durable_name("replies_", reply_to)
            await self._consume_durably(
                subscription,
                handler,
                reply_to,
                stream=stream,
                durable=durable,
                max_ack_pending=10 * self.prefetch,
                group=durable,  # processes sharing reply_to compete for the replies
            )
        self._subscriptions.add(subscription)
        return subscription

    async def _consume_durably(
        self,
        subscription: _NatsSubscription,
        handler: Handler,
        subject: str,
        *,
        stream: str,
        durable: str,
        max_ack_pending: int,
        filter_subject: str | None = None,
        group: str | None = None,
    ) -> None:
        """Add a durable JetStream consumer, acknowledged after ``handler``, to
        ``subscription``."""
        config = api.ConsumerConfig(
            durable_name=durable,
            deliver_group=group,
            deliver_subject=self._require_nc().new_inbox(),  # used when created now
            filter_subject=filter_subject or subject,
            ack_policy=api.AckPolicy.EXPLICIT,
            max_ack_pending=max_ack_pending,
            ack_wait=30.0,
        )
        callback = self._callback(subscription, handler, acked=True)
        subscription._subs.append(
            await self._retried(
                f"consumer {durable}",
                lambda: bind_durable(self._require_js(), stream, config, callback),
            )
        )

    async def _retried(self, what: str, call: Callable[[], Awaitable[_T]]) -> _T:
        return await retried(what, call, limit=self.publish_timeout, stop=lambda: self._closing)

    async def forget_host(self, *, identity: str, collective: str) -> None:
        """Delete a decommissioned host's durable consumer (and so its pending requests)."""
        with contextlib.suppress(NotFoundError):
            await self._require_js().delete_consumer(
                NODES_STREAM, _durable_name("node_", collective, identity)
            )


class _NoStream(Exception):
    """The stream a publish was for is gone (deleted, or not made yet)."""


async def _settle(msg: Msg, *, ack: bool, delay: float) -> None:
    try:
        if ack:
            await msg.ack()
        else:
            await msg.nak(delay=delay)
    except Exception as exc:
        # Disconnected: the server redelivers after ack_wait.
        log.info("could not settle message (%r); the server will redeliver it", exc)
