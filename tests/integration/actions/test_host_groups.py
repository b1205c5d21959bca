"""Saved host groups on SQLite and PostgreSQL: the store keeps them, HostGroups checks
them (names, filters, groups they use, cycles, removal of a used one), and a job on
``@group`` or a compound filter runs on exactly the hosts it selects, with the
operator's words in its label and the expanded filter in its arguments."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mcoflow.actions import JobInputError, Jobs
from mcoflow.actions.host_groups import HostGroups
from mcoflow.engine import PlanResult
from mcoflow.engine.store import Store
from mcoflow.engine.store.groups import HostGroup
from mcoflow.orchestrator import Orchestrator
from mcoflow.rpc.targeting import parse
from tests.embedded import embedded_orchestrator

HOSTS = [f"sim-{n:05d}" for n in range(1, 13)]
SIMULATION = {
    "host_classes": {"/^sim-0000[1-6]$/": ["web"], "/^sim-0000[7-9]$|^sim-0001/": ["db"]},
    "host_facts": {
        "/[13579]$/": {"cpus": 2, "tier": "small"},
        "/[02468]$/": {"cpus": 16, "tier": "big"},
        "sim-00010": {"cpus": 9},  # 9 < 16 as numbers ("9" > "16" as text)
    },
}


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    s = Store(db_url)
    await s.upgrade()
    try:
        yield s
    finally:
        await s.close()


async def test_store_saves_replaces_lists_and_removes(store: Store) -> None:
    group = HostGroup("web", "class:web", "the web tier", 1.0, "alice")
    assert await store.save_group(group)
    assert not await store.save_group(HostGroup("web", "class:x", "", 2.0, "bob"))
    assert await store.get_group("web") == group
    newer = HostGroup("web", "class:web and os_family=debian", "", 3.0, "bob")
    assert await store.save_group(newer, replace=True)
    assert await store.save_group(HostGroup("db", "class:db", "", 4.0, "bob"))
    assert [g.name for g in await store.list_groups()] == ["db", "web"]
    assert await store.get_group("web") == newer
    assert await store.remove_group("web")
    assert not await store.remove_group("web")
    assert await store.get_group("web") is None


async def test_groups_are_checked_when_saved(store: Store) -> None:
    groups = HostGroups(store)
    await groups.add("web", "class:web", by="alice")
    await groups.add("debian_web", "@web  and os_family=debian", description="  d ")
    saved = await groups.get("debian_web")
    assert (saved.filter, saved.description) == ("@web and os_family=debian", "d")

    async def refused(field: str, *args: str, replace: bool = False) -> str:
        with pytest.raises(JobInputError) as caught:
            await groups.add(*args, replace=replace)
        assert caught.value.field == field, caught.value
        return caught.value.message

    assert "letters, digits" in await refused("name", "-bad", "class:x")
    assert "exists" in await refused("name", "web", "class:x")
    assert "give the group's filter" in await refused("filter", "empty", "  ")
    assert "no saved group named 'nope'" in await refused("filter", "x", "class:a or @nope")
    assert "column 11 (end of filter)" in await refused("filter", "x", "class:a or")
    assert "@x -> @x" in await refused("filter", "x", "@x")
    # replacing web by something that uses debian_web would make a cycle through it
    message = await refused("filter", "web", "@debian_web", replace=True)
    assert "@web -> @debian_web -> @web" in message
    assert (await groups.get("web")).filter == "class:web"

    with pytest.raises(JobInputError, match="used by @debian_web"):
        await groups.remove("web")
    await groups.remove("debian_web")
    await groups.remove("web")
    with pytest.raises(JobInputError, match="no saved group named 'web'"):
        await groups.remove("web")


@pytest.fixture
async def fleet(db_url: str, tmp_path: Path) -> AsyncIterator[Orchestrator]:
    async with embedded_orchestrator(
        db_url, tmp_path, hosts=len(HOSTS), simulation=SIMULATION
    ) as o:
        yield o


async def test_jobs_on_groups_and_compound_filters(fleet: Orchestrator) -> None:
    jobs = Jobs(fleet.world)
    assert await jobs.discover(timeout=2.0) == HOSTS
    groups = HostGroups(fleet.world.store)
    await groups.add("web", "class:web")
    await groups.add("big_web", "@web and cpus>=10")

    async def selected(text: str) -> list[str]:
        return [h.identity for h in await jobs.hosts(text)]

    assert await selected("@big_web") == ["sim-00002", "sim-00004", "sim-00006"]
    assert await selected("class:db and cpus<10") == ["sim-00007", "sim-00009", "sim-00010",
                                                      "sim-00011"]  # fmt: skip
    assert await selected("not (@web or tier=small)") == ["sim-00008", "sim-00010", "sim-00012"]
    assert [h.identity for h in await groups.hosts("big_web")] == await selected("@big_web")
    with pytest.raises(JobInputError) as unknown:
        await jobs.hosts("class:web or @nope")
    assert unknown.value.field == "filter" and "column 14 ('@nope')" in unknown.value.message

    # a discovery and a fleet job on a group: the label keeps "@big_web", the arguments
    # hold the expanded filter, and exactly its hosts run
    assert await jobs.discover("@big_web or identity:sim-00011", timeout=2.0) == [
        "sim-00002", "sim-00004", "sim-00006", "sim-00011"
    ]  # fmt: skip
    plan = await jobs.trigger("install", filter="@big_web", parameter="nginx")
    assert "@big_web" in plan.label
    assert plan.args["filter"] == parse("class:web and cpus>=10").model_dump(mode="json")
    done = await fleet.world.wait(plan.id, timeout=60)
    assert done.result is PlanResult.SUCCESS
    ran = sorted(c.label for c in await fleet.world.store.child_plans(plan.id))
    assert ran == ["sim-00002", "sim-00004", "sim-00006"]

    # changing the group later changes the next job, not this one
    await groups.add("big_web", "@web and cpus<10", replace=True)
    assert await selected("@big_web") == ["sim-00001", "sim-00003", "sim-00005"]
    assert (await fleet.world.get_plan(plan.id)).args["filter"] == plan.args["filter"]
