"""An executor's loops run guarded: one that fails for want of the database is started
again after a backoff (store.reconnect), one that fails otherwise stops the executor."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from mcoflow.engine.store.reconnect import DatabaseLink, is_unreachable

# one of the executor's loops, started (again) by calling it
Loop = Callable[[], Coroutine[Any, Any, None]]
log = logging.getLogger("mcoflow.executor")


async def guarded(
    loop: Loop, link: DatabaseLink, stopping: asyncio.Event, fail: Callable[[str], None], name: str
) -> None:
    """Run ``loop``; while the database is unreachable, start it again after a backoff
    (the link logs the outage once); any other failure calls ``fail``. A loop holds
    nothing across a restart that a later pass does not find again in the database:
    what must not be lost once done (an outcome, a publish) is retried where it is."""
    backoff = link.backoff()
    while True:
        began = time.monotonic()
        try:
            await loop()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not is_unreachable(exc) or stopping.is_set():
                log.exception("executor %s: a loop failed; stopping", name)
                fail("a loop failed")
                return
            link.lost(exc)
        if time.monotonic() - began > backoff.cap:
            backoff = link.backoff()  # it ran a while: a new outage
        await backoff.sleep()
