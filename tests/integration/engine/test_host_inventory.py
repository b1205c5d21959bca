"""The host inventory's merge, on SQLite and PostgreSQL: first seen kept, last seen
advanced, facts replaced by the latest report and kept by a sighting without one."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from mcoflow.engine import Store
from mcoflow.engine.store import HostInventory, HostSighting


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    s = Store(db_url)
    await s.upgrade()
    try:
        yield s
    finally:
        await s.close()


WEB = HostInventory({"os_family": "debian", "cpus": 4}, ("web",), ("rpcutil", "package"))


async def test_a_sighting_adds_a_host_and_later_ones_merge(store: Store) -> None:
    await store.record_sightings([HostSighting("web-1", 100.0, WEB)])
    [host] = await store.list_hosts()
    assert (host.identity, host.first_seen, host.last_seen) == ("web-1", 100.0, 100.0)
    assert host.facts == {"os_family": "debian", "cpus": 4}
    assert (host.classes, host.agents, host.inventory_at) == (
        ("web",),
        ("rpcutil", "package"),
        100.0,
    )

    # a reply to some other request: alive, nothing said about facts
    await store.record_sightings([HostSighting("web-1", 150.0)])
    [host] = await store.list_hosts()
    assert (host.first_seen, host.last_seen, host.inventory_at) == (100.0, 150.0, 100.0)
    assert host.facts == WEB.facts

    # a new report replaces facts, classes and agents; first seen stays
    newer = HostInventory(
        {"os_family": "debian", "cpus": 8, "rack": "b2"}, ("web", "db"), ("rpcutil",)
    )
    await store.record_sightings([HostSighting("web-1", 200.0, newer)])
    [host] = await store.list_hosts()
    assert (host.first_seen, host.last_seen, host.inventory_at) == (100.0, 200.0, 200.0)
    assert host.facts == {"os_family": "debian", "cpus": 8, "rack": "b2"}
    assert (host.classes, host.agents) == (("web", "db"), ("rpcutil",))


async def test_late_sightings_never_move_time_back_nor_revert_facts(store: Store) -> None:
    await store.record_sightings([HostSighting("web-1", 200.0, WEB)])
    stale = HostInventory({"os_family": "redhat"}, (), ())
    await store.record_sightings([HostSighting("web-1", 50.0, stale)])
    [host] = await store.list_hosts()
    assert (host.first_seen, host.last_seen, host.inventory_at) == (50.0, 200.0, 200.0)
    assert host.facts == WEB.facts


async def test_one_batch_with_repeats_and_many_hosts(store: Store) -> None:
    batch = [HostSighting(f"sim-{n:05d}", 10.0 + n % 7) for n in range(2500)]
    batch += [HostSighting("sim-00001", 99.0, WEB), HostSighting("sim-00001", 98.0)]
    await store.record_sightings(batch)
    hosts = {h.identity: h for h in await store.list_hosts()}
    assert len(hosts) == 2500
    one = hosts["sim-00001"]
    assert (one.first_seen, one.last_seen, one.inventory_at) == (11.0, 99.0, 99.0)
    assert one.facts == WEB.facts
    assert hosts["sim-00002"].inventory_at is None and hosts["sim-00002"].facts == {}


async def test_never_seen_names_only_the_unknown(store: Store) -> None:
    await store.record_sightings([HostSighting("a", 1.0), HostSighting("c", 1.0)])
    assert await store.never_seen(["a", "b", "c", "d", "b"]) == ["b", "d"]
    many = [f"h{n}" for n in range(12_000)]
    assert await store.never_seen([*many, "a"]) == many
