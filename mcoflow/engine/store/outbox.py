"""The transactional outbox: messages written with a step's outcome, claimed by one
executor at a time, published, and marked; published again when the broker lost them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from mcoflow.engine.records import OutboxMessage
from mcoflow.engine.schema import outbox, steps
from mcoflow.engine.states import StepState
from mcoflow.engine.store.base import StoreBase, loads


class OutboxQueries(StoreBase):
    """Claiming, publishing and republishing outbox messages."""

    async def claim_unpublished(self, limit: int, now: float, lease: float) -> list[OutboxMessage]:
        """Take up to ``limit`` messages due for publishing, oldest first, and hold them for
        ``lease`` seconds (``retry_at``): executors sharing the database then publish each
        message once. What an executor held when it stopped goes out again when it is found
        dead, when an executor starts, or at the latest when the lease ends."""

        async def work(conn: AsyncConnection) -> list[OutboxMessage]:
            due = (
                select(outbox.c.id)
                .where(
                    outbox.c.published_at.is_(None),
                    outbox.c.created_at <= now,
                    or_(outbox.c.retry_at.is_(None), outbox.c.retry_at <= now),
                )
                .order_by(outbox.c.created_at, outbox.c.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            rows = await conn.execute(
                update(outbox)
                .where(outbox.c.id.in_(due))
                .values(retry_at=now + lease)
                .returning(outbox.c.id, outbox.c.destination, outbox.c.message, outbox.c.created_at)
            )
            ordered = sorted(rows, key=lambda r: (r.created_at, r.id))
            return [OutboxMessage(r.id, r.destination, loads(r.message)) for r in ordered]

        return await self._retrying(work)  # type: ignore[no-any-return]

    async def release_outbox_claims(self) -> None:
        """Let every claimed, unpublished outbox batch go out again now (an executor that
        starts: one that stopped may have held some)."""
        async with self._write() as conn:
            await self._release_outbox_claims(conn, time.time())

    async def _release_outbox_claims(self, conn: AsyncConnection, now: float) -> None:
        # Claims are not tagged with their executor: a live executor's batch in flight is
        # released too and may go out twice; receivers drop duplicates (request id, sender).
        await conn.execute(
            update(outbox)
            .where(outbox.c.published_at.is_(None), outbox.c.retry_at > now)
            .values(retry_at=None)
        )

    async def republish_waiting(self, destination: str) -> int:
        """Publish again the newest ``destination`` message of every suspended step: the
        broker lost what it held (it restarted) and these steps still wait for an answer.
        Returns how many go out again; receivers drop the duplicates among them."""
        newest = (
            select(func.max(outbox.c.id))
            .select_from(
                outbox.join(
                    steps,
                    and_(steps.c.plan_id == outbox.c.plan_id, steps.c.idx == outbox.c.step_idx),
                )
            )
            .where(
                outbox.c.destination == destination,
                steps.c.state == StepState.SUSPENDED.value,
            )
            .group_by(outbox.c.plan_id, outbox.c.step_idx)
        )
        async with self._write() as conn:
            result = await conn.execute(
                update(outbox)
                .where(outbox.c.id.in_(newest), outbox.c.published_at.is_not(None))
                .values(published_at=None, retry_at=None)
            )
        return int(result.rowcount)

    async def mark_published(self, ids: Sequence[int]) -> None:
        if ids:
            async with self._write() as conn:
                await conn.execute(
                    update(outbox)
                    .where(self._among(outbox.c.id, ids))
                    .values(published_at=time.time(), attempts=outbox.c.attempts + 1)
                )

    async def mark_publish_failed(self, ids: Sequence[int], now: float) -> None:
        """Try these again later, waiting longer after each failure (1 s up to 5 min), so
        a destination that keeps failing does not hold up the messages behind it."""
        if ids:
            async with self._write() as conn:
                await conn.execute(
                    update(outbox)
                    .where(outbox.c.id.in_(ids))
                    .values(
                        attempts=outbox.c.attempts + 1,
                        retry_at=now
                        + case(
                            (outbox.c.attempts < 1, 1.0),
                            (outbox.c.attempts < 3, 5.0),
                            (outbox.c.attempts < 6, 30.0),
                            else_=300.0,
                        ),
                    )
                )
