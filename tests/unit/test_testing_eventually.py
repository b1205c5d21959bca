"""mcoflow.testing.assert_eventually: the one poller every test uses."""

from __future__ import annotations

import asyncio
import time

import pytest

from mcoflow.testing import assert_eventually


class Counter:
    """A check that fails (or returns a falsy value) until its n-th call."""

    def __init__(self, passes_at: int, *, falsy: object = None) -> None:
        self.calls = 0
        self.passes_at = passes_at
        self.falsy = falsy

    def __call__(self) -> object:
        self.calls += 1
        if self.calls < self.passes_at:
            if self.falsy is not None:
                return self.falsy
            raise AssertionError(f"not yet ({self.calls})")
        return self.calls


async def test_returns_the_value_of_a_check_that_passes_at_once() -> None:
    check = Counter(1)
    assert await assert_eventually(check) == 1
    assert check.calls == 1


async def test_a_check_returning_none_passes() -> None:
    assert await assert_eventually(lambda: None) is None


async def test_passes_on_a_later_success_of_an_asserting_check() -> None:
    check = Counter(4)
    assert await assert_eventually(check, timeout=5, interval=0.001) == 4
    assert check.calls == 4


@pytest.mark.parametrize("falsy", [False, 0, []], ids=["False", "0", "empty"])
async def test_retries_while_the_check_returns_a_falsy_value(falsy: object) -> None:
    check = Counter(3, falsy=falsy)
    assert await assert_eventually(check, timeout=5, interval=0.001) == 3
    assert check.calls == 3


async def test_awaits_a_coroutine_function_and_returns_its_value() -> None:
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


async def test_raises_the_last_assertion_error_after_the_timeout() -> None:
    check = Counter(10**9)
    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"not yet \(\d+\)") as raised:
        await assert_eventually(check, timeout=0.2, interval=0.01)
    elapsed = time.monotonic() - started
    assert 0.2 <= elapsed < 2.0
    assert check.calls > 2  # it kept trying until the deadline
    assert str(raised.value) == f"not yet ({check.calls})"  # the last one, not the first


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
