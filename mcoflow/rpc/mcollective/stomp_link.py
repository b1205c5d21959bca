"""One STOMP TCP connection after its CONNECTED, and the small rules around it: heart-beat
negotiation, the text of an ERROR frame, and which waiting frame an ERROR is about."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping
from dataclasses import dataclass

from mcoflow.rpc.mcollective.stomp import Frame, FrameReader, encode_frame

__all__ = ["Link", "LinkLost", "error_text", "negotiate_heartbeat"]


class LinkLost(Exception):
    """The connection ended before the frame's receipt came: it may or may not have arrived."""


def negotiate_heartbeat(ours: float, theirs: str) -> tuple[float, float]:
    """Seconds between our heart-beats, and seconds of silence after which the link counts
    as dead (twice the server's interval); 0 turns either off. We offer ``ours`` both ways
    (``heart-beat:<ms>,<ms>``), ``theirs`` is the server's ``heart-beat`` header."""
    millis = round(ours * 1000)
    try:
        server_sends, server_wants = (int(part) for part in theirs.split(","))
    except ValueError:  # absent or garbled: no heart-beats, as STOMP says
        return 0.0, 0.0
    send_every = max(millis, server_wants) / 1000 if millis and server_wants else 0.0
    silence = 2 * max(millis, server_sends) / 1000 if millis and server_sends else 0.0
    return send_every, silence


def error_text(frame: Frame) -> str:
    message = frame.header("message", "ERROR")
    detail = frame.body.decode("utf-8", "replace").strip()
    return f"{message}: {detail}" if detail and detail != message else message


def _names(destination: str) -> list[str]:
    """``/exchange/mcollective_broadcast/x`` -> the exchange name, as RabbitMQ quotes it."""
    parts = destination.split("/")
    return [part for part in parts[2:3] if part]


@dataclass(frozen=True)
class _Pending:
    destination: str
    future: asyncio.Future[None]


class Link:
    def __init__(
        self,
        name: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        framer: FrameReader,
        connected: Frame,
        send_every: float,
        silence: float,
        backlog: list[Frame],
    ) -> None:
        self.name = name
        self.reader = reader
        self.writer = writer
        self.framer = framer
        self.connected = connected  # the CONNECTED frame (server, heart-beat, session)
        self.send_every = send_every
        self.silence = silence
        self.backlog = backlog  # frames that came with CONNECTED
        self.last_write = asyncio.get_running_loop().time()
        self.lost = False
        self.reason = ""
        self.tasks: list[asyncio.Task[None]] = []
        self._pending: dict[str, _Pending] = {}
        self._ids = itertools.count(1)

    def write(self, data: bytes) -> None:
        if self.lost:
            raise LinkLost(self.reason)
        self.writer.write(data)
        self.last_write = asyncio.get_running_loop().time()

    async def request(self, command: str, headers: Mapping[str, str], body: bytes = b"") -> None:
        """Write a frame with a ``receipt`` header; return when its RECEIPT came."""
        receipt = f"{command.lower()}-{next(self._ids)}"
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[receipt] = _Pending(headers.get("destination", ""), future)
        try:
            self.write(encode_frame(command, {**headers, "receipt": receipt}, body))
            await future
        finally:
            self._pending.pop(receipt, None)
            if future.done() and not future.cancelled():
                future.exception()  # retrieved, so asyncio does not log it
            else:
                future.cancel()

    def resolve(self, receipt: str) -> None:
        pending = self._pending.pop(receipt, None)
        if pending is not None and not pending.future.done():
            pending.future.set_result(None)

    def blame(self, frame: Frame, error: Exception) -> bool:
        """Fail the waiting frame an ERROR is about; False if none is waiting.

        RabbitMQ 3.10 puts no ``receipt-id`` on an ERROR, so it goes to the waiting frame
        whose exchange or queue name the error quotes, or else the oldest one waiting."""
        pending = self._pending.get(frame.header("receipt-id"))
        if pending is None:
            text = frame.body.decode("utf-8", "replace")
            waiting = list(self._pending.values())
            quoted = (p for p in waiting if any(f"'{n}'" in text for n in _names(p.destination)))
            pending = next(quoted, waiting[0] if waiting else None)
        if pending is None or pending.future.done():
            return False
        pending.future.set_exception(error)
        return True

    def drop(self, reason: str) -> bool:
        """Close it and fail what waits on it; False if it was dropped already."""
        if self.lost:
            return False
        self.lost = True
        self.reason = reason
        self.writer.close()
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(LinkLost(reason))
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current:
                task.cancel()
        return True
