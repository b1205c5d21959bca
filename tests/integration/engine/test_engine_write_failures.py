"""When the database or the broker refuses what the executor hands them: a transient
error is retried, what can never go through fails on its own and holds nobody up."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import engine_actions as A
from sqlalchemy.exc import OperationalError

from mcoflow.engine import PlanResult, PlanState, StepState, World
from mcoflow.engine.records import StepOutcome
from mcoflow.engine.store import Store
from mcoflow.testing import MemoryPublisher, assert_eventually, engine_harness


class RefusingStore:
    """Wraps ``Store.write_outcomes`` to fail the way a database would."""

    def __init__(self, store: Store, *, poison_sum: int, transient_failures: int) -> None:
        self.write = store.write_outcomes
        self.poison_sum = poison_sum
        self.transient_failures = transient_failures
        self.calls = 0

    async def write_outcomes(self, outcomes: Sequence[StepOutcome], *, by: str) -> Any:
        self.calls += 1
        if self.transient_failures:
            self.transient_failures -= 1
            raise OperationalError("COMMIT", {}, ConnectionResetError("connection lost"))
        if any((o.output or {}).get("sum") == self.poison_sum for o in outcomes):
            raise ValueError("value out of range for this column")
        return await self.write(outcomes, by=by)


async def test_transient_errors_are_retried_and_a_poison_outcome_errors_only_its_step(
    db_url: str,
) -> None:
    async with engine_harness(db_url) as harness:
        world = harness.world
        refusing = RefusingStore(world.store, poison_sum=666, transient_failures=2)
        world.store.write_outcomes = refusing.write_outcomes  # type: ignore[method-assign]
        plans = [await world.trigger(A.Add, a=n, b=1) for n in (1, 665, 2, 3)]
        done = [await world.wait(p.id, timeout=30) for p in plans]

        assert [d.result for d in done] == [
            PlanResult.SUCCESS,
            PlanResult.ERROR,
            PlanResult.SUCCESS,
            PlanResult.SUCCESS,
        ]
        assert done[1].state is PlanState.PAUSED
        (poisoned,) = await world.steps(plans[1].id)
        assert poisoned.state is StepState.ERROR
        assert poisoned.error is not None
        assert "storing the step's outcome failed" in poisoned.error["message"]
        assert "value out of range" in poisoned.error["message"]
        (fine,) = await world.steps(plans[2].id)
        assert fine.output == {"sum": 3}
        assert refusing.transient_failures == 0


class RefusingPublisher(MemoryPublisher):
    """A broker that refuses one destination for good."""

    def __init__(self, refused: str) -> None:
        super().__init__()
        self.refused = refused

    async def publish(self, destination: str, message: dict[str, Any]) -> None:
        if destination == self.refused:
            raise ConnectionError(f"no route to {destination}")
        await super().publish(destination, message)


async def test_a_destination_that_keeps_failing_does_not_hold_up_the_others(db_url: str) -> None:
    publisher = RefusingPublisher("down")
    world = await World.open(
        db_url, execute=True, publisher=publisher, poll_interval=0.05, outbox_batch_size=4
    )
    try:
        stuck = [await world.trigger(A.Send, to="down") for _ in range(8)]
        for plan in stuck:
            await world.wait(plan.id, timeout=30)
        fine = await world.trigger(A.Send, to="up")

        async def delivered() -> None:
            assert publisher.published == [("up", {"hello": "up"})]

        await assert_eventually(delivered, timeout=15)
        rows = [(await world.store.outbox_messages(p.id))[0] for p in stuck]
        assert all(r["published_at"] is None and r["attempts"] >= 1 for r in rows)
        assert all(r["retry_at"] is not None and r["retry_at"] > r["created_at"] for r in rows)
        (sent,) = await world.store.outbox_messages(fine.id)
        assert sent["published_at"] is not None
    finally:
        await world.close()
