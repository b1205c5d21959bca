"""The scheduler every executor process runs: it fires the schedules' due occurrences.

It sleeps until the earliest next occurrence, at most ``poll`` seconds (a schedule
created or resumed by another process is seen within that), or until this process
creates or resumes one (``wake``). Each due schedule is planned here and fired through
``store.fire_occurrence``: the occurrence is claimed, the schedule advanced and the plan
started in one transaction, so that it runs once however many executors race for it
and a crash leaves it either all done or still due. When no executor ran through
several occurrences, the latest runs and the ones before it are recorded as skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime

from pydantic import ValidationError

from mcoflow.actions.jobs import Jobs, job_input_error
from mcoflow.engine import InputError
from mcoflow.engine.planner import NewPlan, Planner
from mcoflow.engine.store import is_transient_error
from mcoflow.engine.store.reconnect import is_unreachable
from mcoflow.engine.store.schedules import FiredOccurrence, ScheduleRecord, ScheduleState
from mcoflow.job_request import JobInputError
from mcoflow.recurring.cron import Cron
from mcoflow.recurring.job import validation_input_error
from mcoflow.recurring.service import launch_of

log = logging.getLogger("mcoflow.scheduler")

# the longest sleep: a schedule another process creates is seen this late at most
POLL_SECONDS = 5.0
# after a failed round (the database unreachable), the wait before the next
RETRY_SECONDS = 2.0
# a schedule whose firing failed otherwise (a bug, not the database) waits this long
HOLD_SECONDS = 60.0
ENDED_UNRUN = "not run: its end time passed while no executor ran"


class Scheduler:
    """Fires due occurrences until stopped; ``fire_due`` is one round (tests call it)."""

    def __init__(
        self,
        jobs: Jobs,
        *,
        poll: float = POLL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.jobs = jobs
        self.world = jobs.world
        self.store = jobs.world.store
        self.poll = poll
        self.clock = clock
        # schedule id -> when to try again a schedule whose firing failed
        self._held: dict[str, float] = {}
        self._woken = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._loop(), name="mcoflow-scheduler")

    async def stop(self) -> None:
        self._stopping.set()
        self._woken.set()
        if self._task is not None:
            task, self._task = self._task, None
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def wake(self) -> None:
        """A schedule was created or resumed here: look again now."""
        self._woken.set()

    async def _loop(self) -> None:
        backoff = self.store.link.backoff()
        while not self._stopping.is_set():
            self._woken.clear()
            try:
                await self.fire_due()
                earliest = await self.store.earliest_occurrence()
                backoff = self.store.link.backoff()
            except Exception as exc:
                if is_unreachable(exc):
                    # said once by the store's link (engine.store.reconnect), not per attempt
                    await self._sleep(backoff.next())
                    continue
                if is_transient_error(exc):
                    log.warning("scheduler: %s; trying again in %.0f s", exc, RETRY_SECONDS)
                else:
                    log.exception("scheduler: a round failed; trying again")
                await self._sleep(RETRY_SECONDS)
                continue
            now = self.clock()
            if earliest is not None and earliest <= now:
                # still due: held after a failure, or its time came during the round
                wait = RETRY_SECONDS if self._held else 0.01
            else:
                wait = self.poll if earliest is None else min(self.poll, earliest - now)
            await self._sleep(wait)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._woken.wait(), seconds)

    async def fire_due(self) -> int:
        """Fire every occurrence due now; how many this executor fired (the others were
        fired by another executor meanwhile)."""
        fired = 0
        now = self.clock()
        self._held = {k: until for k, until in self._held.items() if until > now}
        for schedule in await self.store.due_schedules(now):
            if self._stopping.is_set():
                break
            if schedule.id in self._held:
                continue
            try:
                if await self._fire(schedule):
                    fired += 1
            except Exception as exc:
                if is_transient_error(exc):
                    raise
                # one schedule's failure must not hold the others back, nor fill the log
                self._held[schedule.id] = now + HOLD_SECONDS
                log.exception(
                    "schedule %s: firing its occurrence failed; trying again in %.0f s",
                    schedule.name,
                    HOLD_SECONDS,
                )
        return fired

    async def _fire(self, schedule: ScheduleRecord) -> bool:
        assert schedule.next_at is not None  # due: active with a next occurrence
        cron = Cron(schedule.cron, schedule.timezone)
        now = self.clock()
        end = schedule.end_at
        limit = now if end is None else min(now, end)
        catch = await asyncio.to_thread(cron.catch_up, schedule.next_at, limit)
        plan: NewPlan | None = None
        error: str | None = None
        if end is not None and now > end:
            error, ran, following = ENDED_UNRUN, False, None
        else:
            plan, error = await self._plan(schedule, catch.occurrence)
            ran, following = True, cron.next_after(now)
        runs = schedule.runs + (1 if ran else 0)
        over = (
            following is None
            or (schedule.max_runs is not None and runs >= schedule.max_runs)
            or (end is not None and following > end)
        )
        won = await self.store.fire_occurrence(
            FiredOccurrence(
                schedule_id=schedule.id,
                due=schedule.next_at,
                occurrence_at=catch.occurrence,
                skipped=catch.skipped + (0 if ran else 1),
                next_at=None if over else following,
                state=ScheduleState.ENDED if over else ScheduleState.ACTIVE,
                plan=plan,
                error=error,
                ran=ran,
                by=f"schedule {schedule.name}",
            )
        )
        if not won:
            return False
        if plan is not None and self.world.executor is not None:
            self.world.executor.wake()
        _log_fired(schedule, catch.occurrence, catch.skipped, plan, error, over)
        return True

    async def _plan(
        self, schedule: ScheduleRecord, occurrence: float
    ) -> tuple[NewPlan | None, str | None]:
        """The occurrence's plan, or why there is none (its job no longer plans)."""
        try:
            launch = await launch_of(self.jobs, schedule.job)
            plan = await asyncio.to_thread(Planner().plan, launch.action, launch.args)
        except InputError as exc:
            problem = job_input_error(exc)
            return None, f"{problem.field}: {problem.message}"
        except JobInputError as exc:
            return None, f"{exc.field}: {exc.message}"
        except ValidationError as exc:  # stored by an older version that took it
            problem = validation_input_error(exc)
            return None, f"job.{problem.field}: {problem.message}"
        plan.label = f"{plan.label} (schedule {schedule.name})"
        when = datetime.fromtimestamp(occurrence).astimezone().isoformat(timespec="seconds")
        plan.history.insert(0, ("scheduled run", f"schedule {schedule.name}, occurrence {when}"))
        return plan, None


def _log_fired(
    schedule: ScheduleRecord,
    occurrence: float,
    skipped: int,
    plan: NewPlan | None,
    error: str | None,
    ended: bool,
) -> None:
    when = datetime.fromtimestamp(occurrence).astimezone().isoformat(timespec="seconds")
    what = f"plan {plan.id}" if plan is not None else f"no plan ({error})"
    also = f", {skipped} missed occurrences skipped" if skipped else ""
    log.info(
        "schedule %s: occurrence %s started %s%s%s",
        schedule.name,
        when,
        what,
        also,
        "; the schedule has ended" if ended else "",
    )
