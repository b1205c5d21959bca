"""An executor's upkeep of the database, now and then until it stops: deleting finished
plans past their retention, refreshing the planner's statistics (store.maintenance)."""

from __future__ import annotations

import asyncio
import logging
import time

from mcoflow.engine.store import Store, is_transient_error
from mcoflow.engine.waiting import wait_set

log = logging.getLogger("mcoflow.executor")


async def delete_old_plans(
    store: Store, retention: float, interval: float, stopping: asyncio.Event
) -> None:
    """Delete finished plans older than ``retention`` seconds, every ``interval``."""
    while not stopping.is_set():
        deleted = await store.delete_finished_plans(time.time() - retention)
        if deleted:
            log.info("deleted %d finished plans older than %.0f s", deleted, retention)
        await wait_set(stopping, interval)


async def refresh_statistics(
    store: Store, interval: float, stopping: asyncio.Event, name: str
) -> None:
    """Keep the planner's statistics of the busy tables fresh (PostgreSQL)."""
    while not await wait_set(stopping, interval):
        try:
            analyzed = await store.refresh_planner_statistics()
        except Exception as exc:
            # an aid, not a duty: autovacuum analyzes too, so never stop over it
            if not is_transient_error(exc):
                log.warning("executor %s: analyzing tables failed: %s", name, exc)
            continue
        if analyzed:
            log.debug("analyzed %s", ", ".join(analyzed))
