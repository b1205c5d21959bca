"""wait_set: an event with a time limit that never swallows a cancellation."""

from __future__ import annotations

import asyncio

import pytest

from mcoflow.engine.waiting import wait_set


async def test_returns_true_when_set_and_false_on_time() -> None:
    event = asyncio.Event()
    assert await wait_set(event, 0.01) is False
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await wait_set(event, 5) is True


@pytest.mark.parametrize("turns", [0, 1, 2, 3])
async def test_a_cancel_that_meets_the_event_being_set_is_kept(turns: int) -> None:
    """The race `asyncio.wait_for` loses on Python 3.11: the event is set and the waiter
    cancelled in the same turn of the loop (an executor stopping while woken)."""

    async def loop_until_cancelled(event: asyncio.Event) -> None:
        while True:
            await wait_set(event, 10)
            event.clear()

    event = asyncio.Event()
    task = asyncio.create_task(loop_until_cancelled(event))
    for _ in range(turns + 1):
        await asyncio.sleep(0)
    event.set()
    for _ in range(turns):
        await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2)
    assert task in done, "the cancellation was lost: the loop still runs"
    assert task.cancelled()
