"""A claim whose commit its executor never heard of (the connection lost at that moment,
in a database restart) goes back after the outage: the steps run once, not never."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import engine_actions as A
import psycopg
import pytest
from sqlalchemy.exc import OperationalError

from mcoflow.engine import Executor, PlanResult, PlanState, StepState, World

LOST = OperationalError("COMMIT", {}, psycopg.OperationalError("server closed the connection"))


@pytest.fixture
async def world(db_url: str) -> AsyncIterator[World]:
    world = await World.open(db_url)  # no executor of its own
    try:
        yield world
    finally:
        await world.close()


async def test_unheard_claims_go_back_and_the_others_stay(world: World) -> None:
    first = await world.trigger(A.Add, a=1)
    second = await world.trigger(A.Add, a=2)
    claimed = await world.store.claim_steps("exec-x", 10, time.time())
    assert {c.plan_id for c in claimed} == {first.id, second.id}
    running = {(c.plan_id, c.idx) for c in claimed if c.plan_id == second.id}

    assert await world.store.release_unheard_claims("exec-x", running) == 1

    (back,) = await world.steps(first.id)
    assert (back.state, back.claimed_by, back.attempts) == (StepState.PENDING, None, 0)
    (kept,) = await world.steps(second.id)
    assert (kept.state, kept.claimed_by, kept.attempts) == (StepState.RUNNING, "exec-x", 1)
    again = await world.store.claim_steps("exec-y", 10, time.time())
    assert [(c.plan_id, c.attempts) for c in again] == [(first.id, 1)]


async def test_an_executor_gives_back_its_unheard_claims_after_an_outage(world: World) -> None:
    plan = await world.trigger(A.Add, a=1)
    executor = Executor(world.store, executor_id="exec-x", poll_interval=0.05)
    # the claim committed, the executor never heard: its connection went at that moment
    assert len(await world.store.claim_steps("exec-x", 10, time.time())) == 1
    world.store.link.lost(LOST)
    await executor.start()
    try:
        done = await world.wait(plan.id, timeout=30)
    finally:
        await executor.stop()
    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    (step,) = await world.steps(plan.id)
    assert step.attempts == 1  # run once: the lost claim did not count


async def test_unheard_plan_claims_are_due_again(world: World) -> None:
    plan = await world.delay(A.Add, start_at=time.time(), a=1)
    assert [p.id for p in await world.store.claim_plans("exec-x", 10, time.time())] == [plan.id]
    assert await world.store.claim_plans("exec-y", 10, time.time()) == []

    await world.store.release_unheard_plan_claims("exec-x")

    again = await world.store.claim_plans("exec-y", 10, time.time())
    assert [(p.id, p.state) for p in again] == [(plan.id, PlanState.SCHEDULED)]
