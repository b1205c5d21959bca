"""``assert_eventually``: poll a check instead of sleeping for a guessed time."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")


@overload
async def assert_eventually(
    check: Callable[[], Awaitable[T]], *, timeout: float = ..., interval: float = ...
) -> T: ...


@overload
async def assert_eventually(
    check: Callable[[], T], *, timeout: float = ..., interval: float = ...
) -> T: ...


async def assert_eventually(
    check: Callable[[], Any], *, timeout: float = 10.0, interval: float = 0.02
) -> Any:
    """Call ``check`` every ``interval`` seconds until it passes; return what it returned.

    ``check`` is a function or a coroutine function (what it returns is awaited). It passes
    when it neither raises AssertionError nor returns a falsy value other than None, so a
    function that asserts and a bare comparison (``lambda: len(replies) == 3``) both work.
    Any other exception propagates at once. After ``timeout`` seconds the last
    AssertionError is raised.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            assert result is None or result, f"{check!r} returned {result!r}"
            return result
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(interval)
