"""The REST API, /api/v1: trigger jobs, read and operate on plans, hosts, executors."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials

from mcoflow.engine import PlanFilter, PlanResult, PlanState, World
from mcoflow.web.auth import api_user, bearer
from mcoflow.web.csrf import check_origin
from mcoflow.web.ports import JobsPort
from mcoflow.web.schemas import (
    ErrorOut,
    ExecutorOut,
    ExecutorsOut,
    HistoryOut,
    HostResultOut,
    HostsOut,
    PlanDetailOut,
    PlanOut,
    PlanPageOut,
    StepOut,
    TriggerIn,
)
from mcoflow.web.views import HostTable

Order = Literal[
    "-created_at", "created_at", "-started_at", "started_at", "-ended_at", "ended_at",
    "label", "-label", "state", "-state",
]  # fmt: skip

PlanId = Annotated[str, Path(min_length=1, max_length=100, description="the plan's id")]
StepIdx = Annotated[int, Path(ge=0, le=2**31, description="the step's index in its plan")]


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {
        400: "the request body is not JSON",
        401: "not authenticated",
        403: "refused",
        404: "no such plan",
        409: "not possible in the plan's current state",
        422: "invalid input; `field` names it",
        503: "the job service is not available",
    }
    return {code: {"model": ErrorOut, "description": text[code]} for code in (401, *codes)}


def current_user(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
) -> str:
    return api_user(request, credentials)


User = Annotated[str, Depends(current_user)]


def _world(request: Request) -> World:
    world: World = request.app.state.world
    return world


def _jobs(request: Request) -> JobsPort:
    jobs: JobsPort | None = request.app.state.jobs
    if jobs is None:
        raise HTTPException(503, "this server has no job service (no broker configured)")
    return jobs


def _broker_state(request: Request) -> str:
    probe: Callable[[], str] | None = request.app.state.broker_state
    return probe() if probe is not None else "unknown"


def known_query_only(request: Request) -> None:
    """Refuse query parameters the endpoint does not take: ``?stat=running`` silently
    listing every plan would mislead whoever made the typo."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = {param.alias for param in dependant.query_params}
    takes = ", ".join(sorted(known)) or "none"
    problems = [
        {
            "loc": ("query", name or "(empty name)"),
            "msg": f"unknown query parameter (this endpoint takes: {takes})",
            "type": "unknown_query_parameter",
        }
        for name in sorted(set(request.query_params) - known)
    ]
    # every parameter here takes one value: which of several would be meant is a guess
    problems += [
        {
            "loc": ("query", name),
            "msg": f"given {count} times; give it once",
            "type": "repeated_query_parameter",
        }
        for name, count in sorted(
            Counter(name for name, _ in request.query_params.multi_items()).items()
        )
        if count > 1 and name in known
    ]
    if problems:
        raise RequestValidationError(problems)


router = APIRouter(prefix="/api/v1", tags=["api"], dependencies=[Depends(known_query_only)])
writes = APIRouter(
    prefix="/api/v1",
    tags=["api"],
    dependencies=[Depends(check_origin), Depends(known_query_only)],
)


@writes.post(
    "/jobs",
    status_code=201,
    response_model=PlanOut,
    responses=_errors(400, 403, 422, 503),
    summary="Trigger a job (install, uninstall, restart, install-and-restart)",
)
async def trigger(body: TriggerIn, request: Request, user: User) -> PlanOut:
    plan = await _jobs(request).trigger(
        body.kind,
        hosts=body.hosts,
        filter=body.filter,
        parameter=body.parameter,
        concurrency=body.concurrency,
        batch_size=body.batch_size,
        max_failures=body.max_failures,
        by=user,
    )
    return PlanOut.of(plan)


@router.get("/plans", response_model=PlanPageOut, responses=_errors(422), summary="List plans")
async def list_plans(
    request: Request,
    _user: User,
    state: PlanState | None = None,
    result: PlanResult | None = None,
    action: Annotated[str | None, Query(max_length=300)] = None,
    label: Annotated[str | None, Query(max_length=300, description="text in the label")] = None,
    parent: Annotated[str | None, Query(max_length=100, description="children of")] = None,
    top_level: Annotated[bool, Query(description="only plans without a parent")] = True,
    order: Order = "-created_at",
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> PlanPageOut:
    filters = PlanFilter(
        state=state,
        result=result,
        action=action or None,
        label=label or None,
        parent_plan_id=parent or None,
        top_level_only=top_level,
    )
    page = await _world(request).list_plans(filters, offset=offset, limit=limit, order=order)
    return PlanPageOut(
        items=[PlanOut.of(p) for p in page.items],
        total=page.total,
        offset=page.offset,
        limit=page.limit,
    )


@router.get(
    "/plans/{plan_id}",
    response_model=PlanDetailOut,
    responses=_errors(404, 422),
    summary="A plan with its steps, history and hosts",
)
async def show_plan(plan_id: PlanId, request: Request, _user: User) -> PlanDetailOut:
    world = _world(request)
    plan = await world.get_plan(plan_id)
    steps = await world.steps(plan_id)
    history = await world.history(plan_id)
    children = await world.store.child_plans(plan_id)
    table = HostTable(world)
    hosts = [
        HostResultOut(
            plan_id=c.id,
            host=c.label,
            state=c.state,
            result=c.result,
            message=await table.message(c),
        )
        for c in children
    ]
    return PlanDetailOut(
        **PlanOut.of(plan).model_dump(),
        args=plan.args,
        flow=plan.flow,
        steps=[StepOut.of(s) for s in steps if s.has_run],
        history=[HistoryOut.of(h) for h in history],
        hosts=hosts,
    )


@writes.post(
    "/plans/{plan_id}/resume",
    response_model=PlanOut,
    responses=_errors(403, 404, 409, 422),
    summary="Run a paused plan's failed steps again",
)
async def resume(plan_id: PlanId, request: Request, user: User) -> PlanOut:
    return PlanOut.of(await _world(request).resume(plan_id, by=user))


@writes.post(
    "/plans/{plan_id}/steps/{idx}/skip",
    response_model=PlanOut,
    responses=_errors(403, 404, 409, 422),
    summary="Skip a failed step (and the steps that need its output)",
)
async def skip(plan_id: PlanId, idx: StepIdx, request: Request, user: User) -> PlanOut:
    return PlanOut.of(await _world(request).skip(plan_id, idx, by=user))


@writes.post(
    "/plans/{plan_id}/cancel",
    response_model=PlanOut,
    responses=_errors(403, 404, 409, 422),
    summary="Cancel a plan",
)
async def cancel(plan_id: PlanId, request: Request, user: User) -> PlanOut:
    return PlanOut.of(await _world(request).cancel(plan_id, by=user))


@writes.post(
    "/plans/{plan_id}/rerun-failed",
    status_code=201,
    response_model=PlanOut,
    responses=_errors(403, 404, 409, 422, 503),
    summary="A new fleet job on the hosts that failed in this one",
)
async def rerun_failed(plan_id: PlanId, request: Request, user: User) -> PlanOut:
    return PlanOut.of(await _jobs(request).rerun_failed(plan_id, by=user))


@router.get(
    "/hosts", response_model=HostsOut, responses=_errors(422, 503), summary="Discover hosts"
)
async def hosts(
    request: Request,
    _user: User,
    filter: Annotated[str | None, Query(max_length=500, description="host filter")] = None,
) -> HostsOut:
    return HostsOut(hosts=await _jobs(request).discover(filter or None))


@router.get(
    "/executors",
    response_model=ExecutorsOut,
    responses=_errors(),
    summary="Executors and the broker connection",
)
async def executors(request: Request, _user: User) -> ExecutorsOut:
    infos = await _world(request).executors()
    return ExecutorsOut(broker=_broker_state(request), executors=[ExecutorOut.of(i) for i in infos])
