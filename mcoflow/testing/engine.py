"""An engine on a temporary database for tests of actions and plans, run to completion."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from mcoflow.engine.action import Action
from mcoflow.engine.records import Plan
from mcoflow.engine.world import World


class MemoryPublisher:
    """An outbox publisher for tests: it keeps what it was given instead of sending it,
    and ``fail_next`` makes that many publishes fail as a broker that is away would."""

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
