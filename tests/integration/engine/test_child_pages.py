"""A fleet's hosts a page at a time on both stores: the page in host order (filtered by
status, by offset or by key), the counts by status from one grouped query, the failed
hosts' messages, and the failed hosts' names for a rerun. Checked against the whole
list read the old way."""

from __future__ import annotations

import engine_actions as A
import pytest

from mcoflow.engine.child_status import FAILED, ChildCounts, ChildStatus, child_status
from mcoflow.testing import EngineHarness

HOSTS = [f"host-{i:05d}" for i in range(2500)]
BROKEN = set(HOSTS[7::50])  # 50 failing hosts spread over the list


@pytest.fixture(autouse=True)
def _reset() -> None:
    A.FAILING.clear()


async def test_pages_counts_and_messages_of_a_2500_host_fleet(harness: EngineHarness) -> None:
    store = harness.world.store
    A.FAILING.update(BROKEN)
    # shuffled: the page is in host order, not in the order the hosts were given
    given = HOSTS[1::2] + HOSTS[::2]
    plan = await harness.run(A.Fleet, hosts=given, child="flaky", timeout=120)
    everything = await store.child_plans(plan.id)
    assert len(everything) == 2500

    counts = await store.child_counts(plan.id)
    assert counts == ChildCounts.of(everything)
    assert (counts.total, counts.success, counts.error, counts.paused) == (2500, 2450, 50, 50)

    first = await store.child_page(plan.id, limit=100)
    assert [r.label for r in first.rows] == HOSTS[:100]
    assert (first.matching, first.has_more, first.counts) == (2500, True, counts)
    (failed_row,) = [r for r in first.rows if r.label in BROKEN][:1]
    assert failed_row.status is ChildStatus.ERROR
    assert failed_row.message == f"{failed_row.label} is broken"
    assert all(r.message == "" for r in first.rows if r.label not in BROKEN)

    last = await store.child_page(plan.id, offset=2450, limit=100)
    assert [r.label for r in last.rows] == HOSTS[2450:]
    assert not last.has_more

    # keyset: page after page, every host once, in order
    seen: list[str] = []
    after = None
    while True:
        page = await store.child_page(plan.id, limit=700, after=after)
        seen += [r.label for r in page.rows]
        if len(page.rows) < 700:
            break
        after = (page.rows[-1].label, page.rows[-1].plan_id)
    assert seen == HOSTS

    errors = await store.child_page(plan.id, statuses={ChildStatus.ERROR}, limit=30)
    assert [r.label for r in errors.rows] == sorted(BROKEN)[:30]
    assert (errors.matching, errors.has_more) == (50, True)
    assert all(r.message.endswith("is broken") for r in errors.rows)
    rest = await store.child_page(plan.id, statuses={ChildStatus.ERROR}, offset=30, limit=30)
    assert [r.label for r in rest.rows] == sorted(BROKEN)[30:]
    assert not rest.has_more
    none = await store.child_page(plan.id, statuses={ChildStatus.RUNNING})
    assert (none.rows, none.matching) == ([], 0)

    failed_first = await store.child_page(plan.id, limit=60, failed_first=True)
    fine = [h for h in HOSTS if h not in BROKEN]
    assert [r.label for r in failed_first.rows] == sorted(BROKEN) + fine[:10]

    assert await store.child_labels(plan.id, FAILED) == sorted(BROKEN)


async def test_every_status_filter_agrees_with_the_status_of_each_host(
    harness: EngineHarness,
) -> None:
    """Errors (paused), held, cancelled, success and still running hosts in fleets."""
    world = harness.world
    store = world.store
    hosts = [f"h{i:03d}" for i in range(40)]
    A.FAILING.update(hosts[:3])
    paused = await harness.run(A.Fleet, hosts=hosts, limit=4, max_failures=2, child="flaky")
    waiting = await world.trigger(A.Fleet, hosts=hosts[:5], child="wait", limit=2)
    cancelled = await harness.run(A.Fleet, hosts=hosts[:6], limit=2, max_failures=2, child="flaky")
    await world.cancel(cancelled.id)
    for plan_id in (paused.id, waiting.id, cancelled.id):

        async def check(plan_id: str = plan_id) -> None:
            children = await store.child_plans(plan_id)
            counts = await store.child_counts(plan_id)
            assert counts == ChildCounts.of(children)
            for status in ChildStatus:
                page = await store.child_page(plan_id, statuses={status}, limit=1000)
                expected = sorted(c.label for c in children if child_status(c) is status)
                assert [r.label for r in page.rows] == expected, status
                assert page.matching == len(expected)
            assert await store.child_labels(plan_id, FAILED) == sorted(
                c.label for c in children if child_status(c) in FAILED
            )

        await check()
    counts = await store.child_counts(paused.id)
    assert counts.error >= 2 and counts.planned > 0 and counts.success > 0
    assert (await store.child_counts(cancelled.id)).cancelled > 0
    assert (await store.child_counts(waiting.id)).running == 2
    await world.cancel(waiting.id)


async def test_bad_page_bounds_are_refused(harness: EngineHarness) -> None:
    with pytest.raises(ValueError, match="limit"):
        await harness.world.store.child_page("x", limit=0)
    with pytest.raises(ValueError, match="offset"):
        await harness.world.store.child_page("x", offset=-1)
