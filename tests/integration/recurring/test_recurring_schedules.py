"""Recurring jobs on SQLite and PostgreSQL: schedules created (checked, nothing stored when
wrong), their occurrences fired once by racing schedulers, missed ones collapsed into
one run, ended by their maximum of runs or their end time, paused, resumed, deleted.

The schedulers run on a clock of the test's (no sleeping): ``fire_due`` is one round."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from mcoflow.actions import Jobs
from mcoflow.engine import InvalidOperation, PlanFilter, World
from mcoflow.engine.store.schedules import (
    FiredOccurrence,
    NewSchedule,
    ScheduleNotFound,
    ScheduleState,
)
from mcoflow.job_request import JobInputError
from mcoflow.recurring.job import ScheduleRequest
from mcoflow.recurring.scheduler import ENDED_UNRUN, Scheduler
from mcoflow.recurring.service import Schedules
from mcoflow.testing import assert_eventually

START = datetime(2030, 1, 1, 0, 0, 10, tzinfo=UTC).timestamp()
MINUTE = 60.0
FIRST = START + 50  # 00:01:00, the first minute after START


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Setup:
    world: World
    clock: Clock
    schedules: Schedules
    scheduler: Scheduler

    async def plans(self) -> list[Any]:
        page = await self.world.list_plans(PlanFilter(), offset=0, limit=500)
        return list(page.items)


def install_job(*hosts: str) -> dict[str, Any]:
    return {"request": {"kind": "install", "hosts": list(hosts), "parameter": "nginx"}}


def request(name: str = "nightly", **fields: Any) -> ScheduleRequest:
    values: dict[str, Any] = {"name": name, "cron": "* * * * *", "job": install_job("web1")}
    return ScheduleRequest.parse(**(values | fields))


@pytest.fixture
async def setup(db_url: str) -> AsyncIterator[Setup]:
    world = await World.open(db_url)
    clock = Clock(START)
    jobs = Jobs(world, check_hosts=False)
    try:
        yield Setup(world, clock, Schedules(jobs, clock=clock), Scheduler(jobs, clock=clock))
    finally:
        await world.close()


async def test_a_schedule_is_created_with_its_first_occurrence_and_listed(setup: Setup) -> None:
    created = await setup.schedules.create(request(timezone="Europe/Paris"), by="alice")
    assert (created.state, created.next_at, created.runs) == (ScheduleState.ACTIVE, FIRST, 0)
    assert (created.cron, created.timezone, created.created_by) == (
        "* * * * *",
        "Europe/Paris",
        "alice",
    )
    assert created.job == install_job("web1")  # as given, nothing added
    listed = await setup.schedules.all()
    assert [s.name for s in listed] == ["nightly"] and listed[0].last_run is None


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "* * * *"}, "cron"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"max_runs": 0}, "max_runs"),
        ({"name": "no spaces"}, "name"),
        ({"job": {"request": {"kind": "install", "hosts": ["a"], "parameter": "x;y"}}}, None),
        ({"job": {"request": {"kind": "reboot", "hosts": ["a"], "parameter": "x"}}}, None),
        ({"job": {"action": "no.such.action", "hosts": ["a"]}}, "job.action"),
        ({"job": {"hosts": ["a"]}}, "job"),
        ({"job": {"action": "mcoflow.agent_call", "hosts": ["a"], "host_args": {}}}, None),
        ({"end_at": "2030-01-01T00:00:30+00:00"}, "end_at"),
    ],
)
async def test_bad_input_names_the_field_and_stores_nothing(
    setup: Setup, fields: dict[str, Any], field: str | None
) -> None:
    with pytest.raises(JobInputError) as caught:
        await setup.schedules.create(request(**fields), by="t")
    if field is not None:
        assert caught.value.field == field, caught.value
    else:
        assert caught.value.field.startswith("job."), caught.value
    assert await setup.schedules.all() == []


async def test_unknown_hosts_are_refused_as_a_job_started_now_would_be(setup: Setup) -> None:
    checking = Schedules(Jobs(setup.world, check_hosts=True), clock=setup.clock)
    with pytest.raises(JobInputError) as caught:
        await checking.create(request(), by="t")
    assert caught.value.field == "job.request.hosts" and "web1" in caught.value.message
    await setup.schedules.create(request(), by="t")
    with pytest.raises(JobInputError) as again:
        await setup.schedules.create(request(), by="t")
    assert again.value.field == "name"
    assert len(await setup.schedules.all()) == 1


async def test_racing_schedulers_fire_each_occurrence_once(setup: Setup, db_url: str) -> None:
    others = [await World.open(db_url, upgrade=False) for _ in range(2)]
    try:
        racers = [setup.scheduler] + [
            Scheduler(Jobs(w, check_hosts=False), clock=setup.clock) for w in others
        ]
        await setup.schedules.create(request(job=install_job("web1", "web2")), by="t")
        await setup.schedules.create(request("other"), by="t")
        fired = []
        for minute in range(4):
            setup.clock.now = FIRST + minute * MINUTE + 1
            fired.append(sum(await asyncio.gather(*(r.fire_due() for r in racers))))
        assert fired == [2, 2, 2, 2]
        plans = await setup.plans()
        assert len(plans) == 8
        assert sum("(schedule nightly)" in p.label for p in plans) == 4
        nightly = await setup.schedules.get("nightly")
        assert (nightly.runs, nightly.skipped, nightly.next_at) == (4, 0, FIRST + 4 * MINUTE)
        runs = await setup.schedules.runs("nightly")
        assert [r.occurrence_at for r in runs] == [FIRST + m * MINUTE for m in (3, 2, 1, 0)]
        assert {r.plan_id for r in runs} <= {p.id for p in plans}
        assert nightly.last_run is not None and nightly.last_run.plan_id == nightly.last_plan_id
    finally:
        for w in others:
            await w.close()


async def test_missed_occurrences_run_once_and_are_recorded_as_skipped(setup: Setup) -> None:
    await setup.schedules.create(request(), by="t")
    setup.clock.now = FIRST + 5 * MINUTE + 30  # no executor ran through six occurrences
    assert await setup.scheduler.fire_due() == 1
    assert await setup.scheduler.fire_due() == 0
    schedule = await setup.schedules.get("nightly")
    assert (schedule.runs, schedule.skipped) == (1, 5)
    assert schedule.next_at == FIRST + 6 * MINUTE
    [run] = await setup.schedules.runs("nightly")
    assert (run.occurrence_at, run.skipped, run.error) == (FIRST + 5 * MINUTE, 5, None)
    assert len(await setup.plans()) == 1


async def test_a_schedule_ends_after_its_maximum_of_runs(setup: Setup) -> None:
    await setup.schedules.create(request(max_runs=2), by="t")
    for minute in range(4):
        setup.clock.now = FIRST + minute * MINUTE
        await setup.scheduler.fire_due()
    schedule = await setup.schedules.get("nightly")
    assert (schedule.state, schedule.runs, schedule.next_at) == (ScheduleState.ENDED, 2, None)
    assert len(await setup.plans()) == 2
    with pytest.raises(InvalidOperation):
        await setup.schedules.pause("nightly", by="t")


async def test_a_schedule_ends_at_its_end_time(setup: Setup) -> None:
    end = datetime.fromtimestamp(FIRST + MINUTE + 30, UTC)
    await setup.schedules.create(request(end_at=end), by="t")
    for minute in range(3):
        setup.clock.now = FIRST + minute * MINUTE
        await setup.scheduler.fire_due()
    schedule = await setup.schedules.get("nightly")
    assert (schedule.state, schedule.runs, schedule.next_at) == (ScheduleState.ENDED, 2, None)


async def test_occurrences_past_the_end_time_never_run(setup: Setup) -> None:
    end = datetime.fromtimestamp(FIRST + 2 * MINUTE, UTC)
    await setup.schedules.create(request(end_at=end), by="t")
    setup.clock.now = FIRST + 10 * MINUTE  # every executor was down through the end
    assert await setup.scheduler.fire_due() == 1
    schedule = await setup.schedules.get("nightly")
    assert (schedule.state, schedule.runs, schedule.skipped) == (ScheduleState.ENDED, 0, 3)
    [run] = await setup.schedules.runs("nightly")
    assert (run.plan_id, run.error, run.occurrence_at) == (None, ENDED_UNRUN, FIRST + 2 * MINUTE)
    assert await setup.plans() == []


async def test_a_job_that_no_longer_plans_records_why(setup: Setup) -> None:
    await setup.schedules.create(request(), by="t")  # web1 was never seen
    strict = Scheduler(Jobs(setup.world, check_hosts=True), clock=setup.clock)
    setup.clock.now = FIRST
    assert await strict.fire_due() == 1
    [run] = await setup.schedules.runs("nightly")
    assert run.plan_id is None and run.error is not None
    assert run.error.startswith("job.request.hosts: unknown host web1")
    schedule = await setup.schedules.get("nightly")
    assert (schedule.runs, schedule.next_at) == (1, FIRST + MINUTE)


async def test_pause_resume_and_delete(setup: Setup) -> None:
    await setup.schedules.create(request(), by="t")
    paused = await setup.schedules.pause("nightly", by="t")
    assert (paused.state, paused.next_at) == (ScheduleState.PAUSED, None)
    with pytest.raises(InvalidOperation):
        await setup.schedules.pause("nightly", by="t")
    setup.clock.now = FIRST + 3 * MINUTE + 5
    assert await setup.scheduler.fire_due() == 0
    resumed = await setup.schedules.resume("nightly", by="t")
    # what fell while paused is neither run nor counted
    assert (resumed.state, resumed.next_at, resumed.skipped) == (
        ScheduleState.ACTIVE,
        FIRST + 4 * MINUTE,
        0,
    )
    setup.clock.now = FIRST + 4 * MINUTE
    assert await setup.scheduler.fire_due() == 1
    await setup.schedules.delete("nightly", by="t")
    with pytest.raises(ScheduleNotFound):
        await setup.schedules.get("nightly")
    assert len(await setup.plans()) == 1  # its plans stay


async def test_a_failed_firing_leaves_nothing_and_the_occurrence_due(setup: Setup) -> None:
    """The claim, the schedule's advance and the plan commit together: a failure between
    them (here the plan's insert) writes none of them, and the occurrence is still due."""
    created = await setup.schedules.create(request(), by="t")
    setup.clock.now = FIRST
    assert await setup.scheduler.fire_due() == 1
    taken = (await setup.plans())[0].id
    schedule = await setup.schedules.get("nightly")
    launch_plan = await setup.scheduler._plan(schedule, FIRST + MINUTE)
    plan = launch_plan[0]
    assert plan is not None
    plan.id = taken  # its insert fails
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        await setup.world.store.fire_occurrence(
            FiredOccurrence(
                schedule_id=created.id,
                due=FIRST + MINUTE,
                occurrence_at=FIRST + MINUTE,
                skipped=0,
                next_at=FIRST + 2 * MINUTE,
                state=ScheduleState.ACTIVE,
                plan=plan,
                error=None,
                ran=True,
                by="t",
            )
        )
    after = await setup.schedules.get("nightly")
    assert (after.next_at, after.runs) == (FIRST + MINUTE, 1)
    assert len(await setup.schedules.runs("nightly")) == 1
    setup.clock.now = FIRST + MINUTE
    assert await setup.scheduler.fire_due() == 1


async def test_a_stored_job_that_no_longer_reads_records_why(setup: Setup) -> None:
    """A job stored by a version that took it and this one does not: the occurrence is
    recorded with the reason, and the next one is due as usual."""
    created = await setup.schedules.create(request(), by="t")
    await setup.world.store.insert_schedule(
        NewSchedule(
            **{
                **{k: getattr(created, k) for k in NewSchedule.__dataclass_fields__},
                "id": "0" * 32,
                "name": "old",
                "job": {"request": {"kind": "install", "parameter": "x"}, "colour": "blue"},
            }
        )
    )
    setup.clock.now = FIRST
    assert await setup.scheduler.fire_due() == 2
    [run] = await setup.schedules.runs("old")
    assert run.plan_id is None and run.error == "job.colour: Extra inputs are not permitted"
    assert (await setup.schedules.get("old")).next_at == FIRST + MINUTE
    assert len(await setup.plans()) == 1  # the other schedule's


async def test_the_running_scheduler_fires_when_woken_and_stops(setup: Setup) -> None:
    """The loop an executor runs: woken by a change in this process, it fires what is
    due without waiting for its poll (an hour here); stopped, it fires nothing more."""
    scheduler = Scheduler(setup.scheduler.jobs, poll=3600, clock=setup.clock)
    scheduler.start()
    try:
        await setup.schedules.create(request(), by="t")
        setup.clock.now = FIRST
        scheduler.wake()

        async def fired() -> None:
            assert (await setup.schedules.get("nightly")).runs == 1

        await assert_eventually(fired, timeout=10, interval=0.02)
    finally:
        await scheduler.stop()
    setup.clock.now = FIRST + MINUTE
    scheduler.wake()
    await asyncio.sleep(0.2)  # a stopped scheduler: nothing may happen, so nothing to poll
    assert (await setup.schedules.get("nightly")).runs == 1
