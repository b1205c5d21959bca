"""Schedules as the operator handles them: created (the job checked as if started now),
listed, paused, resumed and deleted. The command line, the web console and the REST API
all go through ``Schedules``; executors fire the occurrences (``recurring.scheduler``).

Decisions the issue left open:
- A schedule's first occurrence is the first after its creation; a resumed schedule's is
  the first after the resume: what fell while it was paused is neither run nor counted.
- No occurrence runs after the end time. If no executor ran through the end time, the
  occurrences missed before it are recorded as skipped, and the schedule ends.
- ``max_runs`` counts occurrences fired, also one whose job no longer planned (a host
  gone from the inventory): that run records its error and starts no plan.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from mcoflow.actions.jobs import JobLaunch, Jobs, job_input_error
from mcoflow.actions.schedule import show_time, to_epoch
from mcoflow.engine import Action, InputError
from mcoflow.engine.action import ActionNotRegistered, registered_action
from mcoflow.engine.planner import Planner
from mcoflow.engine.store.base import InvalidOperation
from mcoflow.engine.store.schedules import (
    NewSchedule,
    ScheduleExists,
    ScheduleRecord,
    ScheduleRun,
    ScheduleState,
)
from mcoflow.job_request import JobInputError
from mcoflow.recurring.cron import Cron
from mcoflow.recurring.job import ScheduledJob, ScheduleRequest, job_json, job_of

log = logging.getLogger("mcoflow.schedules")
# a host name that passes a host action's input check, when the job names no host
_SAMPLE_HOST = "sample-host"
# mcoflow's host actions whose modules a process may not have imported yet
_BUILTIN_MODULES = {"mcoflow.template": "mcoflow.templates.job"}


class Schedules:
    """Create, read and operate on schedules. ``on_change`` is called after a change that
    may move the earliest occurrence (this process's scheduler wakes up for it)."""

    def __init__(
        self,
        jobs: Jobs,
        *,
        on_change: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.jobs = jobs
        self.store = jobs.world.store
        self.on_change = on_change
        self.clock = clock

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    async def create(self, request: ScheduleRequest, *, by: str) -> ScheduleRecord:
        """Check everything (cron, time zone, end, the job as if started now) and store
        the schedule, active; JobInputError naming the field, with nothing stored."""
        cron = Cron(request.cron, request.timezone)
        await check_job(self.jobs, request.job)
        now = self.clock()
        end_at = None if request.end_at is None else to_epoch(request.end_at)
        first = cron.next_after(now)
        if end_at is not None and end_at < first:
            raise JobInputError(
                "end_at",
                f"{show_time(end_at)} is before the first occurrence, {show_time(first)}",
            )
        new = NewSchedule(
            id=uuid.uuid4().hex,
            name=request.name,
            job=job_json(request.job),
            cron=cron.expression,
            timezone=cron.timezone,
            end_at=end_at,
            max_runs=request.max_runs,
            state=ScheduleState.ACTIVE,
            next_at=first,
            created_at=now,
            created_by=by,
        )
        try:
            await self.store.insert_schedule(new)
        except ScheduleExists as exc:
            raise JobInputError("name", str(exc)) from None
        log.info("schedule %s added by %s: %s", new.name, by, new.cron)
        self._changed()
        return await self.store.get_schedule(new.id)

    async def all(self) -> list[ScheduleRecord]:
        """Every schedule by name, each with its last run."""
        return await self.store.list_schedules()

    async def get(self, name: str) -> ScheduleRecord:
        """By name (or id); ScheduleNotFound if none."""
        return await self.store.get_schedule(name)

    async def runs(self, name: str, *, limit: int = 20) -> list[ScheduleRun]:
        schedule = await self.get(name)
        return await self.store.schedule_runs(schedule.id, limit=limit)

    async def pause(self, name: str, *, by: str) -> ScheduleRecord:
        """No occurrence fires until resumed; InvalidOperation unless active."""
        schedule = await self.get(name)
        await self.store.change_schedule_state(
            schedule.id, was=ScheduleState.ACTIVE, now=ScheduleState.PAUSED, next_at=None
        )
        log.info("schedule %s paused by %s", schedule.name, by)
        return await self.get(schedule.id)

    async def resume(self, name: str, *, by: str) -> ScheduleRecord:
        """Active again from the next occurrence after now (ended if its end time comes
        first); InvalidOperation unless paused."""
        schedule = await self.get(name)
        if schedule.state is not ScheduleState.PAUSED:
            raise InvalidOperation(f"schedule {schedule.name!r} is {schedule.state.value}")
        following = Cron(schedule.cron, schedule.timezone).next_after(self.clock())
        over = schedule.end_at is not None and following > schedule.end_at
        await self.store.change_schedule_state(
            schedule.id,
            was=ScheduleState.PAUSED,
            now=ScheduleState.ENDED if over else ScheduleState.ACTIVE,
            next_at=None if over else following,
        )
        log.info("schedule %s resumed by %s", schedule.name, by)
        self._changed()
        return await self.get(schedule.id)

    async def delete(self, name: str, *, by: str) -> ScheduleRecord:
        """Delete it and its runs' records; the plans it started stay."""
        schedule = await self.get(name)
        await self.store.delete_schedule(schedule.id)
        log.info("schedule %s deleted by %s", schedule.name, by)
        return schedule


async def launch_of(jobs: Jobs, stored: dict[str, Any]) -> JobLaunch:
    """What a stored job starts now, checked as ``Jobs`` checks a job started now; a
    JobInputError names the field under ``job.``."""
    job = job_of(stored)
    if job.request is not None:
        try:
            return await jobs.prepare(job.request, timeout=job.timeout)
        except JobInputError as exc:
            raise JobInputError(f"job.request.{exc.field}", exc.message) from None
    assert job.action is not None  # a job has a request or an action
    action = host_action(job.action)
    try:
        return await jobs.prepare_on_hosts(
            action,
            job.host_args,
            hosts=job.hosts,
            filter=job.filter,
            concurrency=job.concurrency,
            batch_size=job.batch_size,
            max_failures=job.max_failures,
            timeout=job.timeout,
            what=job.what,
        )
    except JobInputError as exc:
        raise JobInputError(f"job.{exc.field}", exc.message) from None


def host_action(name: str) -> type[Action]:
    """The registered action ``name``, if it takes a ``hostname``."""
    if name in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[name])
    try:
        action = registered_action(name)
    except ActionNotRegistered as exc:
        raise JobInputError("job.action", str(exc)) from None
    fields = getattr(action.Input, "model_fields", {})
    if "hostname" not in fields:
        raise JobInputError("job.action", f"{name!r} does not run on a host (no hostname input)")
    return action


async def check_job(jobs: Jobs, job: ScheduledJob) -> None:
    """The job as if started now, without starting it: its hosts, filter, options and
    the action's input. Planning is left for each occurrence."""
    stored = job_json(job)
    launch = await launch_of(jobs, stored)
    await asyncio.to_thread(_check_input, launch, job)


def _check_input(launch: JobLaunch, job: ScheduledJob) -> None:
    if job.action is None or launch.action is not host_action(job.action):
        # a job of the four, or a fleet job (which checks its host action's name only)
        prefix = "job.request." if job.request is not None else "job."
        try:
            launch.action.validate_input(launch.args)
        except InputError as exc:
            problem = job_input_error(exc)
            raise JobInputError(prefix + problem.field, problem.message) from None
    if job.action is not None:
        sample = job.hosts[0] if job.hosts else _SAMPLE_HOST
        extra = {"timeout": job.timeout} if job.timeout else {}
        args = {**job.host_args, **extra, "hostname": sample}
        try:
            # planned for one host, not stored: what only planning finds (a template
            # that does not exist or refuses its inputs) is refused now, not at 3 am
            trial = Planner().plan(host_action(job.action), args)
        except InputError as exc:
            field, message = exc.problems[0]
            where = {"hostname": "hosts", "timeout": "timeout"}.get(field, f"host_args.{field}")
            raise JobInputError(f"job.{where}", message) from None
        if trial.error is not None:
            raise JobInputError("job.host_args", trial.error.removeprefix("planning failed: "))


__all__ = ["Schedules", "check_job", "host_action", "launch_of"]
