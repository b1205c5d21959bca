"""Wake-ups from other processes: work they made due (a plan triggered from the command
line, a reply stored by another orchestrator) wakes an executor at once instead of at
its next poll. Polling stays as the fallback."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from mcoflow.engine.store import ListenLost, Store
from mcoflow.engine.store.watch import CommitWatcher

# SQLite: seconds between looks at whether another process committed (a new plan)
SQLITE_WATCH_INTERVAL = 0.05
log = logging.getLogger("mcoflow.executor")


async def listen(
    store: Store,
    wake: Callable[[], None],
    listening: asyncio.Event,
    stopping: asyncio.Event,
    name: str,
) -> None:
    """PostgreSQL: the store's LISTEN, reconnected when lost; ``listening`` is set while
    it is up."""
    backoff = store.link.backoff()
    while not stopping.is_set():
        began = time.monotonic()
        try:
            async with store.listen() as wakeups:
                listening.set()
                store.link.found(began)
                backoff = store.link.backoff()
                wake()  # anything missed while not listening
                async for _ in wakeups:
                    wake()
        except ListenLost as exc:
            listening.clear()
            # the database going away is logged once by the link, not per attempt
            store.link.lost(exc)
            log.debug("executor %s: LISTEN connection lost: %s; retrying", name, exc)
            await backoff.sleep()


async def watch(store: Store, wake: Callable[[], None], stopped: asyncio.Event) -> None:
    """SQLite: wake when another connection commits (a trigger from another process);
    it may be this executor's own commit elsewhere in its pool, which costs a query."""
    loop = asyncio.get_running_loop()
    watcher = CommitWatcher(
        store.url, SQLITE_WATCH_INTERVAL, lambda: loop.call_soon_threadsafe(wake)
    )
    watcher.start()
    try:
        await stopped.wait()
    finally:
        watcher.stop()
