"""``Store.listen``: the commits of other processes that made work due wake a listener;
the listener's own store's commits do not (its executor was woken in-process)."""

from __future__ import annotations

import asyncio

import pytest

from mcoflow.engine.store import ListenLost, Store

pytestmark = pytest.mark.postgresql


async def _commit_with_notify(store: Store) -> None:
    async with store._write() as conn:
        await store._notify(conn)


async def test_other_stores_commits_wake_a_listener_its_own_do_not(pg_url: str) -> None:
    mine, other = Store(pg_url), Store(pg_url)
    await mine.upgrade()
    try:
        async with mine.listen() as wakeups:
            await _commit_with_notify(mine)
            await _commit_with_notify(other)
            # the first wake-up is the other store's: its own commit came first and was passed
            await asyncio.wait_for(anext(wakeups), 10)
            await _commit_with_notify(mine)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(anext(wakeups), 0.3)
    finally:
        await mine.close()
        await other.close()


async def test_a_listener_that_cannot_connect_says_so(pg_url: str) -> None:
    store = Store(pg_url.rsplit("/", 1)[0] + "/mcoflow_no_such_database")
    try:
        with pytest.raises(ListenLost):
            async with store.listen():
                pass
    finally:
        await store.close()
