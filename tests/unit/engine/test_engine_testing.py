"""mcoflow.testing: assert_eventually, and the harness it ships with."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from mcoflow.engine import Action, Event, PlanResult, PlanState
from mcoflow.testing import MemoryPublisher, assert_eventually, engine_harness


class Counter:
    """A check that fails (or returns a falsy value) until its n-th call."""

    def __init__(self, passes_at: int, *, falsy: bool = False) -> None:
        self.calls = 0
        self.passes_at = passes_at
        self.falsy = falsy

    def __call__(self) -> int | None:
        self.calls += 1
        if self.calls < self.passes_at:
            if self.falsy:
                return 0
            raise AssertionError(f"not yet ({self.calls})")
        return self.calls


async def test_returns_the_value_of_a_check_that_passes_at_once() -> None:
    check = Counter(1)
    assert await assert_eventually(check) == 1
    assert check.calls == 1


async def test_a_check_returning_none_passes() -> None:
    assert await assert_eventually(lambda: None) is None


async def test_retries_a_failing_assertion_until_it_passes() -> None:
    check = Counter(4)
    assert await assert_eventually(check, timeout=5, interval=0.001) == 4
    assert check.calls == 4


async def test_retries_while_the_check_returns_a_falsy_value() -> None:
    check = Counter(3, falsy=True)
    assert await assert_eventually(check, timeout=5, interval=0.001) == 3
    assert check.calls == 3


async def test_awaits_an_async_check() -> None:
    calls = 0

    async def check() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        assert calls >= 2, "first call fails"
        return "ready"

    assert await assert_eventually(check, timeout=5, interval=0.001) == "ready"
    assert calls == 2


async def test_awaits_a_future_returned_by_the_check() -> None:
    loop = asyncio.get_running_loop()

    def check() -> asyncio.Future[int]:
        future: asyncio.Future[int] = loop.create_future()
        future.set_result(7)
        return future

    assert await assert_eventually(check) == 7


async def test_reraises_the_last_assertion_error_after_the_timeout() -> None:
    check = Counter(10**9)
    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"not yet \(\d+\)"):
        await assert_eventually(check, timeout=0.2, interval=0.01)
    elapsed = time.monotonic() - started
    assert 0.2 <= elapsed < 2.0
    assert check.calls > 2  # it kept trying until the deadline


async def test_a_check_that_stays_falsy_fails_naming_what_it_returned() -> None:
    with pytest.raises(AssertionError, match=r"returned \[\]"):
        await assert_eventually(list, timeout=0.05, interval=0.01)


async def test_other_exceptions_propagate_at_once_without_retrying() -> None:
    calls = 0

    def check() -> None:
        nonlocal calls
        calls += 1
        raise KeyError("broken check")

    started = time.monotonic()
    with pytest.raises(KeyError, match="broken check"):
        await assert_eventually(check, timeout=10)
    assert calls == 1
    assert time.monotonic() - started < 1.0


async def test_waits_for_something_another_task_does() -> None:
    box: list[str] = []

    async def later() -> None:
        await asyncio.sleep(0.05)
        box.append("done")

    task = asyncio.create_task(later())

    def check() -> None:
        assert box == ["done"]

    await assert_eventually(check, timeout=5, interval=0.005)
    await task
    assert box == ["done"]


# ---- the harness ------------------------------------------------------------------------------


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
