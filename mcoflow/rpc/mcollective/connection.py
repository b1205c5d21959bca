"""An asyncio STOMP 1.2 client connection for the mcollective transport, on the sans-IO framer.

One reader task per TCP connection ("link") reads frames: MESSAGE goes to its subscription,
RECEIPT resolves the waiting ``send``/``subscribe``, ERROR fails the frame it is about and
ends the link (RabbitMQ closes the connection after it). A lost link is replaced by a
background task that tries the servers in turn with a growing delay, subscribes again and
then notifies the ``on_reconnect`` listeners. A frame whose receipt did not come before the
link was lost is sent again on the next one: at least once, as the transport contract says.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl as ssl_module
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from mcoflow.rpc.mcollective.stomp import HEARTBEAT, Frame, FrameReader, StompError, encode_frame
from mcoflow.rpc.mcollective.stomp_link import Link, LinkLost, error_text, negotiate_heartbeat
from mcoflow.rpc.transport import ReconnectListeners, TransportError, cancel_tasks

__all__ = ["AckMode", "MessageHandler", "StompConnection", "StompServer", "StompSubscription"]

MessageHandler = Callable[[Frame], Awaitable[None]]
AckMode = Literal["auto", "client-individual"]
FIRST_DELAY, MAX_DELAY = 0.1, 5.0
_READ_SIZE = 64 * 1024


@dataclass(frozen=True)
class StompServer:
    host: str
    port: int = 61613
    login: str = ""
    passcode: str = field(default="", repr=False)
    vhost: str = "/"
    ssl: ssl_module.SSLContext | None = None

    def __str__(self) -> str:
        scheme = "stomp+ssl" if self.ssl else "stomp"
        user = f"{self.login}@" if self.login else ""
        return f"{scheme}://{user}{self.host}:{self.port} vhost {self.vhost}"


def _describe(exc: BaseException, timeout: float | None = None) -> str:
    if isinstance(exc, TimeoutError) and not str(exc):
        return f"no answer within {timeout} s" if timeout else "timed out"
    return str(exc) or type(exc).__name__


class StompSubscription:
    """One SUBSCRIBE; its handlers run in tasks, at most ``prefetch`` at a time."""

    def __init__(
        self,
        connection: StompConnection,
        ident: str,
        destination: str,
        handler: MessageHandler,
        ack: AckMode,
        prefetch: int,
        headers: Mapping[str, str],
        *,
        temporary: bool = False,
    ) -> None:
        self._connection = connection
        # a RabbitMQ /temp-queue/: no SUBSCRIBE, its messages carry the name as their
        # subscription and are acknowledged already; it ends with the TCP connection
        self.temporary = temporary
        self.id = ident
        self.destination = destination
        self._handler = handler
        self._ack = ack
        self._slots = asyncio.Semaphore(prefetch)
        self._tasks: set[asyncio.Task[None]] = set()
        self._cancelled = False
        self.headers = {
            **headers,
            "id": ident,
            "destination": destination,
            "ack": ack,
            "prefetch-count": str(prefetch),
        }

    def _deliver(self, link: Link, frame: Frame) -> None:
        task = asyncio.get_running_loop().create_task(self._handle(link, frame))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, link: Link, frame: Frame) -> None:
        async with self._slots:
            try:
                await self._handler(frame)
                verdict = "ACK"
            except Exception:
                self._connection.log.exception(
                    "handler for %s failed on message %s; the broker will redeliver it",
                    self.destination,
                    frame.header("message-id"),
                )
                verdict = "NACK"
        # on a lost link the broker has already taken the message back
        if self._ack == "client-individual" and not self.temporary and not link.lost:
            headers = {"id": frame.header("ack")}
            if verdict == "NACK":  # RabbitMQ's default, unless the broker was told otherwise
                headers["requeue"] = "true"
            link.write(encode_frame(verdict, headers))

    async def cancel(self) -> None:
        """Wait for the handlers in flight (they still ACK), then UNSUBSCRIBE.

        RabbitMQ refuses an ACK or NACK after the UNSUBSCRIBE (an ERROR that ends the
        connection), so messages delivered meanwhile stay unacknowledged until this
        connection ends; the broker then gives them to another consumer."""
        if not self._cancelled:
            self._cancelled = True
            self._connection._subscriptions.pop(self.id, None)  # no more deliveries
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
            link = self._connection._link
            if link is not None and not link.lost and not self.temporary:
                with contextlib.suppress(LinkLost, TransportError, TimeoutError):
                    async with asyncio.timeout(self._connection.send_timeout):
                        await link.request("UNSUBSCRIBE", {"id": self.id})
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _abort(self) -> None:
        self._cancelled = True
        await cancel_tasks(self._tasks)


class StompConnection:
    """A STOMP client connection to the first of ``servers`` that accepts, kept up."""

    def __init__(
        self,
        servers: Sequence[StompServer],
        *,
        heartbeat: float = 10.0,
        connect_timeout: float = 10.0,
        send_timeout: float = 10.0,
        log: logging.Logger | None = None,
    ) -> None:
        if not servers:
            raise ValueError("a STOMP connection needs at least one server")
        self.servers = tuple(servers)
        self.heartbeat = heartbeat
        self.connect_timeout = connect_timeout
        self.send_timeout = send_timeout
        self.log = log or logging.getLogger(__name__)
        self._link: Link | None = None
        self._ready = asyncio.Event()  # set while a link is up and subscribed
        self._closing = asyncio.Event()
        self._lost_signal = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._connecting = asyncio.Lock()
        self._subscriptions: dict[str, StompSubscription] = {}
        self._listeners = ReconnectListeners(self.log)
        self._ids = itertools.count(1)
        self._preferred = 0  # index of the server to try first

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    def on_reconnect(self, listener: Callable[[], Awaitable[None]]) -> Callable[[], None]:
        return self._listeners.add(listener)

    async def connect(self) -> None:
        if self._closing.is_set():
            raise TransportError("the STOMP connection was closed")
        async with self._connecting:
            if self._supervisor is not None:  # connected before: reconnecting is its job
                return
            await self._connect_any()
            self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    async def close(self) -> None:
        if self._closing.is_set():
            return
        self._closing.set()
        if self._supervisor is not None:
            await cancel_tasks([self._supervisor])
        for subscription in list(self._subscriptions.values()):
            await subscription._abort()
        link = self._link
        if link is not None:
            with contextlib.suppress(LinkLost, TransportError, TimeoutError, OSError):
                async with asyncio.timeout(min(self.send_timeout, 5.0)):
                    await link.request("DISCONNECT", {})
            self._lost(link, "closed by us")
            await cancel_tasks(link.tasks)
            with contextlib.suppress(OSError):
                await link.writer.wait_closed()
        await self._listeners.cancel()

    async def send(self, destination: str, body: bytes, headers: Mapping[str, str] = {}) -> None:
        """Send; return once the broker's RECEIPT came, sending again after a lost link."""
        frame_headers = {**headers, "destination": destination}
        try:
            async with asyncio.timeout(self.send_timeout):
                while True:
                    link = await self._wait_link()
                    with contextlib.suppress(LinkLost):
                        await link.request("SEND", frame_headers, body)
                        return
        except TimeoutError:
            raise TransportError(
                f"no receipt for a message to {destination} within {self.send_timeout} s"
            ) from None

    async def subscribe(
        self,
        destination: str,
        handler: MessageHandler,
        *,
        ack: AckMode = "client-individual",
        prefetch: int = 100,
        headers: Mapping[str, str] = {},
    ) -> StompSubscription:
        if prefetch < 1:
            raise ValueError("prefetch must be at least 1")
        ident = f"sub-{next(self._ids)}"
        subscription = StompSubscription(self, ident, destination, handler, ack, prefetch, headers)
        try:
            async with asyncio.timeout(self.send_timeout):
                link = await self._wait_link()
                self._subscriptions[ident] = subscription  # before its first MESSAGE
                try:
                    await link.request("SUBSCRIBE", subscription.headers)
                except LinkLost:  # the reconnection subscribes it with the others
                    await self._wait_link()
        except TimeoutError:
            self._subscriptions.pop(ident, None)
            raise TransportError(
                f"no receipt for the subscription to {destination} within {self.send_timeout} s"
            ) from None
        except BaseException:
            self._subscriptions.pop(ident, None)
            raise
        return subscription

    def temporary_queue(self, name: str, handler: MessageHandler) -> StompSubscription:
        """Receive what is sent to the ``reply-to: /temp-queue/<name>`` of this connection's
        messages (RabbitMQ makes the queue on first use and drops it with the connection:
        what was on its way when the connection was lost is gone)."""
        destination = f"/temp-queue/{name}"
        subscription = StompSubscription(
            self, destination, destination, handler, "auto", 1_000, {}, temporary=True
        )
        self._subscriptions[destination] = subscription
        return subscription

    async def _wait_link(self) -> Link:
        while True:
            if self._closing.is_set():
                raise TransportError("the STOMP connection is closed")
            if self._ready.is_set() and self._link is not None:
                return self._link
            ready = asyncio.ensure_future(self._ready.wait())
            closing = asyncio.ensure_future(self._closing.wait())
            try:
                await asyncio.wait([ready, closing], return_when=asyncio.FIRST_COMPLETED)
            finally:
                ready.cancel()
                closing.cancel()

    async def _connect_any(self) -> None:
        failures = []
        count = len(self.servers)
        for offset in range(count):
            index = (self._preferred + offset) % count
            server = self.servers[index]
            try:
                link = await self._open(server)
            except (OSError, TimeoutError, StompError, TransportError) as exc:
                failures.append(f"{server}: {_describe(exc, self.connect_timeout)}")
                continue
            self._preferred = index
            await self._start(link)
            return
        raise TransportError("no STOMP server accepted the connection: " + "; ".join(failures))

    async def _open(self, server: StompServer) -> Link:
        async with asyncio.timeout(self.connect_timeout):
            reader, writer = await asyncio.open_connection(server.host, server.port, ssl=server.ssl)
            try:
                millis = round(self.heartbeat * 1000)
                connect = {
                    "accept-version": "1.2",
                    "host": server.vhost,
                    "login": server.login,
                    "passcode": server.passcode,
                    "heart-beat": f"{millis},{millis}",
                }
                writer.write(encode_frame("CONNECT", connect))
                framer = FrameReader()
                frames: list[Frame] = []
                while not frames:
                    data = await reader.read(_READ_SIZE)
                    if not data:
                        raise TransportError("the server closed the connection before CONNECTED")
                    frames = framer.feed(data)
                answer = frames[0]
                if answer.command == "ERROR":
                    raise TransportError(f"refused: {error_text(answer)}")
                if answer.command != "CONNECTED":
                    raise TransportError(f"answered CONNECT with {answer.command}")
            except BaseException:
                writer.close()
                raise
        send_every, silence = negotiate_heartbeat(self.heartbeat, answer.header("heart-beat"))
        self.log.info(
            "STOMP connected to %s (%s), heart-beats out %s s, in %s s",
            server,
            answer.header("server", "unknown server"),
            send_every,
            silence / 2,
        )
        return Link(str(server), reader, writer, framer, answer, send_every, silence, frames[1:])

    async def _start(self, link: Link) -> None:
        self._link = link
        loop = asyncio.get_running_loop()
        link.tasks.append(loop.create_task(self._read(link)))
        if link.send_every:
            link.tasks.append(loop.create_task(self._beat(link)))
        try:
            for subscription in list(self._subscriptions.values()):
                if not subscription.temporary:
                    await link.request("SUBSCRIBE", subscription.headers)
        except LinkLost as exc:
            raise TransportError(f"{link.name}: lost while subscribing again: {exc}") from None
        except TransportError:
            self._lost(link, "a subscription was refused")
            raise
        self._ready.set()

    async def _supervise(self) -> None:
        while True:
            await self._lost_signal.wait()
            self._lost_signal.clear()
            delay = FIRST_DELAY
            while self._link is None:
                try:
                    await self._connect_any()
                except TransportError as exc:
                    self.log.warning("STOMP reconnection failed (next in %s s): %s", delay, exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, MAX_DELAY)
            if self._lost_signal.is_set():
                continue  # lost again at once: that was no reconnection
            self._listeners.notify()

    async def _read(self, link: Link) -> None:
        reason = "the connection was closed (EOF)"
        try:
            frames = link.backlog
            while not link.lost:
                for frame in frames:
                    if (ended := self._dispatch(link, frame)) is not None:
                        reason = ended
                        return
                async with asyncio.timeout(link.silence or None):
                    data = await link.reader.read(_READ_SIZE)
                if not data:
                    return
                frames = link.framer.feed(data)
        except TimeoutError:
            reason = f"nothing heard for {link.silence} s (heart-beats missed)"
        except (OSError, StompError) as exc:
            reason = _describe(exc)
        finally:
            self._lost(link, reason)

    def _dispatch(self, link: Link, frame: Frame) -> str | None:
        if frame.command == "MESSAGE":
            subscription = self._subscriptions.get(frame.header("subscription"))
            if subscription is not None:
                subscription._deliver(link, frame)
            else:  # cancelled: no NACK possible (see StompSubscription.cancel)
                self.log.debug(
                    "message for cancelled subscription %s", frame.header("subscription")
                )
        elif frame.command == "RECEIPT":
            link.resolve(frame.header("receipt-id"))
        elif frame.command == "ERROR":
            text = error_text(frame)
            if not link.blame(frame, TransportError(f"{link.name}: {text}")):
                self.log.error("STOMP ERROR from %s: %s", link.name, text)
            return f"ERROR frame: {text}"
        else:
            self.log.warning("unexpected STOMP %s frame from %s", frame.command, link.name)
        return None

    async def _beat(self, link: Link) -> None:
        loop = asyncio.get_running_loop()
        every = link.send_every / 2  # early: a late heart-beat makes the broker drop us
        while not link.lost:
            idle = loop.time() - link.last_write
            if idle >= every:
                link.write(HEARTBEAT)
                idle = 0.0
            await asyncio.sleep(every - idle)

    def _lost(self, link: Link, reason: str) -> None:
        if not link.drop(reason):
            return
        if self._link is link:
            self._link = None
            self._ready.clear()
            if not self._closing.is_set():
                self.log.warning("lost the STOMP connection to %s: %s", link.name, reason)
                self._lost_signal.set()
