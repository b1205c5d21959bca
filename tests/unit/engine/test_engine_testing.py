"""mcoflow.testing: the engine harness and its MemoryPublisher (assert_eventually has
tests/unit/test_testing_eventually.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcoflow.engine import Action, Event, PlanResult, PlanState
from mcoflow.testing import MemoryPublisher, assert_eventually, engine_harness


def _exists(path: str) -> bool:
    return Path(path).exists()


class Hello(Action):
    def run(self, event: Event | None = None) -> None:
        self.output["hello"] = self.input.get("name", "world")
        self.send("greetings", {"to": self.output["hello"]})


async def test_engine_harness_on_a_temporary_sqlite_file_runs_a_plan_to_completion() -> None:
    async with engine_harness() as h:
        database = h.world.store.engine.url.database
        assert database is not None and _exists(database)
        plan = await h.run(Hello, name="mcoflow")
        assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
        (step,) = await h.world.steps(plan.id)
        assert step.output == {"hello": "mcoflow"}

        def published() -> None:
            assert h.publisher.published == [("greetings", {"to": "mcoflow"})]

        await assert_eventually(published)
    assert not _exists(database)  # the temporary database is gone


async def test_memory_publisher_fails_the_number_of_times_asked() -> None:
    publisher = MemoryPublisher()
    publisher.fail_next = 1
    with pytest.raises(ConnectionError):
        await publisher.publish("a", {"n": 1})
    await publisher.publish("a", {"n": 2})
    assert publisher.published == [("a", {"n": 2})]
