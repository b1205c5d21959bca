"""``assert_eventually``: poll a check instead of sleeping for a guessed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def assert_eventually(
    check: Callable[[], Awaitable[T] | T], *, timeout: float = 10.0, interval: float = 0.02
) -> T:
    """Call ``check`` until it returns without AssertionError (and a truthy value)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if asyncio.iscoroutine(result) or isinstance(result, Awaitable):
                result = await result
            assert result is None or result, f"{check!r} returned {result!r}"
            return result
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(interval)
