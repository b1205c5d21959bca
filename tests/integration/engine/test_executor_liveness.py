"""Executor liveness locks (PostgreSQL, issue 20 item 4): an executor's session-level
lock is free exactly when its session is gone, and a survivor that finds it free releases
the executor's steps as for a dead one (the same history and "abnormal termination")."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from mcoflow.engine import Action, Event, StepState
from mcoflow.engine.liveness import Liveness
from mcoflow.engine.planner import Planner
from mcoflow.engine.store import ABNORMAL_TERMINATION, Store
from mcoflow.engine.store.liveness import KEEPALIVE_IDLE, LivenessLost, LivenessSession
from mcoflow.testing import assert_eventually

pytestmark = pytest.mark.postgresql


class Hold(Action):
    name = "liveness_test.hold"  # not idempotent: a release ends it as an error

    def run(self, event: Event | None = None) -> None:
        return None


@pytest.fixture
async def store(pg_url: str) -> AsyncIterator[Store]:
    store = Store(pg_url)
    await store.upgrade()
    try:
        yield store
    finally:
        await store.close()


async def _registered(store: Store, executor_id: str) -> LivenessSession:
    session = await store.liveness_session(executor_id)
    assert await session.hold()
    await store.register_executor(executor_id)
    return session


async def test_a_lock_is_free_exactly_when_its_session_is_gone(store: Store) -> None:
    alive = await _registered(store, "alive")
    dead = await _registered(store, "dead")
    looker = await _registered(store, "looker")
    try:
        assert await looker.take_free() == []
        # the same session again: its own lock re-entrantly (another session would wait)
        assert await dead.hold()
        await dead.close()
        assert await looker.take_free() == ["dead"]
        # held by the looker now: a second survivor does not release it as well
        other = await store.liveness_session("other")
        try:
            assert await other.take_free() == []
            await looker.let_go(["dead"])
            assert await other.take_free() == ["dead"]
        finally:
            await other.close()
        await store.release_executors(["dead"], by="test")
        # the looker never takes its own lock a second time: one unlock frees it
        assert await looker.take_free() == []
        await looker.let_go(["looker"])
        again = await store.liveness_session("looker")
        try:
            assert await again.hold()
        finally:
            await again.close()
            await looker.close()
    finally:
        await alive.close()


async def test_the_session_asks_the_server_for_tcp_keepalives(store: Store) -> None:
    session = await store.liveness_session("kept-alive")
    try:
        conn = session._conn
        cursor = await conn.execute("SHOW tcp_keepalives_idle")
        shown = (await cursor.fetchone())[0]
        # over TCP the server applies it; over a Unix socket it reports 0 (no TCP)
        assert shown in (str(KEEPALIVE_IDLE), f"{KEEPALIVE_IDLE}s", "0"), shown
        assert conn.info.get_parameters().get("keepalives_idle") == str(KEEPALIVE_IDLE)
    finally:
        await session.close()


async def test_a_closed_session_raises_liveness_lost(store: Store) -> None:
    session = await store.liveness_session("closing")
    await session._conn.close()
    with pytest.raises(LivenessLost):
        await session.ping()


async def test_a_survivor_releases_an_executor_whose_session_ended(store: Store) -> None:
    plan = Planner().plan(Hold, {})
    await store.insert_plans([plan], start=True, by="test")
    dead = await _registered(store, "dead-one")
    (claimed,) = await store.claim_steps("dead-one", 10, time.time())
    survivor = Liveness(store, "survivor", interval=0.05, settle=0.0)
    await survivor.start()
    await store.register_executor("survivor")
    stopping = asyncio.Event()
    woken = asyncio.Event()
    watching = asyncio.create_task(survivor.watch(stopping, _no_failure, woken.set))
    try:
        await asyncio.sleep(0.3)  # alive and holding its lock: left alone
        assert {e.id for e in await store.list_executors()} == {"dead-one", "survivor"}
        started = time.monotonic()
        await dead.close()

        async def released() -> None:
            assert {e.id for e in await store.list_executors()} == {"survivor"}

        await assert_eventually(released, timeout=5, interval=0.02)
        assert time.monotonic() - started < 2.0
        await asyncio.wait_for(woken.wait(), 5)  # its executor looks for work at once
        (step,) = [s for s in await store.get_steps(plan.id) if s.idx == claimed.idx]
        assert step.state is StepState.ERROR and step.claimed_by is None
        assert step.error is not None
        assert step.error["message"] == ABNORMAL_TERMINATION.format(executor="dead-one")
        entries = [h for h in await store.get_history(plan.id) if h.what == "abnormal termination"]
        assert [(h.detail, h.by) for h in entries] == [(f"step {claimed.idx}", "survivor")]
        # and its lock was let go again
        probe = await store.liveness_session("dead-one")
        try:
            assert await probe.hold()
            assert await probe.take_free() == []  # the survivor holds its own
        finally:
            await probe.close()
    finally:
        stopping.set()
        await watching
        await survivor.close()


async def test_no_one_is_judged_while_the_survivor_settles(store: Store) -> None:
    dead = await _registered(store, "dead-two")
    await dead.close()
    survivor = Liveness(store, "settling", interval=0.05, settle=60.0)
    await survivor.start()
    stopping = asyncio.Event()
    watching = asyncio.create_task(survivor.watch(stopping, _no_failure, lambda: None))
    try:
        await asyncio.sleep(0.5)
        assert [e.id for e in await store.list_executors()] == ["dead-two"]
    finally:
        stopping.set()
        await watching
        await survivor.close()


async def test_a_lost_session_takes_its_lock_again(store: Store) -> None:
    liveness = Liveness(store, "reconnects", interval=0.05, settle=0.0)
    await liveness.start()
    await store.register_executor("reconnects")
    stopping = asyncio.Event()
    failures: list[str] = []
    watching = asyncio.create_task(liveness.watch(stopping, failures.append, lambda: None))
    try:
        first = liveness._session
        assert first is not None
        await first._conn.close()

        async def again() -> None:
            session = liveness._session
            assert session is not None and session is not first and liveness.holding.is_set()

        await assert_eventually(again, timeout=5, interval=0.02)
        other = await store.liveness_session("other")
        try:
            assert await other.take_free() == []
        finally:
            await other.close()
        assert failures == []
    finally:
        stopping.set()
        await watching
        await liveness.close()


def _no_failure(reason: str) -> None:
    raise AssertionError(f"failed: {reason}")
