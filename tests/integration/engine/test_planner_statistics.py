"""Executors analyze the busy tables as they grow (store.maintenance), so PostgreSQL
plans the per-batch lookups with statistics instead of guesses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import engine_actions as A
import pytest
from sqlalchemy import text

from mcoflow.engine import World
from mcoflow.engine.store import Store
from mcoflow.engine.store.maintenance import LOCK_KEY, MIN_CHANGED
from mcoflow.testing import assert_eventually


@pytest.fixture
async def world(pg_url: str) -> AsyncIterator[World]:
    world = await World.open(pg_url)  # no executor: the test drives the analyses
    try:
        yield world
    finally:
        await world.close()


async def _analyzed(store: Store) -> dict[str, Any]:
    async with store.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT relname, last_analyze FROM pg_stat_user_tables WHERE relname = 'steps'")
        )
        return {r.relname: r.last_analyze for r in rows}


async def _plan_id_statistics(store: Store) -> int:
    async with store.engine.connect() as conn:
        query = "SELECT count(*) FROM pg_stats WHERE tablename = 'steps' AND attname = 'plan_id'"
        return int((await conn.execute(text(query))).scalar_one())


@pytest.mark.postgresql
async def test_a_grown_table_is_analyzed_once_until_it_grows_again(world: World) -> None:
    store = world.store
    assert await store.refresh_planner_statistics() == []  # empty: nothing to do
    await world.trigger_many(A.Add, [{"a": n} for n in range(MIN_CHANGED + 100)])
    analyzed: list[str] = []

    async def steps_analyzed() -> None:
        # the server publishes a backend's row counts within about a second
        analyzed.extend(await store.refresh_planner_statistics())
        assert "steps" in analyzed

    await assert_eventually(steps_analyzed, timeout=15)
    assert {"plans"} <= set(analyzed)
    assert (await _analyzed(store))["steps"] is not None
    assert await _plan_id_statistics(store) == 1
    assert await store.refresh_planner_statistics() == []  # unchanged since


@pytest.mark.postgresql
async def test_one_process_analyzes_at_a_time(world: World, pg_url: str) -> None:
    await world.trigger_many(A.Add, [{"a": n} for n in range(MIN_CHANGED + 100)])
    other = Store(pg_url)
    try:
        async with other.engine.begin() as conn:
            # another executor busy analyzing holds the lock until its commit
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})
            assert await world.store.refresh_planner_statistics() == []
        result: list[str] = []

        async def analyzed() -> None:
            result.extend(await world.store.refresh_planner_statistics())
            assert "steps" in result

        await assert_eventually(analyzed, timeout=15)
    finally:
        await other.close()


@pytest.mark.postgresql
async def test_the_executor_keeps_statistics_fresh(pg_url: str) -> None:
    world = await World.open(pg_url, execute=True, statistics_interval=0.05)
    try:
        await world.trigger_many(A.Add, [{"a": n} for n in range(MIN_CHANGED + 100)])

        async def steps_analyzed() -> None:
            assert (await _analyzed(world.store))["steps"] is not None

        await assert_eventually(steps_analyzed, timeout=20)
    finally:
        await world.close()


async def test_sqlite_has_nothing_to_analyze(tmp_path: Any) -> None:
    world = await World.open(f"sqlite:///{tmp_path / 'e.db'}")
    try:
        await world.trigger_many(A.Add, [{"a": n} for n in range(MIN_CHANGED + 100)])
        assert await world.store.refresh_planner_statistics() == []
    finally:
        await world.close()
