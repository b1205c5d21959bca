"""The host inventory with the real engine, the in-process broker and simulated hosts
(SQLite and PostgreSQL): discoveries and replies fill it, a filtered discovery leaves the
other hosts known, never-seen names are refused unless allowed, and a discovery ends as
soon as the hosts the inventory expects have answered."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mcoflow.actions import JobInputError, Jobs
from mcoflow.engine import PlanResult
from mcoflow.orchestrator import Orchestrator
from mcoflow.settings import Settings
from tests.embedded import embedded_orchestrator

HOSTS = [f"sim-{n:05d}" for n in range(1, 31)]


@pytest.fixture
async def fleet(db_url: str, tmp_path: Path) -> AsyncIterator[Orchestrator]:
    async with embedded_orchestrator(db_url, tmp_path, hosts=len(HOSTS)) as o:
        yield o


async def test_a_filtered_discovery_leaves_the_other_hosts_known(fleet: Orchestrator) -> None:
    jobs = Jobs(fleet.world)
    assert await jobs.discover(timeout=1.0) == HOSTS
    assert await jobs.discover("identity:sim-00002", timeout=1.0) == ["sim-00002"]
    assert await jobs.known_hosts() == set(HOSTS)
    plan = await jobs.trigger("install", hosts="sim-00005,sim-00006", parameter="nginx")
    assert (await fleet.world.wait(plan.id, timeout=30)).result is PlanResult.SUCCESS


async def test_discovery_records_facts_and_replies_advance_last_seen(fleet: Orchestrator) -> None:
    jobs = Jobs(fleet.world)
    await jobs.discover(timeout=1.0)
    hosts = {h.identity: h for h in await jobs.hosts()}
    assert sorted(hosts) == HOSTS
    one = hosts["sim-00001"]
    assert one.facts["identity"] == "sim-00001"
    assert "os_family" in one.facts
    assert "package" in one.agents and "rpcutil" in one.agents
    assert one.inventory_at is not None

    # filters select from the inventory as the agents would
    few = await jobs.hosts("identity:/^sim-0000[1-3]$/")
    assert [h.identity for h in few] == HOSTS[:3]
    family = one.facts["os_family"]
    assert len(await jobs.hosts(f"os_family={family} identity:/^sim-0001/")) == 10
    assert await jobs.hosts("class:no-such-class") == []
    with pytest.raises(JobInputError) as bad:
        await jobs.hosts("identity:/(/")
    assert bad.value.field == "filter"

    before = one.last_seen
    plan = await jobs.trigger("install", hosts="sim-00001", parameter="nginx")
    assert (await fleet.world.wait(plan.id, timeout=30)).result is PlanResult.SUCCESS
    after = {h.identity: h for h in await jobs.hosts()}
    assert after["sim-00001"].last_seen > before
    assert after["sim-00001"].first_seen == one.first_seen
    assert after["sim-00001"].facts == one.facts  # a package reply says nothing of facts
    assert after["sim-00002"].last_seen == hosts["sim-00002"].last_seen


async def test_never_seen_hosts_are_refused_unless_allowed(fleet: Orchestrator) -> None:
    jobs = Jobs(fleet.world)
    with pytest.raises(JobInputError) as refused:
        await jobs.trigger("install", hosts="sim-00001", parameter="nginx")
    assert refused.value.field == "hosts"
    assert "sim-00001: never seen" in refused.value.message
    assert "mcoflow discover" in refused.value.message
    assert "allow_unknown_hosts" in refused.value.message

    await jobs.discover("identity:sim-00001", timeout=1.0)
    with pytest.raises(JobInputError, match="unknown host ghost-1: never seen"):
        await jobs.trigger("install", hosts="sim-00001,ghost-1", parameter="nginx")

    allowed = Jobs(
        fleet.world, check_hosts=not Settings(allow_unknown_hosts=True).allow_unknown_hosts
    )
    plan = await allowed.trigger("install", hosts="ghost-1", parameter="nginx", timeout=0.5)
    done = await fleet.world.wait(plan.id, timeout=30)
    assert done.result is PlanResult.ERROR
    errors = [s.error["message"] for s in await fleet.world.steps(plan.id) if s.error]
    assert any("no response from ghost-1" in e for e in errors), errors


async def test_discovery_ends_once_every_expected_host_answered(fleet: Orchestrator) -> None:
    jobs = Jobs(fleet.world)
    started = time.monotonic()
    assert await jobs.discover(timeout=1.5) == HOSTS  # nothing expected: the whole timeout
    first = time.monotonic() - started
    assert first >= 1.5

    started = time.monotonic()
    assert await jobs.discover(timeout=10.0) == HOSTS
    full = time.monotonic() - started
    started = time.monotonic()
    assert await jobs.discover("identity:/^sim-0000[1-5]$/", timeout=10.0) == HOSTS[:5]
    filtered = time.monotonic() - started
    assert full < 3.0, full
    assert filtered < 3.0, filtered
