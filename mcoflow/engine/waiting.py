"""Waiting for an asyncio event with a time limit, without losing a cancellation."""

from __future__ import annotations

import asyncio


async def wait_set(event: asyncio.Event, timeout: float) -> bool:
    """Wait until ``event`` is set or ``timeout`` seconds pass; True if it is set.

    Not ``asyncio.wait_for``: on Python 3.11 it loses a cancellation that arrives while
    the event is being set or the time runs out, and the cancelled loop then goes on for
    ever (an executor that never stops). ``asyncio.timeout`` keeps it."""
    if event.is_set():
        return True
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        pass
    return event.is_set()
