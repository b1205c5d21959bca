"""The AMQP connection's writes of one loop turn go to the socket as one write, in order;
while busy, at most one write per hold."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from mcoflow.rpc.transports.amqp_writes import CoalescingWriter
from mcoflow.testing import assert_eventually


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


def _coalescing(hold: float = 0.0) -> tuple[CoalescingWriter, RecordingWriter]:
    """``hold=0``: the loop-turn behaviour alone (the hold has tests of its own)."""
    inner = RecordingWriter()
    return CoalescingWriter(cast(Any, inner), hold=hold), inner


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


async def test_a_busy_connection_writes_at_most_once_per_hold() -> None:
    writer, inner = _coalescing(hold=0.05)
    writer.write(b"a")
    writer.write(b"b")  # two frames in one turn: the connection is busy
    await asyncio.sleep(0)
    assert inner.writes == [b"ab"]
    writer.write(b"c")
    writer.write(b"d")
    await asyncio.sleep(0.01)
    assert inner.writes == [b"ab"]  # held: less than 50 ms since the last write
    await assert_eventually(lambda: inner.writes == [b"ab", b"cd"], timeout=1.0)


async def test_a_connection_writing_one_frame_at_a_time_is_never_held() -> None:
    writer, inner = _coalescing(hold=60.0)
    for n in range(3):
        writer.write(b"%d" % n)
        await asyncio.sleep(0)
    assert inner.writes == [b"0", b"1", b"2"]
    assert writer.socket_writes == 3
