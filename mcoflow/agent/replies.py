"""Replies ready together for one destination, signed and published as one envelope."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from mcoflow.rpc.messages import MAX_MESSAGE_BYTES, batch_size_of, encode_reply_batch
from mcoflow.rpc.security import Signer

Publish = Callable[[bytes, str], Awaitable[None]]


class _Batch:
    __slots__ = ("bodies", "done", "size")

    def __init__(self, done: asyncio.Future[None]) -> None:
        self.bodies: list[bytes] = []
        self.size = 0
        self.done = done


class ReplyBatcher:
    """Signs and publishes the replies to one reply destination that are ready in the
    same event-loop turn as one envelope (a batch), up to ``max_replies`` each.

    For a process answering for many identities (simulated hosts): a broadcast to
    10,000 of them makes 10,000 replies at once, and one Ed25519 signature (and one
    broker message) per few hundred replies instead of one each saves most of the work
    of both the agent and the caller. A reply alone is sent as a plain reply envelope.
    ``add`` returns once the envelope holding the reply is published, and raises if
    that failed (so the request is given back to the broker, like an unbatched reply).
    """

    # Room for the envelope frame and base64 growth within the receivers' limits.
    MAX_BODY = MAX_MESSAGE_BYTES - 64 * 1024

    def __init__(self, signer: Signer, publish: Publish, *, max_replies: int) -> None:
        self._signer = signer
        self._publish = publish
        self.max_replies = max(1, max_replies)
        self._open: dict[str, _Batch] = {}
        self._sending: set[asyncio.Task[None]] = set()
        self.envelopes = 0  # published, for statistics and tests

    async def add(self, body: bytes, reply_to: str) -> None:
        loop = asyncio.get_running_loop()
        batch = self._open.get(reply_to)
        if batch is not None and (
            batch_size_of(batch.size + len(body), len(batch.bodies) + 1) > self.MAX_BODY
        ):
            self._close(reply_to)
            batch = None
        if batch is None:
            batch = self._open[reply_to] = _Batch(loop.create_future())
            # Whatever else becomes ready in this turn of the loop joins it.
            loop.call_soon(self._close, reply_to, batch)
        batch.bodies.append(body)
        batch.size += len(body)
        done = batch.done
        if len(batch.bodies) >= self.max_replies:
            self._close(reply_to)
        await asyncio.shield(done)

    def _close(self, reply_to: str, batch: _Batch | None = None) -> None:
        current = self._open.get(reply_to)
        if current is None or (batch is not None and current is not batch):
            return  # already sent
        del self._open[reply_to]
        task = asyncio.get_running_loop().create_task(self._send(current, reply_to))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: _Batch, reply_to: str) -> None:
        try:
            bodies = batch.bodies
            body = bodies[0] if len(bodies) == 1 else encode_reply_batch(bodies)
            await self._publish(self._signer.sign(body), reply_to)
            self.envelopes += 1
        except asyncio.CancelledError:
            batch.done.cancel()
            raise
        except Exception as exc:
            if not batch.done.done():
                batch.done.set_exception(exc)
                batch.done.exception()  # retrieved: the adders re-raise it
        else:
            if not batch.done.done():
                batch.done.set_result(None)
