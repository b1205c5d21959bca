"""Helpers for testing actions and plans: an engine on a temporary database, run to
completion, and ``assert_eventually`` instead of sleeps."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from mcoflow.engine.action import Action
from mcoflow.engine.records import Plan
from mcoflow.engine.world import World

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


class MemoryPublisher:
    """An outbox publisher that keeps what it was given (a product feature too: the
    embedded default uses an in-process one)."""

    def __init__(self) -> None:
        self.published: list[tuple[str, dict[str, Any]]] = []
        self.fail_next = 0

    async def publish(self, destination: str, message: dict[str, Any]) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("publisher unavailable")
        self.published.append((destination, message))


class EngineHarness:
    def __init__(self, world: World, publisher: MemoryPublisher) -> None:
        self.world = world
        self.publisher = publisher

    async def run(self, action: type[Action], /, *, timeout: float = 30.0, **args: Any) -> Plan:
        """Trigger and wait until the plan stops or pauses."""
        plan = await self.world.trigger(action, **args)
        return await self.world.wait(plan.id, timeout=timeout)


@asynccontextmanager
async def engine_harness(
    url: str | None = None, **executor_options: Any
) -> AsyncIterator[EngineHarness]:
    """An engine with an in-process executor on ``url`` (default: a fresh SQLite file)."""
    options: dict[str, Any] = {"poll_interval": 0.05, "heartbeat_interval": 0.5}
    options.update(executor_options)
    publisher = MemoryPublisher()
    with tempfile.TemporaryDirectory(prefix="mcoflow-test-") as tmp:
        db_url = url or f"sqlite:///{Path(tmp) / 'engine.db'}"
        world = await World.open(db_url, execute=True, publisher=publisher, **options)
        try:
            yield EngineHarness(world, publisher)
        finally:
            await world.close()
