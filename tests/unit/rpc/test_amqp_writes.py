"""The AMQP connection's writes of one loop turn go to the socket as one write, in order."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from mcoflow.rpc.transports.amqp_writes import CoalescingWriter


class RecordingWriter:
    """Stands in for asyncio's StreamWriter: records what reaches the socket."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.drains = 0
        self.closed = False
        self.transport = "the transport"

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    async def drain(self) -> None:
        self.drains += 1

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def _coalescing() -> tuple[CoalescingWriter, RecordingWriter]:
    inner = RecordingWriter()
    return CoalescingWriter(cast(Any, inner)), inner


async def test_writes_of_one_turn_become_one_write_in_order() -> None:
    writer, inner = _coalescing()
    for n in range(5):
        writer.write(b"frame%d;" % n)
    assert inner.writes == []  # not before the turn ends
    await asyncio.sleep(0)
    assert inner.writes == [b"frame0;frame1;frame2;frame3;frame4;"]
    writer.write(b"next")
    await asyncio.sleep(0)
    assert inner.writes[1:] == [b"next"]


async def test_drain_and_close_send_what_is_pending_first() -> None:
    writer, inner = _coalescing()
    writer.write(b"a")
    await writer.drain()
    assert (inner.writes, inner.drains) == ([b"a"], 1)
    writer.write(b"b")
    writer.close()
    assert inner.writes == [b"a", b"b"] and inner.closed
    await asyncio.sleep(0)  # the scheduled flush finds nothing left
    assert inner.writes == [b"a", b"b"]


async def test_nothing_is_written_to_a_closing_socket() -> None:
    writer, inner = _coalescing()
    writer.write(b"late")
    inner.closed = True
    await asyncio.sleep(0)
    assert inner.writes == []


async def test_everything_else_is_the_stream_writer() -> None:
    writer, _ = _coalescing()
    assert writer.transport == "the transport"
    assert writer.is_closing() is False
