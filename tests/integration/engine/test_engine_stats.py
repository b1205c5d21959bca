"""``World.stats()``, what ``/metrics`` reports, on both stores."""

from __future__ import annotations

import engine_actions as A

from mcoflow.engine import PlanResult, PlanState, StepState
from mcoflow.testing import EngineHarness, assert_eventually


async def test_totals_follow_what_plans_did(harness: EngineHarness) -> None:
    world = harness.world
    empty = await world.stats()
    assert (empty.plans, empty.steps, empty.outbox_waiting, empty.timeouts) == ({}, {}, 0, 0)
    assert len(empty.executors) == 1  # the harness's own

    await harness.run(A.Chain, n=3)
    timed_out = await harness.run(A.TimesOut)
    assert timed_out.state is PlanState.PAUSED
    waiting = await world.trigger(A.WaitForEvent)

    async def suspended() -> None:
        (step,) = await world.steps(waiting.id)
        assert step.state is StepState.SUSPENDED

    await assert_eventually(suspended)
    assert await world.event(waiting.id, 1, {"last": True}, dedupe_key="reply-1")
    assert (await world.wait(waiting.id)).result is PlanResult.SUCCESS

    stats = await world.stats()
    assert stats.plans[(PlanState.STOPPED.value, PlanResult.SUCCESS.value)] == 2
    assert stats.plans[(PlanState.PAUSED.value, PlanResult.ERROR.value)] == 1
    steps = await world.steps(timed_out.id)
    assert stats.steps[StepState.ERROR.value] == sum(s.state is StepState.ERROR for s in steps)
    assert stats.timeouts == 1
    assert stats.events["user"] == 1
    assert stats.events["timeout"] == 1
    count, seconds = stats.step_seconds[A.Add.name]
    assert count == 3 and seconds >= 0
    assert A.TimesOut.name in stats.step_seconds  # ended in error: finished all the same
