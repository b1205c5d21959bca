"""Coalesced acknowledgements: one multiple ack per turn for the finished run of tags,
single acks for finished tags behind one still being handled, never an ack for a tag
that is not finished."""

from __future__ import annotations

import asyncio
from typing import Any

from mcoflow.rpc.transports.amqp_acks import ChannelAcks


class RecordingChannel:
    """Stands in for an aiormq channel: records the settle frames it is given."""

    def __init__(self) -> None:
        self.frames: list[tuple[str, int, bool]] = []

    async def basic_ack(self, tag: int, multiple: bool = False, wait: bool = True) -> None:
        self.frames.append(("ack", tag, multiple))

    async def basic_nack(
        self, tag: int, multiple: bool = False, requeue: bool = True, wait: bool = True
    ) -> None:
        self.frames.append(("nack", tag, multiple))


def recording_acks() -> tuple[RecordingChannel, ChannelAcks]:
    channel = RecordingChannel()
    return channel, ChannelAcks(channel)  # type: ignore[arg-type]


async def turn() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_a_turns_finished_run_goes_out_as_one_multiple_ack() -> None:
    channel, acks = recording_acks()
    for tag in range(1, 6):
        acks.received(tag)
    for tag in (2, 1, 3):
        acks.ack(tag)
    await turn()
    assert channel.frames == [("ack", 3, True)]


async def test_finished_tags_behind_a_busy_one_are_acked_singly_and_never_covered() -> None:
    channel, acks = recording_acks()
    for tag in range(1, 5):
        acks.received(tag)
    acks.ack(1)
    acks.ack(3)  # 2 is still being handled
    await turn()
    assert channel.frames == [("ack", 1, True), ("ack", 3, False)]
    acks.ack(2)
    await turn()
    # 3 went already; the multiple ack stops at 2 (4 is still being handled)
    assert channel.frames[2:] == [("ack", 2, True)]
    acks.ack(4)
    await turn()
    assert channel.frames[3:] == [("ack", 4, True)]


async def test_a_tag_not_seen_yet_stops_the_run() -> None:
    channel, acks = recording_acks()
    acks.received(2)  # delivery 1 not handed to us yet
    acks.ack(2)
    await turn()
    assert channel.frames == [("ack", 2, False)]
    acks.received(1)
    acks.ack(1)
    await turn()
    assert channel.frames[1:] == [("ack", 1, True)]


async def test_given_back_tags_are_nacked_at_once_and_passed_by_the_run() -> None:
    channel, acks = recording_acks()
    for tag in (1, 2, 3):
        acks.received(tag)
    await acks.nack(1)
    assert channel.frames == [("nack", 1, False)]
    acks.ack(2)
    acks.ack(3)
    await acks.drain()
    assert channel.frames[1:] == [("ack", 3, True)]


async def test_a_closed_channel_is_logged_not_raised(caplog: Any) -> None:
    class Closed(RecordingChannel):
        async def basic_ack(self, tag: int, multiple: bool = False, wait: bool = True) -> None:
            raise RuntimeError("channel closed")

    acks = ChannelAcks(Closed())  # type: ignore[arg-type]
    acks.received(1)
    acks.ack(1)
    with caplog.at_level("INFO"):
        await turn()
    assert "the broker will redeliver it" in caplog.text


async def test_a_multiple_ack_never_overtakes_a_single_ack_it_covers() -> None:
    """The writer's queue can be full: sends then wait, and acks finished meanwhile must
    not go out ahead of the ones already taken (the broker would close the channel)."""

    class SlowChannel(RecordingChannel):
        async def basic_ack(self, tag: int, multiple: bool = False, wait: bool = True) -> None:
            await asyncio.sleep(0.01)
            self.frames.append(("ack", tag, multiple))

    channel = SlowChannel()
    acks = ChannelAcks(channel)  # type: ignore[arg-type]
    for tag in range(1, 6):
        acks.received(tag)
    acks.ack(1)
    acks.ack(3)  # behind 2, still being handled: a single ack
    await asyncio.sleep(0.005)  # the first flush waits in its send
    acks.ack(2)
    acks.ack(4)
    acks.ack(5)
    await asyncio.sleep(0.1)
    await acks.drain()
    for position, (_, tag, multiple) in enumerate(channel.frames):
        if not multiple:
            assert all(t < tag for _, t, m in channel.frames[:position] if m), channel.frames
    assert channel.frames[-1] == ("ack", 5, True)


async def test_unacknowledged_deliveries_on_the_channel_do_not_stop_the_run() -> None:
    channel, acks = recording_acks()
    acks.received(1)
    acks.unacknowledged(2)  # a no_ack consumer's delivery on the same channel
    acks.received(3)
    acks.ack(1)
    acks.ack(3)
    await acks.drain()
    assert channel.frames == [("ack", 3, True)]
