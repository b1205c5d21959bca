"""Failover in seconds (PostgreSQL): an executor holds its liveness lock
(store.liveness) for its whole life, and looks every second for registered executors
whose lock is free. Those are released at once, through the same path as an executor
found dead by its heartbeat. A stalled executor keeps its lock and is left alone; the
heartbeat timeout still covers it. SQLite keeps the heartbeat alone (one machine).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from mcoflow.engine.store import Store, is_transient_error
from mcoflow.engine.store.liveness import LivenessLost, LivenessSession
from mcoflow.engine.store.reconnect import is_unreachable
from mcoflow.engine.waiting import wait_set

# seconds between looks at the others' locks (one cheap query)
INTERVAL = 1.0
# After its own session (re)connects, an executor waits this long before judging the
# others: a database restart or a network cut drops every session at once, and the
# others need a moment to take their locks again.
SETTLE = 10.0
# between attempts to take this executor's own lock (held by its previous session until
# the server drops it, or for a moment by another executor looking)
RETRY = 0.2
log = logging.getLogger("mcoflow.executor")


class Liveness:
    def __init__(
        self, store: Store, executor_id: str, *, interval: float = INTERVAL, settle: float = SETTLE
    ) -> None:
        self.store = store
        self.id = executor_id
        self.interval = interval
        self.settle = settle
        self._session: LivenessSession | None = None
        self._since = 0.0
        # set while this executor holds its lock
        self.holding = asyncio.Event()

    async def start(self) -> None:
        """Take the lock; before registering, so no one finds it registered but free."""
        await self._take(asyncio.Event())  # a new id: nobody else holds its lock

    async def close(self) -> None:
        """Give the lock up; after unregistering."""
        self.holding.clear()
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def watch(
        self, stopping: asyncio.Event, fail: Callable[[str], None], woken: Callable[[], None]
    ) -> None:
        """Look at the others' locks until stopping; take this one's again when lost."""
        backoff = self.store.link.backoff()
        while not stopping.is_set():
            try:
                if self._session is None:
                    if not await self._take(stopping):
                        return  # stopping
                    log.info("executor %s: liveness lock held again", self.id)
                    if not await self.store.heartbeat(self.id):
                        log.error("executor %s was declared dead meanwhile; stopping", self.id)
                        fail("declared dead by another executor (its database session was lost)")
                        return
                await self._look(woken)
                backoff = self.store.link.backoff()
            except Exception as exc:
                if not (isinstance(exc, LivenessLost) or is_transient_error(exc)):
                    raise
                if self._session is not None and isinstance(exc, LivenessLost):
                    await self.close()
                if is_unreachable(exc):
                    self.store.link.lost(exc)  # the process says it once, not per attempt
                log.debug("executor %s: liveness check failed: %s; retrying", self.id, exc)
                await wait_set(stopping, backoff.next())
                continue
            await wait_set(stopping, self.interval)

    async def _look(self, woken: Callable[[], None]) -> None:
        assert self._session is not None
        if time.monotonic() - self._since < self.settle:
            await self._session.ping()  # a lost connection shows here too
            return
        gone = await self._session.take_free()
        if not gone:
            return
        try:
            await self.store.release_executors(gone, by=self.id)
        finally:
            await self._session.let_go(gone)
        log.warning(
            "released the claims of executors %s: their database sessions ended", ", ".join(gone)
        )
        woken()

    async def _take(self, stopping: asyncio.Event) -> bool:
        """Connect and take the lock; False if stopping meanwhile."""
        session = await self.store.liveness_session(self.id)
        try:
            while not await session.hold():
                if await wait_set(stopping, RETRY):
                    await session.close()
                    return False
        except BaseException:
            await session.close()
            raise
        self._session = session
        self._since = time.monotonic()
        self.holding.set()
        return True
