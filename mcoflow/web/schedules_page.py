"""The Schedules page: recurring jobs with their next run and last run (and its result),
pause / resume / delete buttons, and a form that creates one of the four jobs on a
cron expression. The API (``api_schedules``) creates the others (agent actions,
templates) as well."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from mcoflow.engine import InvalidOperation
from mcoflow.engine.store.schedules import ScheduleNotFound, ScheduleRecord
from mcoflow.job_request import JobInputError, JobKind, parse_hosts
from mcoflow.recurring.job import ScheduleRequest, describe_job
from mcoflow.recurring.views import run_result
from mcoflow.web.api_schedules import SchedulesPort, schedules_of
from mcoflow.web.auth import page_user
from mcoflow.web.csrf import require_csrf
from mcoflow.web.strict import known_form_only
from mcoflow.web.templating import render
from mcoflow.web.views import fmt_time

router = APIRouter(include_in_schema=False)
User = Annotated[str, Depends(page_user)]
FORM_FIELDS = (
    "name", "cron", "timezone", "end_at", "max_runs", "kind", "hosts", "filter", "parameter",
    "concurrency", "batch_size", "max_failures",
)  # fmt: skip
EMPTY_FORM = dict.fromkeys(FORM_FIELDS, "") | {"timezone": "UTC", "kind": JobKind.INSTALL.value}
# a schedule's state as the console's badges colour it
_BADGE = {"active": "running", "paused": "paused", "ended": "stopped"}
Field = Annotated[str, Form(max_length=10_000)]
Forms = [Depends(require_csrf), Depends(known_form_only)]


def _row(schedule: ScheduleRecord) -> dict[str, Any]:
    run = schedule.last_run
    return {
        "name": schedule.name,
        "state": schedule.state.value,
        "badge": _BADGE[schedule.state.value],
        "cron": f"{schedule.cron} ({schedule.timezone})",
        "next": fmt_time(schedule.next_at),
        "next_there": _in_zone(schedule.next_at, schedule.timezone),
        "last": fmt_time(run.occurrence_at) if run is not None else "never",
        "result": run_result(run) if run is not None else "",
        "plan_id": run.plan_id if run is not None else None,
        "runs": schedule.runs,
        "skipped": schedule.skipped,
        "limits": _limits(schedule),
        "job": describe_job(schedule.job),
    }


def _in_zone(epoch: float | None, timezone: str) -> str:
    """The time on the schedule's own wall clock, when that is not UTC."""
    if epoch is None or timezone == "UTC":
        return ""
    return datetime.fromtimestamp(epoch, ZoneInfo(timezone)).strftime(f"%H:%M {timezone}")


def _limits(schedule: ScheduleRecord) -> str:
    limits = []
    if schedule.end_at is not None:
        limits.append(f"until {fmt_time(schedule.end_at)}")
    if schedule.max_runs is not None:
        limits.append(f"at most {schedule.max_runs} runs")
    return ", ".join(limits)


async def _page(
    request: Request,
    form: dict[str, str],
    errors: dict[str, str],
    *,
    status: int = 200,
    notice: str = "",
) -> Response:
    port = schedules_of(request)
    context = {
        "nav": "schedules",
        "rows": [_row(s) for s in await port.all()],
        "form": form,
        "errors": errors,
        "notice": notice,
        "kinds": [k.value for k in JobKind],
    }
    return render(request, "schedules.html", context, status_code=status)


@router.get("/schedules")
async def schedules_page(request: Request, _user: User, done: str = "") -> Response:
    notice = {"added": "Schedule added.", "deleted": "Schedule deleted."}.get(done, "")
    return await _page(request, dict(EMPTY_FORM), {}, notice=notice)


def _number(text: str) -> int | str | None:
    """A number field as typed: blank is None; digits an int; else left for the model
    to refuse with its words."""
    text = text.strip()
    if not text:
        return None
    return int(text) if text.isdigit() else text


@router.post("/schedules", dependencies=Forms)
async def add_schedule(
    request: Request,
    user: User,
    name: Field = "",
    cron: Field = "",
    timezone: Field = "",
    end_at: Field = "",
    max_runs: Field = "",
    kind: Field = "",
    hosts: Field = "",
    filter: Field = "",
    parameter: Field = "",
    concurrency: Field = "",
    batch_size: Field = "",
    max_failures: Field = "",
) -> Response:
    form = dict(zip(FORM_FIELDS, (
        name, cron, timezone, end_at, max_runs, kind, hosts, filter, parameter, concurrency,
        batch_size, max_failures,
    ), strict=True))  # fmt: skip
    job: dict[str, Any] = {"kind": kind, "hosts": parse_hosts(hosts), "parameter": parameter}
    options = {
        "filter": filter.strip() or None,
        "concurrency": _number(concurrency),
        "batch_size": batch_size.strip() or None,
        "max_failures": max_failures.strip() or None,
    }
    job |= {k: v for k, v in options.items() if v is not None}
    try:
        schedule = ScheduleRequest.parse(
            name=name.strip(),
            cron=cron,
            timezone=timezone.strip() or "UTC",
            end_at=end_at.strip() or None,
            max_runs=_number(max_runs),
            job={"request": job},
        )
        await schedules_of(request).create(schedule, by=user)
    except JobInputError as exc:
        field = exc.field.rsplit(".", 1)[-1] if exc.field.startswith("job.") else exc.field
        where = field if field in FORM_FIELDS else "form"
        return await _page(request, form, {where: exc.message}, status=422)
    return RedirectResponse("/schedules?done=added", status_code=303)


async def _operate(request: Request, name: str, work: str, user: str) -> Response:
    port: SchedulesPort = schedules_of(request)
    try:
        await getattr(port, work)(name, by=user)
    except ScheduleNotFound as exc:
        raise HTTPException(404, str(exc.args[0])) from None
    except InvalidOperation as exc:
        return await _page(request, dict(EMPTY_FORM), {"operation": str(exc)}, status=409)
    done = "deleted" if work == "delete" else ""
    return RedirectResponse(f"/schedules?done={done}" if done else "/schedules", status_code=303)


@router.post("/schedules/{name}/pause", dependencies=Forms)
async def pause(request: Request, name: str, user: User) -> Response:
    return await _operate(request, name, "pause", user)


@router.post("/schedules/{name}/resume", dependencies=Forms)
async def resume(request: Request, name: str, user: User) -> Response:
    return await _operate(request, name, "resume", user)


@router.post("/schedules/{name}/delete", dependencies=Forms)
async def delete(request: Request, name: str, user: User) -> Response:
    return await _operate(request, name, "delete", user)
