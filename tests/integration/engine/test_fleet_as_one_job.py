"""A plan with child plans (a fleet) behaves as one job: resume, cancel and skip reach its
children, and its progress and counts are by child (host). Both stores."""

from __future__ import annotations

from typing import Any

import engine_actions as A
import pytest
from pydantic import BaseModel

from mcoflow.engine import Action, Event, PlanResult, PlanState, StepState, World
from mcoflow.engine.child_status import ChildCounts
from mcoflow.testing import EngineHarness, assert_eventually


@pytest.fixture(autouse=True)
def _reset() -> None:
    A.FAILING.clear()


class FindHosts(Action):
    """Like a discovery: weightless, its finding is no part of the fleet's progress."""

    weight = 0.0

    class Input(BaseModel):
        hosts: list[str]

    def run(self, event: Event | None = None) -> None:
        self.output["hosts"] = self.input.hosts


class FoundFleet(A.Fleet):
    """A fleet whose hosts are found by a step first, as a fleet job by filter."""

    def plan(self, **args: Any) -> None:
        with self.sequence():
            found = self.plan_action(FindHosts, hosts=args["hosts"])
            self.plan_self(**{**args, "hosts": found.output["hosts"]})


async def children(world: World, plan_id: str) -> ChildCounts:
    return ChildCounts.of(await world.store.child_plans(plan_id))


async def fleet_step_error(world: World, plan_id: str) -> str:
    (step,) = [s for s in await world.steps(plan_id) if s.action == A.Fleet.name]
    assert step.error is not None
    return str(step.error["message"])


async def test_resume_of_a_paused_fleet_resumes_its_failed_hosts(harness: EngineHarness) -> None:
    world = harness.world
    hosts = [f"h{i}" for i in range(6)]
    A.FAILING.update(hosts[:2])
    plan = await harness.run(A.Fleet, hosts=hosts, child="flaky")
    assert (plan.state, plan.result) == (PlanState.PAUSED, PlanResult.ERROR)
    counts = await children(world, plan.id)
    assert (counts.success, counts.error, counts.paused) == (4, 2, 2)
    assert "finished with 2 failed of 6" in await fleet_step_error(world, plan.id)

    A.FAILING.clear()  # the operator fixed the hosts
    resumed = await world.resume(plan.id, by="ops")
    assert resumed.state is PlanState.RUNNING
    # the failed hosts run again with the fleet, in the same transaction
    assert (await children(world, plan.id)).paused == 0
    done = await world.wait(plan.id, until=frozenset({PlanState.STOPPED}), timeout=30)
    assert done.result is PlanResult.SUCCESS
    assert (await children(world, plan.id)).success == 6
    history = await world.history((await world.store.child_plans(plan.id))[0].id)
    assert ("resumed", "with the plan it is part of", "ops") in {
        (h.what, h.detail, h.by) for h in history
    }


async def test_resume_of_a_fleet_whose_hosts_still_fail_pauses_it_again(
    harness: EngineHarness,
) -> None:
    world = harness.world
    A.FAILING.add("h0")
    plan = await harness.run(A.Fleet, hosts=["h0", "h1"], child="flaky")
    await world.resume(plan.id)
    again = await world.wait(plan.id, timeout=30)
    assert (again.state, again.result) == (PlanState.PAUSED, PlanResult.ERROR)
    (failed,) = [c for c in await world.store.child_plans(plan.id) if c.label == "h0"]
    (step,) = await world.steps(failed.id)
    assert step.attempts == 2  # it did run again


async def test_cancel_of_a_paused_fleet_cancels_its_paused_hosts(harness: EngineHarness) -> None:
    world = harness.world
    hosts = [f"h{i}" for i in range(10)]
    A.FAILING.update(hosts[:3])
    plan = await harness.run(A.Fleet, hosts=hosts, limit=1, max_failures=2, child="flaky")
    assert plan.state is PlanState.PAUSED
    before = await children(world, plan.id)
    # past the threshold the hosts not started are held for a Resume
    assert (before.error, before.paused, before.planned, before.cancelled) == (2, 2, 8, 0)
    message = await fleet_step_error(world, plan.id)
    assert message == (
        "stopped after 2 failed of 10 sub-plans: 0 succeeded, 2 failed, 8 not started, "
        "0 cancelled; Resume retries the failed sub-plans and goes on with the rest"
    )

    cancelled = await world.cancel(plan.id, by="ops")
    assert (cancelled.state, cancelled.result) == (PlanState.STOPPED, PlanResult.CANCELLED)
    kids = await world.store.child_plans(plan.id)
    assert {(c.state, c.result) for c in kids} == {(PlanState.STOPPED, PlanResult.CANCELLED)}
    after = await children(world, plan.id)
    assert (after.cancelled, after.paused, after.total) == (10, 0, 10)


async def test_resume_after_the_failure_threshold_goes_on_with_the_hosts_not_started(
    harness: EngineHarness,
) -> None:
    world = harness.world
    hosts = [f"h{i}" for i in range(10)]
    A.FAILING.update({"h0", "h1", "h5"})
    plan = await harness.run(A.Fleet, hosts=hosts, limit=1, max_failures=2, child="flaky")
    assert plan.state is PlanState.PAUSED
    assert (await children(world, plan.id)).planned == 8

    A.FAILING.difference_update({"h0", "h1"})  # the operator fixed the first two
    await world.resume(plan.id, by="ops")
    # the rollout goes on, one at a time, until h5 fails: one failure is under the threshold
    done = await world.wait(plan.id, until=frozenset({PlanState.PAUSED}), timeout=30)
    after = await children(world, plan.id)
    assert (after.success, after.error, after.planned, after.cancelled) == (9, 1, 0, 0)
    assert "finished with 1 failed of 10" in await fleet_step_error(world, done.id)


async def test_cancel_of_a_running_fleet_cancels_its_paused_hosts_too(
    harness: EngineHarness,
) -> None:
    world = harness.world
    A.FAILING.add("h0")
    # h0 fails and pauses while h1 waits for an event: the fleet is still running
    plan = await world.trigger(A.Fleet, hosts=["h0"], child="flaky")
    await world.wait(plan.id, timeout=30)
    waiting = await world.trigger(A.Fleet, hosts=["h0", "h1", "h2"], child="wait", limit=3)

    async def running() -> None:
        assert (await children(world, waiting.id)).running == 3

    await assert_eventually(running)
    await world.cancel(waiting.id, by="ops")
    done = await world.wait(waiting.id, until=frozenset({PlanState.STOPPED}), timeout=15)
    assert done.result is PlanResult.CANCELLED
    assert (await children(world, waiting.id)).cancelled == 3
    # and the paused fleet of the first trigger, cancelled, leaves no paused host behind
    await world.cancel(plan.id)
    assert (await children(world, plan.id)).as_dict()["paused"] == 0


async def test_skipping_the_last_failed_host_lets_the_paused_fleet_go_on(
    harness: EngineHarness,
) -> None:
    world = harness.world
    A.FAILING.update({"h0", "h1"})
    plan = await harness.run(A.Fleet, hosts=["h0", "h1", "h2"], child="flaky")
    assert plan.state is PlanState.PAUSED
    first, second = [c for c in await world.store.child_plans(plan.id) if c.label in ("h0", "h1")]

    await world.skip_failed(first.id, by="ops")
    skipped = await world.get_plan(first.id)
    assert (skipped.state, skipped.result) == (PlanState.STOPPED, PlanResult.WARNING)
    # the other failed host still waits for the operator: so does the fleet
    assert (await world.get_plan(plan.id)).state is PlanState.PAUSED

    await world.skip_failed(second.id, by="ops")
    done = await world.wait(plan.id, until=frozenset({PlanState.STOPPED}), timeout=30)
    assert done.result is PlanResult.SUCCESS
    (step,) = await world.steps(second.id)
    assert step.state is StepState.SKIPPED
    history = await world.history(plan.id)
    assert any(h.what == "resumed" and "h1" in (h.detail or "") for h in history)

    with pytest.raises(Exception, match="no failed step to skip"):
        await world.skip_failed(first.id)


async def test_progress_is_by_hosts_not_by_steps(harness: EngineHarness) -> None:
    world = harness.world
    hosts = [f"h{i}" for i in range(4)]
    plan = await world.trigger(FoundFleet, hosts=hosts, child="wait", limit=4)

    async def all_waiting() -> None:
        assert (await children(world, plan.id)).running == 4

    await assert_eventually(all_waiting)
    # the hosts were found, none is done: 0 %, not the half of two steps
    assert (await world.get_plan(plan.id)).progress == 0.0
    for child in (await world.store.child_plans(plan.id))[:3]:

        async def suspended(child_id: str = child.id) -> None:
            (step,) = await world.steps(child_id)
            assert step.state is StepState.SUSPENDED

        await assert_eventually(suspended)
        await world.event(child.id, 1, {"last": True})

    async def three_of_four() -> None:
        assert (await world.get_plan(plan.id)).progress == pytest.approx(0.75)

    await assert_eventually(three_of_four)


async def test_a_weightless_plan_alone_shows_its_own_progress(harness: EngineHarness) -> None:
    done = await harness.run(FindHosts, hosts=["a"])
    assert done.result is PlanResult.SUCCESS and done.progress == 1.0


@pytest.mark.parametrize(
    ("hosts", "failing", "max_failures", "expected"),
    [
        # hosts, failing hosts, max_failures: (success, error, paused, not started), message
        (5, 0, None, ((5, 0, 0, 0), None)),
        (5, 5, None, ((0, 5, 5, 0), "finished with 5 failed of 5 sub-plans")),
        (6, 2, None, ((4, 2, 2, 0), "finished with 2 failed of 6 sub-plans")),
        (
            10,
            3,
            2,
            ((0, 2, 2, 8), "stopped after 2 failed of 10 sub-plans: 0 succeeded, 2 failed, 8 not"),
        ),
        (10, 1, 1, ((0, 1, 1, 9), "stopped after 1 failed of 10 sub-plans")),
    ],
)
async def test_counts_of_a_settled_fleet(
    harness: EngineHarness,
    hosts: int,
    failing: int,
    max_failures: int | None,
    expected: tuple[tuple[int, int, int, int], str | None],
) -> None:
    world = harness.world
    names = [f"h{i}" for i in range(hosts)]
    A.FAILING.update(names[:failing])
    plan = await harness.run(
        A.Fleet, hosts=names, limit=1, max_failures=max_failures, child="flaky"
    )
    counts = await children(world, plan.id)
    (numbers, message) = expected
    assert (counts.success, counts.error, counts.paused, counts.planned) == numbers
    assert (counts.total, counts.cancelled) == (hosts, 0)
    if message is None:
        assert plan.result is PlanResult.SUCCESS and plan.progress == 1.0
    else:
        assert plan.state is PlanState.PAUSED
        assert (await fleet_step_error(world, plan.id)).startswith(message)
        assert counts.summary().startswith(f"{hosts} hosts: {numbers[0]} succeeded")


async def test_resuming_failed_hosts_one_by_one_lets_the_fleet_go_on(
    harness: EngineHarness,
) -> None:
    world = harness.world
    A.FAILING.update({"h0", "h1"})
    plan = await harness.run(A.Fleet, hosts=["h0", "h1", "h2"], child="flaky")
    first, second = [c for c in await world.store.child_plans(plan.id) if c.label != "h2"]
    A.FAILING.clear()
    await world.resume(first.id)
    assert (await world.wait(first.id, until=frozenset({PlanState.STOPPED}))).result is (
        PlanResult.SUCCESS
    )
    assert (await world.get_plan(plan.id)).state is PlanState.PAUSED  # h1 still waits
    await world.resume(second.id)
    done = await world.wait(plan.id, until=frozenset({PlanState.STOPPED}), timeout=30)
    assert done.result is PlanResult.SUCCESS
