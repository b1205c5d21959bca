"""The REST API's recurring jobs, /api/v1/schedules: create, list, show, pause, resume,
delete. The port (``SchedulesPort``, ``mcoflow.recurring.service.Schedules``) is in
``app.state.schedules``; the console's schedules page uses it too."""

from __future__ import annotations

from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from pydantic import BaseModel, Field

from mcoflow.engine.store.schedules import ScheduleNotFound, ScheduleRecord, ScheduleRun
from mcoflow.recurring.job import ScheduleRequest
from mcoflow.recurring.views import ScheduleOut, ScheduleRunOut
from mcoflow.web.api import User, known_query_only
from mcoflow.web.csrf import check_origin
from mcoflow.web.schemas import ErrorOut
from mcoflow.web.strict import known_body_only

# the runs a schedule's detail shows
DETAIL_RUNS = 20

ScheduleName = Annotated[
    str, Path(min_length=1, max_length=100, description="the schedule's name (or id)")
]


class SchedulesPort(Protocol):
    async def create(self, request: ScheduleRequest, *, by: str) -> ScheduleRecord:
        """Check and store a schedule; JobInputError naming the field, nothing stored."""
        ...

    async def all(self) -> list[ScheduleRecord]: ...

    async def get(self, name: str) -> ScheduleRecord:
        """By name or id; ScheduleNotFound."""
        ...

    async def runs(self, name: str, *, limit: int = 20) -> list[ScheduleRun]: ...

    async def pause(self, name: str, *, by: str) -> ScheduleRecord:
        """InvalidOperation unless active."""
        ...

    async def resume(self, name: str, *, by: str) -> ScheduleRecord:
        """InvalidOperation unless paused."""
        ...

    async def delete(self, name: str, *, by: str) -> ScheduleRecord: ...


def schedules_of(request: Request) -> SchedulesPort:
    port: SchedulesPort | None = getattr(request.app.state, "schedules", None)
    if port is None:
        raise HTTPException(503, "this server has no schedules service")
    return port


class SchedulesOut(BaseModel):
    items: list[ScheduleOut]
    total: int


class ScheduleDetailOut(ScheduleOut):
    latest_runs: list[ScheduleRunOut] = Field(
        description=f"its latest {DETAIL_RUNS} runs, newest first"
    )


def _missing(exc: ScheduleNotFound) -> HTTPException:
    return HTTPException(404, str(exc.args[0]) if exc.args else "no such schedule")


_ERROR_TEXT = {
    400: "the request body is not JSON",
    401: "not authenticated",
    403: "refused",
    404: "no such schedule",
    409: "not possible in the schedule's current state",
    422: "invalid input; `field` names it",
    503: "the schedules service is not available",
}


def _schedule_errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {c: {"model": ErrorOut, "description": _ERROR_TEXT[c]} for c in (401, *codes)}


router = APIRouter(prefix="/api/v1", tags=["schedules"], dependencies=[Depends(known_query_only)])
writes = APIRouter(
    prefix="/api/v1",
    tags=["schedules"],
    dependencies=[Depends(check_origin), Depends(known_query_only), Depends(known_body_only)],
)


@router.get(
    "/schedules",
    response_model=SchedulesOut,
    responses=_schedule_errors(503),
    summary="Recurring jobs, by name, with their next run and last run",
)
async def list_schedules(request: Request, _user: User) -> SchedulesOut:
    found = await schedules_of(request).all()
    return SchedulesOut(items=[ScheduleOut.of(s) for s in found], total=len(found))


@writes.post(
    "/schedules",
    status_code=201,
    response_model=ScheduleOut,
    responses=_schedule_errors(400, 403, 422, 503),
    summary="Create a recurring job: a job (checked as if started now) and a cron expression",
)
async def create_schedule(body: ScheduleRequest, request: Request, user: User) -> ScheduleOut:
    return ScheduleOut.of(await schedules_of(request).create(body, by=user))


@router.get(
    "/schedules/{name}",
    response_model=ScheduleDetailOut,
    responses=_schedule_errors(404, 422, 503),
    summary="A recurring job with its latest runs",
)
async def show_schedule(name: ScheduleName, request: Request, _user: User) -> ScheduleDetailOut:
    port = schedules_of(request)
    try:
        schedule = await port.get(name)
        runs = await port.runs(schedule.id, limit=DETAIL_RUNS)
    except ScheduleNotFound as exc:
        raise _missing(exc) from None
    return ScheduleDetailOut(
        **ScheduleOut.of(schedule).model_dump(), latest_runs=[ScheduleRunOut.of(r) for r in runs]
    )


@writes.post(
    "/schedules/{name}/pause",
    response_model=ScheduleOut,
    responses=_schedule_errors(403, 404, 409, 422, 503),
    summary="Pause a recurring job: no occurrence runs until it is resumed",
)
async def pause_schedule(name: ScheduleName, request: Request, user: User) -> ScheduleOut:
    try:
        return ScheduleOut.of(await schedules_of(request).pause(name, by=user))
    except ScheduleNotFound as exc:
        raise _missing(exc) from None


@writes.post(
    "/schedules/{name}/resume",
    response_model=ScheduleOut,
    responses=_schedule_errors(403, 404, 409, 422, 503),
    summary="Resume a paused recurring job from its next occurrence",
)
async def resume_schedule(name: ScheduleName, request: Request, user: User) -> ScheduleOut:
    try:
        return ScheduleOut.of(await schedules_of(request).resume(name, by=user))
    except ScheduleNotFound as exc:
        raise _missing(exc) from None


@writes.delete(
    "/schedules/{name}",
    response_model=ScheduleOut,
    responses=_schedule_errors(403, 404, 422, 503),
    summary="Delete a recurring job (the plans it started stay); answers what it was",
)
async def delete_schedule(name: ScheduleName, request: Request, user: User) -> ScheduleOut:
    try:
        return ScheduleOut.of(await schedules_of(request).delete(name, by=user))
    except ScheduleNotFound as exc:
        raise _missing(exc) from None
