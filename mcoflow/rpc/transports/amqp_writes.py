"""One socket write per event-loop turn for an AMQP connection.

aiormq writes each frame (a publish, an ack, a confirm-select) to the socket as soon as
it is queued: with asyncio's TCP_NODELAY that is one ``send`` and one TCP segment per
message, and the broker reads them one by one. A busy agent or executor queues dozens
per loop turn. Here the writes of a turn are joined and sent once, at the start of the
next turn: the bytes and their order are unchanged, only the number of system calls and
segments (on both ends) falls. It plugs in through aiormq's ``transport_factory``.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import aio_pika
from aiormq.connection import TCPTransportFactory, TLSTransportFactory, TransportFactory
from yarl import URL


class CoalescingWriter:
    """A ``StreamWriter`` whose ``write`` waits for the end of the loop turn."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._pending: list[bytes] = []
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def flush(self) -> None:
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending = []
        if not self._writer.is_closing():
            self._writer.write(data)

    async def drain(self) -> None:
        self.flush()
        await self._writer.drain()

    def close(self) -> None:
        self.flush()
        self._writer.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writer, name)


class _CoalescingTransportFactory(TransportFactory):
    async def create(
        self, url: URL, **kwargs: Any
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        inner = TLSTransportFactory() if url.scheme == "amqps" else TCPTransportFactory()
        reader, writer = await inner.create(url, **kwargs)
        return reader, cast(asyncio.StreamWriter, CoalescingWriter(writer))


class CoalescingRobustConnection(aio_pika.RobustConnection):
    """aio-pika's robust connection (reconnects included) with coalesced writes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # passed to aiormq on every (re)connection
        self.kwargs["transport_factory"] = _CoalescingTransportFactory()
