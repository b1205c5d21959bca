"""One socket write per event-loop turn for an AMQP connection.

aiormq writes each frame (a publish, an ack, a confirm-select) to the socket as soon as
it is queued: with asyncio's TCP_NODELAY that is one ``send`` and one TCP segment per
message, and the broker reads them one by one. A busy agent or executor queues dozens
per loop turn. Here the writes of a turn are joined and sent once, at the start of the
next turn: the bytes and their order are unchanged, only the number of system calls and
segments (on both ends) falls. It plugs in through aiormq's ``transport_factory``.

While the connection is busy (the last write joined several frames), the next write
also waits until ``hold`` seconds after the last one, so a busy process writes at most
about a thousand times a second however its frames are spread over loop turns: each
write also costs the broker a read and a TCP segment, so fewer writes save the broker's
CPU (see docs/performance.md). A connection that writes one frame at a time (a
sequential caller) is never held.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from aiormq.connection import TCPTransportFactory, TLSTransportFactory, TransportFactory
from yarl import URL

DEFAULT_HOLD = 0.001


class CoalescingWriter:
    """A ``StreamWriter`` whose ``write`` waits for the end of the loop turn (and, while
    busy, for ``hold`` seconds after the last write)."""

    def __init__(self, writer: asyncio.StreamWriter, *, hold: float = DEFAULT_HOLD) -> None:
        self._writer = writer
        self._pending: list[bytes] = []
        self._loop = asyncio.get_running_loop()
        self.hold = hold
        self._busy_until = 0.0  # a write before this joins the next one
        self.socket_writes = 0

    def write(self, data: bytes) -> None:
        if not self._pending:
            wait = self._busy_until - self._loop.time()
            if wait > 0:
                self._loop.call_later(wait, self.flush)
            else:
                self._loop.call_soon(self.flush)
        self._pending.append(data)

    def flush(self) -> None:
        pending = self._pending
        if not pending:
            return
        self._pending = []
        self._busy_until = self._loop.time() + self.hold if len(pending) > 1 else 0.0
        if not self._writer.is_closing():
            self._writer.write(pending[0] if len(pending) == 1 else b"".join(pending))
            self.socket_writes += 1

    async def drain(self) -> None:
        self.flush()
        await self._writer.drain()

    def close(self) -> None:
        self.flush()
        self._writer.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writer, name)


class CoalescingTransportFactory(TransportFactory):
    """aiormq's TCP or TLS transport, its writer wrapped in a ``CoalescingWriter``."""

    async def create(
        self, url: URL, **kwargs: Any
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        inner = TLSTransportFactory() if url.scheme == "amqps" else TCPTransportFactory()
        reader, writer = await inner.create(url, **kwargs)
        return reader, cast(asyncio.StreamWriter, CoalescingWriter(writer))
