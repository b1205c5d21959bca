"""The outbox is claimed, not just read: executors sharing a database publish each
message once, and a claim whose executor died is let go when its lease ends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import insert

from mcoflow.engine.schema import outbox
from mcoflow.engine.store import Store


@pytest.fixture
async def stores(db_url: str) -> AsyncIterator[tuple[Store, Store]]:
    first, second = Store(db_url), Store(db_url)  # two executors' processes
    await first.upgrade()
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


async def _add_messages(store: Store, count: int, created_at: float) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(
            insert(outbox),
            [
                {"destination": "rpc", "message": f'{{"n": {n}}}', "created_at": created_at + n}
                for n in range(count)
            ],
        )


async def test_concurrent_claims_share_the_messages_out_each_once(
    stores: tuple[Store, Store],
) -> None:
    first, second = stores
    now = time.time()
    await _add_messages(first, 60, now - 100)
    claims = await asyncio.gather(
        *(store.claim_unpublished(10, now, lease=60) for store in (first, second) for _ in range(4))
    )
    ids = [m.id for claim in claims for m in claim]
    assert sorted(ids) == sorted(set(ids))  # nobody got a message somebody else holds
    assert len(ids) == 60 - len(await first.claim_unpublished(100, now, lease=60))
    # oldest first, with the stored message
    oldest, *_ = await first.claim_unpublished(1, now + 61, lease=60)
    assert (oldest.destination, oldest.message) == ("rpc", {"n": 0})
    assert oldest.id == min(ids)


async def test_a_claim_ends_with_its_lease_and_a_published_message_is_never_claimed(
    stores: tuple[Store, Store],
) -> None:
    first, second = stores
    now = time.time()
    await _add_messages(first, 3, now - 10)
    claimed = await first.claim_unpublished(10, now, lease=30)
    assert len(claimed) == 3
    await first.mark_published([claimed[0].id])
    # held: nobody else takes them while the lease runs
    assert await second.claim_unpublished(10, now + 29, lease=30) == []
    # the first executor died: after the lease the unpublished two are published elsewhere
    again = await second.claim_unpublished(10, now + 31, lease=30)
    assert [m.id for m in again] == [claimed[1].id, claimed[2].id]


async def test_a_failed_publish_waits_for_its_backoff_not_the_lease(
    stores: tuple[Store, Store],
) -> None:
    first, _ = stores
    now = time.time()
    await _add_messages(first, 1, now - 10)
    (message,) = await first.claim_unpublished(10, now, lease=600)
    await first.mark_publish_failed([message.id], now)
    assert await first.claim_unpublished(10, now + 0.5, lease=600) == []
    assert [m.id for m in await first.claim_unpublished(10, now + 1.5, lease=600)] == [message.id]


async def test_claims_are_let_go_at_once_when_an_executor_is_found_dead(
    stores: tuple[Store, Store],
) -> None:
    first, second = stores
    now = time.time()
    await _add_messages(first, 2, now - 10)
    await first.register_executor("killed")
    held = await first.claim_unpublished(10, now, lease=600)
    assert len(held) == 2
    assert await second.claim_unpublished(10, time.time(), lease=600) == []
    # "killed" stopped beating: whoever finds it dead releases what it held, outbox too
    assert await second.release_dead_executors(-1.0, by="survivor") == ["killed"]
    again = await second.claim_unpublished(10, time.time(), lease=600)
    assert sorted(m.id for m in again) == sorted(m.id for m in held)


async def test_a_starting_executor_lets_earlier_claims_go(stores: tuple[Store, Store]) -> None:
    first, second = stores
    now = time.time()
    await _add_messages(first, 1, now - 10)
    held = await first.claim_unpublished(10, now, lease=600)  # then stopped, not published
    await second.release_outbox_claims()
    assert await second.claim_unpublished(10, time.time(), lease=600) == held
