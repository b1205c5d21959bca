"""A message the publisher says no retry can send (Undeliverable) is given up at once;
any other failure is tried again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from mcoflow.engine import Action, Event, PlanResult, World
from mcoflow.engine.executor import Undeliverable
from mcoflow.testing import assert_eventually


class SendOnce(Action):
    name = "tests.outbox.send_once"
    idempotent = True

    class Input(BaseModel):
        to: str

    def run(self, event: Event | None = None) -> None:
        self.send(self.input.to, {"to": self.input.to})


class Refusing:
    """Refuses "bad" for good, fails "flaky" once (a broker away), sends the rest."""

    def __init__(self) -> None:
        self.tries: dict[str, int] = {}

    async def publish(self, destination: str, message: dict[str, Any]) -> None:
        self.tries[destination] = self.tries.get(destination, 0) + 1
        if destination == "bad":
            raise Undeliverable("cannot be encoded for the hosts")
        if destination == "flaky" and self.tries[destination] == 1:
            raise ConnectionError("broker away")


async def test_an_undeliverable_message_is_given_up_and_others_retried(tmp_path: Path) -> None:
    publisher = Refusing()
    world = await World.open(
        f"sqlite:///{tmp_path / 'engine.db'}",
        execute=True,
        publisher=publisher,
        poll_interval=0.05,
        outbox_retry_after=0.1,
    )
    try:
        plans = {to: await world.trigger(SendOnce, to=to) for to in ("bad", "flaky")}
        for plan in plans.values():
            assert (await world.wait(plan.id, timeout=15)).result is PlanResult.SUCCESS

        async def settled() -> None:
            for plan in plans.values():
                (row,) = await world.store.outbox_messages(plan.id)
                assert row["published_at"] is not None
            assert publisher.tries == {"bad": 1, "flaky": 2}

        await assert_eventually(settled, timeout=15)
    finally:
        await world.close()
