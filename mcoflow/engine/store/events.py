"""Delivering events to steps (replies, an operator's events) and waking them."""

from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from mcoflow.engine.records import NewEvent
from mcoflow.engine.store.writes import WriteCore, event_row


class EventWrites(WriteCore):
    """Events from outside the executor."""

    async def deliver_events(self, items: Sequence[NewEvent]) -> list[bool]:
        """Store events and wake their steps. Returns, per item, whether it was new
        (False: a duplicate dedupe key)."""

        async def work(conn: AsyncConnection) -> list[bool]:
            now = time.time()
            await self._lock_plans(conn, sorted({e.plan_id for e in items}))
            # A key seen twice in one batch is new only the first time.
            first_of_key: dict[str, int] = {}
            for n, item in enumerate(items):
                if item.dedupe_key is not None:
                    first_of_key.setdefault(item.dedupe_key, n)
            rows = [
                event_row(e, now)
                for n, e in enumerate(items)
                if e.dedupe_key is None or first_of_key[e.dedupe_key] == n
            ]
            stored_keys = await self._insert_events(conn, rows)
            fresh = [
                e.dedupe_key is None
                or (first_of_key[e.dedupe_key] == n and e.dedupe_key in stored_keys)
                for n, e in enumerate(items)
            ]
            earliest: dict[tuple[str, int], float] = {}
            for is_new, e in zip(fresh, items, strict=True):
                if is_new:
                    target = (e.plan_id, e.step_idx)
                    earliest[target] = min(e.due_at, earliest.get(target, e.due_at))
            await self._wake_steps(conn, earliest)
            return fresh

        return await self._retrying(work)  # type: ignore[no-any-return]
