"""The engine's semantics (DESIGN §2) on both stores: SQLite files and real PostgreSQL."""

from __future__ import annotations

import asyncio
import time

import engine_actions as A
import pytest

from mcoflow.engine import (
    Action,
    InputError,
    InvalidOperation,
    Plan,
    PlanFilter,
    PlanResult,
    PlanState,
    StepState,
    World,
)
from mcoflow.testing import EngineHarness, assert_eventually, engine_harness


@pytest.fixture(autouse=True)
def _reset() -> None:
    A.FAILING.clear()
    A.FINALIZED.clear()


def by_action(steps: list, name: type) -> list:  # type: ignore[type-arg]
    return [s for s in steps if s.action == name.name]


async def test_references_order_steps_and_carry_values(harness: EngineHarness) -> None:
    plan = await harness.run(A.Chain, n=5)
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    sums = [s.output["sum"] for s in by_action(await harness.world.steps(plan.id), A.Add)]
    assert sums == [6, 16, 116]
    assert plan.flow == ["C", 2, 3, 4]  # order comes from the references alone
    assert plan.progress == 1.0


async def test_bad_input_is_refused_at_trigger_and_nothing_stored(harness: EngineHarness) -> None:
    with pytest.raises(InputError, match="a: Input should be a valid integer"):
        await harness.world.trigger(A.Add, a="not a number")
    with pytest.raises(InputError, match="a: Field required"):
        await harness.world.trigger(A.Add, b=1)
    assert (await harness.world.list_plans()).total == 0


@pytest.mark.parametrize(
    ("where", "then_fail", "problem"),
    [
        ("output", False, "output is not JSON"),
        ("data", False, "data is not JSON"),
        ("message", False, "messages is not JSON"),
        ("event", False, "scheduled events is not JSON"),
        # the run failed, but only after it put the set in its data
        ("data", True, "failed after leaving it"),
    ],
)
async def test_a_value_json_cannot_hold_errors_its_step_which_keeps_what_it_had(
    harness: EngineHarness, where: str, then_fail: bool, problem: str
) -> None:
    world = harness.world
    plan = await _waiting_plan(world, A.LeavesNonJson, where=where, then_fail=then_fail)
    fine = await world.trigger(A.Add, a=1, b=2)
    assert await world.event(plan.id, 1, {"go": True})

    done = await world.wait(plan.id, timeout=30)
    assert (done.state, done.result) == (PlanState.PAUSED, PlanResult.ERROR)
    (step,) = await world.steps(plan.id)
    assert step.state is StepState.ERROR
    assert step.error is not None and problem in step.error["message"]
    assert step.data == {"kept": "from the first run"}
    assert not step.output
    assert await world.store.outbox_messages(plan.id) == []
    assert (await world.wait(fine.id, timeout=30)).result is PlanResult.SUCCESS


async def _waiting_plan(
    world: World, action: type[Action] = A.WaitForEvent, **args: object
) -> Plan:
    """A plan of ``action`` whose one step is suspended, waiting for events."""
    plan = await world.trigger(action, **args)

    async def suspended() -> None:
        (step,) = await world.steps(plan.id)
        assert step.state is StepState.SUSPENDED

    await assert_eventually(suspended)
    return plan


async def test_suspended_step_wakes_on_each_event_and_dedupes(harness: EngineHarness) -> None:
    world = harness.world
    plan = await _waiting_plan(world)
    assert await world.event(plan.id, 1, {"n": 1}, dedupe_key="reply-1")
    assert not await world.event(plan.id, 1, {"n": 1}, dedupe_key="reply-1")
    assert await world.event(plan.id, 1, {"n": 2, "last": True}, dedupe_key="reply-2")
    done = await world.wait(plan.id)
    assert done.result is PlanResult.SUCCESS
    (step,) = await world.steps(plan.id)
    assert step.output == {"got": [{"n": 1}, {"n": 2, "last": True}]}


async def test_a_batch_of_events_dedupes_within_itself_and_against_the_store(
    harness: EngineHarness,
) -> None:
    world = harness.world
    plan = await _waiting_plan(world)
    assert await world.event(plan.id, 1, {"n": 1}, dedupe_key="batch-1")
    fresh = await world.events(
        [
            (plan.id, 1, {"n": 1}, "batch-1"),  # stored before
            (plan.id, 1, {"n": 2}, "batch-2"),
            (plan.id, 1, {"n": 2}, "batch-2"),  # twice in this batch
            (plan.id, 1, {"n": 3, "last": True}, None),
        ]
    )
    assert fresh == [False, True, False, True]
    done = await world.wait(plan.id)
    assert done.result is PlanResult.SUCCESS
    (step,) = await world.steps(plan.id)
    assert step.output == {"got": [{"n": 1}, {"n": 2}, {"n": 3, "last": True}]}


async def test_timer_survives_a_restart_of_the_executor(db_url: str) -> None:
    async with engine_harness(db_url) as h:
        plan = await h.world.trigger(A.Timer, after=1.0)

        async def suspended() -> None:
            (step,) = await h.world.steps(plan.id)
            assert step.state is StepState.SUSPENDED

        await assert_eventually(suspended)
    # the executor is gone; the timer lives in the database only
    async with engine_harness(db_url) as h:
        done = await h.world.wait(plan.id, timeout=10)
        assert done.result is PlanResult.SUCCESS
        (step,) = await h.world.steps(plan.id)
        assert step.output == {"fired": True}
        events = await h.world.store.get_events(plan.id)
        assert [e["consumed_at"] is not None for e in events] == [True]


async def test_timeout_errors_the_step_and_pauses(harness: EngineHarness) -> None:
    plan = await harness.run(A.TimesOut)
    assert (plan.state, plan.result) == (PlanState.PAUSED, PlanResult.ERROR)
    (step,) = await harness.world.steps(plan.id)
    assert step.error is not None and "no answer within 0.2 s" in step.error["message"]


async def test_error_pauses_after_other_branches_finish_then_resume(
    harness: EngineHarness,
) -> None:
    A.FAILING.add("bad")
    plan = await harness.run(A.Branches, fail_key="bad")
    assert (plan.state, plan.result) == (PlanState.PAUSED, PlanResult.ERROR)
    steps = await harness.world.steps(plan.id)
    states = {s.input.get("key", s.action.rsplit(".", 1)[-1]): s.state for s in steps[1:]}
    assert states["left-1"] is states["left-2"] is StepState.SUCCESS  # other branch went on
    assert states["bad"] is StepState.ERROR
    assert states["after-ordering-only"] is StepState.PENDING
    error = next(s.error for s in steps if s.state is StepState.ERROR)
    assert error is not None and "bad is broken" in error["message"]
    assert "Traceback" in error["traceback"]
    A.FAILING.clear()  # the operator fixed it
    await harness.world.resume(plan.id, by="alice")
    done = await harness.world.wait(plan.id)
    assert done.result is PlanResult.SUCCESS
    saw = by_action(await harness.world.steps(plan.id), A.UsesOutput)[0].output
    assert saw == {"saw": "bad"}
    history = [(h.what, h.by) for h in await harness.world.history(plan.id)]
    assert ("paused", harness.world.executor.id) in history  # type: ignore[union-attr]
    assert ("resumed", "alice") in history
    assert history[-1][0] == "stopped"


async def test_skip_skips_the_step_and_what_needs_its_output(harness: EngineHarness) -> None:
    A.FAILING.add("bad")
    plan = await harness.run(A.Branches, fail_key="bad")
    failed = next(s for s in await harness.world.steps(plan.id) if s.state is StepState.ERROR)
    with pytest.raises(InvalidOperation, match="only a failed step"):
        await harness.world.skip(plan.id, 1)
    await harness.world.skip(plan.id, failed.idx, by="bob")
    done = await harness.world.wait(plan.id)
    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.WARNING)
    steps = {s.idx: s for s in await harness.world.steps(plan.id)}
    assert steps[failed.idx].state is StepState.SKIPPED
    uses = by_action(list(steps.values()), A.UsesOutput)[0]
    assert uses.state is StepState.SKIPPED  # needed the skipped output
    after = next(s for s in steps.values() if s.input.get("key") == "after-ordering-only")
    assert after.state is StepState.SUCCESS  # only ordered after it: went on


async def test_rescue_skip_goes_on_with_a_warning(harness: EngineHarness) -> None:
    A.FAILING.add("bad")
    plan = await harness.run(A.Branches, fail_key="bad", flaky="skip")
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.WARNING)


async def test_rescue_fail_stops_the_plan(harness: EngineHarness) -> None:
    A.FAILING.add("bad")
    plan = await harness.run(A.Branches, fail_key="bad", flaky="fail")
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.ERROR)
    with pytest.raises(InvalidOperation, match="only a paused plan"):
        await harness.world.resume(plan.id)


async def test_cancel_signals_cancellable_steps_and_cancels_the_rest(
    harness: EngineHarness,
) -> None:
    world = harness.world

    class Both(Action):
        name = "tests.engine.cancel_both"

        def plan(self) -> None:
            with self.sequence():
                with self.concurrence():
                    self.plan_action(A.CancellableWait)
                    self.plan_action(A.WaitForEvent)
                self.plan_action(A.Add, a=1)

    plan = await world.trigger(Both)

    async def both_waiting() -> None:
        counts = await world.store.count_steps(plan.id)
        assert counts.get(StepState.SUSPENDED) == 2

    await assert_eventually(both_waiting)
    await world.cancel(plan.id, by="carol")
    done = await world.wait(plan.id, until=frozenset({PlanState.STOPPED}))
    assert done.result is PlanResult.CANCELLED
    steps = await world.steps(plan.id)
    cancellable = by_action(steps, A.CancellableWait)[0]
    assert cancellable.state is StepState.CANCELLED
    assert cancellable.output == {"cleaned_up": True}  # it got the Cancel event
    assert by_action(steps, A.WaitForEvent)[0].state is StepState.CANCELLED
    assert by_action(steps, A.Add)[0].state is StepState.CANCELLED
    with pytest.raises(InvalidOperation, match="already stopped"):
        await world.cancel(plan.id)


async def test_progress_is_the_weighted_mean(harness: EngineHarness) -> None:
    world = harness.world

    class Mixed(Action):
        name = "tests.engine.progress_mixed"

        def plan(self) -> None:
            self.plan_action(A.Add, a=1)  # weight 1, done
            self.plan_action(A.Progressing)  # weight 3, half done, waits

    plan = await world.trigger(Mixed)

    async def half() -> None:
        p = await world.get_plan(plan.id)
        assert p.progress == pytest.approx((1 * 1.0 + 3 * 0.5) / 4)

    await assert_eventually(half)


async def test_finalize_runs_in_planning_order_after_success(harness: EngineHarness) -> None:
    plan = await harness.run(A.FinalizeParent)
    assert plan.result is PlanResult.SUCCESS
    assert A.FINALIZED == ["parent", "first", "second"]


async def test_polling_polls_with_growing_intervals_until_done(harness: EngineHarness) -> None:
    started = time.monotonic()
    plan = await harness.run(A.PollTask)
    assert plan.result is PlanResult.SUCCESS
    assert time.monotonic() - started >= 0.05 + 0.1 + 0.2 - 0.01
    (step,) = await harness.world.steps(plan.id)
    assert step.output == {"progress": 3}
    assert step.data is not None and step.data["polls"] == 3


async def test_outbox_messages_are_published_after_commit_and_retried(
    harness: EngineHarness,
) -> None:
    harness.publisher.fail_next = 1  # the broker is down for the first try
    plan = await harness.run(A.Send, to="web1")
    assert plan.result is PlanResult.SUCCESS

    async def published() -> None:
        assert harness.publisher.published == [("web1", {"hello": "web1"})]
        (row,) = await harness.world.store.outbox_messages(plan.id)
        assert row["published_at"] is not None

    await assert_eventually(published, timeout=15)


async def test_delayed_plan_starts_at_its_time(harness: EngineHarness) -> None:
    plan = await harness.world.delay(A.Add, start_at=time.time() + 0.3, a=2, b=3)
    assert plan.state is PlanState.SCHEDULED
    done = await harness.world.wait(plan.id, until=frozenset({PlanState.STOPPED}), timeout=10)
    assert done.result is PlanResult.SUCCESS
    assert done.started_at is not None and done.started_at >= plan.start_at  # type: ignore[operator]
    (step,) = await harness.world.steps(plan.id)
    assert step.output == {"sum": 5}
    whats = [h.what for h in await harness.world.history(plan.id)]
    assert whats[0] == "scheduled" and whats[-1] == "stopped"


async def test_delayed_plan_that_missed_its_window_stops_with_the_reason(db_url: str) -> None:
    world = await World.open(db_url)  # nobody executes for now
    now = time.time()
    plan = await world.delay(A.Add, start_at=now - 5, start_before=now - 1, a=1)
    await world.close()
    async with engine_harness(db_url) as h:
        done = await h.world.wait(plan.id, until=frozenset({PlanState.STOPPED}), timeout=10)
    assert done.result is PlanResult.ERROR
    assert done.error is not None and "missed its start window" in done.error


async def test_delay_validates_input_now(harness: EngineHarness) -> None:
    with pytest.raises(InputError, match="a"):
        await harness.world.delay(A.Add, start_at=time.time() + 60, a="x")


# per_run: all children created in the first run, or a chunk (the limit's size, so the
# limit is reached at once and seen) per run while the first ones run
@pytest.mark.parametrize("per_run", [1000, 3])
async def test_sub_plans_respect_the_concurrency_limit(
    harness: EngineHarness, per_run: int
) -> None:
    world = harness.world
    hosts = [f"h{i}" for i in range(7)]
    plan = await world.trigger(A.Fleet, hosts=hosts, limit=3, per_run=per_run)
    max_running = 0
    finished: set[str] = set()
    deadline = time.monotonic() + 30
    while len(finished) < len(hosts):
        assert time.monotonic() < deadline, "fleet did not finish"
        children = await world.store.child_plans(plan.id)
        running = [c for c in children if c.state is PlanState.RUNNING]
        max_running = max(max_running, len(running))
        assert len(running) <= 3
        for child in running:
            counts = await world.store.count_steps(child.id)
            if counts.get(StepState.SUSPENDED) and child.id not in finished:
                await world.event(child.id, 1, {"last": True})
                finished.add(child.id)
        await _tick()
    done = await world.wait(plan.id)
    assert done.result is PlanResult.SUCCESS
    assert max_running == 3
    (parent, *_) = await world.steps(plan.id)
    assert parent.output == {"total": 7, "success": 7, "failed": 0, "cancelled": 0}
    counts = await world.store.sub_plan_counts(plan.id, 1)
    assert counts.success == 7 and counts.total == 7


@pytest.mark.parametrize("per_run", [1000, 2])
async def test_sub_plans_stop_after_the_failure_threshold(
    harness: EngineHarness, per_run: int
) -> None:
    world = harness.world
    hosts = [f"h{i}" for i in range(10)]
    A.FAILING.update(hosts[:3])
    plan = await world.trigger(
        A.Fleet, hosts=hosts, limit=1, max_failures=2, child="flaky", per_run=per_run
    )
    done = await world.wait(plan.id, timeout=30)
    assert (done.state, done.result) == (PlanState.PAUSED, PlanResult.ERROR)
    (parent, *_) = await world.steps(plan.id)
    assert parent.error is not None and "stopped after 2 failed" in parent.error["message"]
    counts = await world.store.sub_plan_counts(plan.id, 1)
    assert counts.paused == 2  # the two failed hosts wait for the operator
    assert counts.planned == 8  # the rest was never started: held for a Resume
    assert counts.cancelled == 0
    assert counts.success == 0
    # every host has its sub-plan, created or not when the job stopped
    assert sorted(c.label for c in await world.store.child_plans(plan.id)) == sorted(hosts)


async def test_list_plans_filters_sorts_and_pages(harness: EngineHarness) -> None:
    world = harness.world
    for n in range(5):
        await harness.run(A.Add, a=n, label=f"add {n}")
    A.FAILING.add("x")
    await harness.run(A.Flaky, key="x", label="flaky x")
    page = await world.list_plans(PlanFilter(state=PlanState.STOPPED), limit=2, offset=1)
    assert page.total == 5 and len(page.items) == 2
    assert [p.label for p in page.items] == ["add 3", "add 2"]
    paused = await world.list_plans(PlanFilter(result=PlanResult.ERROR))
    assert [p.label for p in paused.items] == ["flaky x"]
    by_label = await world.list_plans(PlanFilter(label="ADD 4"))
    assert [p.label for p in by_label.items] == ["add 4"]
    oldest = await world.list_plans(order="created_at", limit=1)
    assert oldest.items[0].label == "add 0"
    with pytest.raises(ValueError, match="cannot sort by"):
        await world.list_plans(order="password")


async def test_cleaner_deletes_only_old_finished_plans(harness: EngineHarness) -> None:
    world = harness.world
    old = await harness.run(A.Add, a=1)
    waiting = await world.trigger(A.WaitForEvent)
    deleted = await world.store.delete_finished_plans(time.time() + 1)
    assert deleted == 1
    assert (await world.store.get_plan(old.id)) is None
    assert (await world.store.get_plan(waiting.id)) is not None


async def _tick() -> None:
    import asyncio

    await asyncio.sleep(0.02)


async def test_claims_of_a_dead_executor_are_released(db_url: str) -> None:
    world = await World.open(db_url)
    idempotent = await world.trigger(A.Send, to="web1")
    not_idempotent = await world.trigger(A.Add, a=1)
    await world.store.register_executor("ghost")
    claimed = await world.store.claim_steps("ghost", 10, time.time())
    assert len(claimed) == 2  # the ghost holds both steps, then never beats again
    assert await world.store.claim_steps("someone-else", 10, time.time()) == []
    await world.close()
    async with engine_harness(db_url, dead_after=0.5, heartbeat_interval=0.2) as h:
        done = await h.world.wait(idempotent.id, timeout=15)
        assert done.result is PlanResult.SUCCESS  # idempotent: simply ran again
        (step,) = await h.world.steps(idempotent.id)
        assert step.attempts == 2
        paused = await h.world.wait(not_idempotent.id, timeout=15)
        assert (paused.state, paused.result) == (PlanState.PAUSED, PlanResult.ERROR)
        (step,) = await h.world.steps(not_idempotent.id)
        assert step.error is not None
        assert "abnormal termination" in step.error["message"]
        assert [e.id for e in await h.world.executors()] == [h.world.executor.id]  # type: ignore[union-attr]
        await h.world.resume(not_idempotent.id)
        assert (await h.world.wait(not_idempotent.id)).result is PlanResult.SUCCESS


@pytest.mark.parametrize("per_run", [1000, 1])
async def test_cancelling_a_fleet_cancels_children_not_started_and_running(
    harness: EngineHarness, per_run: int
) -> None:
    world = harness.world
    plan = await world.trigger(A.Fleet, hosts=[f"h{i}" for i in range(6)], limit=2, per_run=per_run)

    async def two_running() -> None:
        children = await world.store.child_plans(plan.id)
        assert sum(c.state is PlanState.RUNNING for c in children) == 2

    await assert_eventually(two_running)
    await world.cancel(plan.id, by="dave")
    done = await world.wait(plan.id, until=frozenset({PlanState.STOPPED}), timeout=15)
    assert done.result is PlanResult.CANCELLED
    children = await world.store.child_plans(plan.id)
    assert {(c.state, c.result) for c in children} == {(PlanState.STOPPED, PlanResult.CANCELLED)}
    assert len(children) == 6


@pytest.mark.postgresql
async def test_notify_wakes_an_idle_executor_in_another_process(pg_url: str) -> None:
    # polling alone would take 60 s: only LISTEN/NOTIFY can finish this in time
    async with engine_harness(pg_url, poll_interval=60) as h:
        assert h.world.executor is not None
        await asyncio.wait_for(h.world.executor.listening.wait(), 30)
        other = await World.open(pg_url)  # a second process, e.g. the web app
        try:
            plan = await other.trigger(A.Chain, n=1)
            done = await other.wait(plan.id, timeout=10)
        finally:
            await other.close()
        assert done.result is PlanResult.SUCCESS


async def test_the_executor_cleans_finished_plans_past_retention(db_url: str) -> None:
    async with engine_harness(db_url) as h:
        old = await h.run(A.Add, a=1)
    # a new executor with a retention of zero deletes it on start
    async with engine_harness(db_url, retention=0.0) as h:

        async def gone() -> None:
            assert await h.world.store.get_plan(old.id) is None

        await assert_eventually(gone)


async def test_an_executor_declared_dead_cannot_commit_what_it_ran(db_url: str) -> None:
    from mcoflow.engine.records import StepOutcome

    world = await World.open(db_url)
    try:
        plan = await world.trigger(A.Send, to="web1")
        await world.store.register_executor("slow")
        (claim,) = await world.store.claim_steps("slow", 10, time.time())
        # "slow" stalls past the deadline; another executor releases its claims
        await world.store._retrying(world.store._release_executors, ["slow"], "watchdog")
        late = StepOutcome(
            plan.id,
            claim.idx,
            claim.action,
            StepState.SUCCESS,
            {},
            None,
            None,
            1.0,
            0.0,
            messages=[("web1", {"late": True})],
        )
        await world.store.write_outcomes([late], by="slow")
        (step,) = await world.steps(plan.id)
        assert step.state is StepState.PENDING  # released for a re-run, not "success"
        assert await world.store.outbox_messages(plan.id) == []  # no effect committed
    finally:
        await world.close()


async def test_an_async_run_that_outlives_its_time_limit_errors_its_step(
    harness: EngineHarness,
) -> None:
    world = harness.world
    hung = await world.trigger(A.Hangs)
    own = await world.trigger(A.OwnTimeout)
    fine = await world.trigger(A.Add, a=1, b=2)

    done = await world.wait(hung.id, timeout=30)
    assert (done.state, done.result) == (PlanState.PAUSED, PlanResult.ERROR)
    (step,) = await world.steps(hung.id)
    assert step.state is StepState.ERROR and step.error is not None
    assert step.error["message"].startswith("run did not finish within its time limit of 0.3 s")
    assert not step.output

    done = await world.wait(own.id, timeout=30)
    (step,) = await world.steps(own.id)
    assert step.error is not None and step.error["message"] == "the service did not answer"
    assert (await world.wait(fine.id, timeout=30)).result is PlanResult.SUCCESS


async def test_a_finalize_that_outlives_the_time_limit_fails_the_plan(
    harness: EngineHarness,
) -> None:
    plan = await harness.world.trigger(A.Hangs, in_finalize=True)
    done = await harness.world.wait(plan.id, timeout=30)
    assert done.result is PlanResult.ERROR
    assert done.error is not None and "finalize did not finish within its time limit" in str(
        done.error
    )
