"""Wake-ups from other processes: work they made due (a plan triggered from the command
line, a reply stored by another orchestrator) wakes an executor at once instead of at
its next poll. Polling stays as the fallback."""

from __future__ import annotations

import asyncio
import logging
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
    while not stopping.is_set():
        try:
            async with store.listen() as wakeups:
                listening.set()
                wake()  # anything missed while not listening
                async for _ in wakeups:
                    wake()
        except ListenLost:
            listening.clear()
            log.warning("executor %s: LISTEN connection lost; retrying", name)
            await asyncio.sleep(1.0)


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
