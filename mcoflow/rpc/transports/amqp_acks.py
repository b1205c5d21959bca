"""Acknowledgements of one AMQP channel, sent once per event-loop turn.

A busy agent or executor settles many deliveries per turn. One ``basic.ack`` frame
each costs a frame and a socket write apiece (about a sixth of a busy agent's CPU);
here the settled deliveries of a turn go out as one ``multiple`` ack.

A ``multiple`` ack settles every outstanding delivery up to its tag, so it may only
cover tags known to be finished. RabbitMQ numbers a channel's deliveries 1, 2, 3, …
without gaps, so the run from the last acknowledged tag upwards is checked tag by tag:
it stops at the first delivery still being handled or not yet seen. Finished tags
behind that are acknowledged singly, so a long command never holds back the acks of
the quick ones after it.
"""

from __future__ import annotations

import asyncio
import logging
from enum import Enum

import aiormq.abc

__all__ = ["ChannelAcks"]

log = logging.getLogger(__name__)


class _Tag(Enum):
    HANDLING = "handling"
    FINISHED = "finished"  # to acknowledge
    SETTLED = "settled"  # acknowledged singly, or given back


class ChannelAcks:
    def __init__(self, channel: aiormq.abc.AbstractChannel) -> None:
        self.channel = channel
        self._tags: dict[int, _Tag] = {}
        self._acknowledged = 0  # every tag up to this one is settled
        self._finished: list[int] = []  # since the last flush
        self._flush_task: asyncio.Task[None] | None = None

    def received(self, tag: int) -> None:
        self._tags[tag] = _Tag.HANDLING

    def unacknowledged(self, tag: int) -> None:
        """A delivery to a ``no_ack`` consumer on this channel: nothing to send, but the
        run of tags must step over it."""
        self._tags[tag] = _Tag.SETTLED

    def ack(self, tag: int) -> None:
        self._tags[tag] = _Tag.FINISHED
        self._finished.append(tag)
        if self._flush_task is None:
            self._flush_task = asyncio.get_running_loop().create_task(self._flush())

    async def nack(self, tag: int) -> None:
        """Give a delivery back to the queue, now."""
        self._tags[tag] = _Tag.SETTLED
        await self._send(tag, multiple=False, ack=False)

    async def drain(self) -> None:
        """Send what is still to acknowledge (before closing the connection)."""
        task = self._flush_task
        if task is not None:
            await task

    async def _flush(self) -> None:
        # One flush at a time, looping while acks arrive: frames queue for the writer in
        # the order they are sent, and a multiple ack overtaking a single ack of a tag
        # it covers would make the broker close the channel (unknown delivery tag).
        try:
            while self._finished:
                upto, singles = self._take()
                if upto is not None:
                    await self._send(upto, multiple=True, ack=True)
                for tag in singles:
                    await self._send(tag, multiple=False, ack=True)
        finally:
            self._flush_task = None

    def _take(self) -> tuple[int | None, list[int]]:
        """The end of the finished run from the last acknowledged tag, and the finished
        tags behind the first one still being handled; all marked settled."""
        tags = self._tags
        upto = None
        following = self._acknowledged + 1
        while (state := tags.get(following)) is not None and state is not _Tag.HANDLING:
            del tags[following]
            if state is _Tag.FINISHED:
                upto = following
            self._acknowledged = following
            following += 1
        finished, self._finished = self._finished, []
        singles = [tag for tag in finished if tags.get(tag) is _Tag.FINISHED]
        for tag in singles:
            tags[tag] = _Tag.SETTLED
        return upto, singles

    async def _send(self, tag: int, *, multiple: bool, ack: bool) -> None:
        try:
            # wait=False: queued for the connection's writer, in order with the channel's
            # other frames; nothing to wait for (the broker does not answer acks)
            if ack:
                await self.channel.basic_ack(tag, multiple=multiple, wait=False)
            else:
                await self.channel.basic_nack(tag, requeue=True, wait=False)
        except Exception as exc:
            # The channel it came on is gone; the broker redelivers on its own.
            log.info("could not settle delivery %d (%r); the broker will redeliver it", tag, exc)
