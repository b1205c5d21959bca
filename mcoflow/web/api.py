"""The REST API, /api/v1: trigger jobs, read and operate on plans, hosts, executors."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials

from mcoflow.engine import Plan, PlanFilter, PlanResult, PlanState, World
from mcoflow.engine.child_status import HostFilter, statuses_named
from mcoflow.engine.display import step_titles
from mcoflow.web.auth import api_user, bearer
from mcoflow.web.csrf import check_origin
from mcoflow.web.ports import JobsPort
from mcoflow.web.schemas import (
    DiscoveredOut,
    DiscoverIn,
    ErrorOut,
    ExecutorOut,
    ExecutorsOut,
    HistoryOut,
    HostCountsOut,
    HostOut,
    HostPageOut,
    HostResultOut,
    HostsOut,
    PlanDetailOut,
    PlanOut,
    PlanPageOut,
    StepOut,
    TriggerIn,
)
from mcoflow.web.strict import known_body_only

Order = Literal[
    "-created_at", "created_at", "-started_at", "started_at", "-ended_at", "ended_at",
    "label", "-label", "state", "-state",
]  # fmt: skip

# hosts in a plan's detail, and the most one page of hosts takes
DETAIL_HOSTS = 100
MAX_HOST_PAGE = 1000

PlanId = Annotated[str, Path(min_length=1, max_length=100, description="the plan's id")]
# a World method on one plan, by someone: resume, skip_failed, cancel
PlanOperation = Callable[..., Awaitable[Plan]]
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
    dependencies=[Depends(check_origin), Depends(known_query_only), Depends(known_body_only)],
)


@writes.post(
    "/jobs",
    status_code=201,
    response_model=PlanOut,
    responses=_errors(400, 403, 422, 503),
    summary="Trigger a job (install, uninstall, restart, install-and-restart)",
)
async def trigger(body: TriggerIn, request: Request, user: User) -> PlanOut:
    plan = await _jobs(request).start(body, by=user)
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
    summary="A plan with its steps, history, host counts and first hosts",
)
async def show_plan(plan_id: PlanId, request: Request, _user: User) -> PlanDetailOut:
    world = _world(request)
    plan = await world.get_plan(plan_id)
    steps = await world.steps(plan_id)
    titles = step_titles(steps)
    history = await world.history(plan_id)
    page = await world.store.child_page(plan_id, limit=DETAIL_HOSTS)
    return PlanDetailOut(
        **PlanOut.of(plan).model_dump(),
        args=plan.args,
        flow=plan.flow,
        steps=[StepOut.of(s, titles) for s in steps if s.has_run],
        history=[HistoryOut.of(h) for h in history],
        hosts=[HostResultOut.of(r) for r in page.rows],
        host_counts=HostCountsOut.of(page.counts) if page.counts.total else None,
        hosts_next=_hosts_url(plan_id, None, page.limit, page.limit) if page.has_more else None,
    )


def _hosts_url(plan_id: str, status: str | None, offset: int, limit: int) -> str:
    query = {"status": status, "offset": offset, "limit": limit}
    return f"/api/v1/plans/{plan_id}/hosts?" + urlencode(
        {k: v for k, v in query.items() if v is not None}
    )


@router.get(
    "/plans/{plan_id}/hosts",
    response_model=HostPageOut,
    responses=_errors(404, 422),
    summary="A page of a fleet job's hosts (its child plans), in host order",
)
async def plan_hosts(
    plan_id: PlanId,
    request: Request,
    _user: User,
    status: Annotated[
        HostFilter | None,
        Query(description="only these hosts; failed: error or cancelled (what a rerun takes)"),
    ] = None,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_HOST_PAGE)] = DETAIL_HOSTS,
) -> HostPageOut:
    world = _world(request)
    await world.get_plan(plan_id)  # 404 for no such plan, rather than an empty page
    statuses = statuses_named(status.value) if status is not None else None
    page = await world.store.child_page(plan_id, statuses=statuses, offset=offset, limit=limit)
    shown = status.value if status is not None else None
    return HostPageOut(
        hosts=[HostResultOut.of(r) for r in page.rows],
        total=page.matching,
        offset=offset,
        limit=limit,
        next=_hosts_url(plan_id, shown, offset + limit, limit) if page.has_more else None,
        host_counts=HostCountsOut.of(page.counts),
    )


def _plan_operation(name: str, operation: PlanOperation, summary: str) -> None:
    """``POST /plans/{plan_id}/NAME``: ``operation`` on the plan, by the caller."""

    async def operate(plan_id: PlanId, request: Request, user: User) -> PlanOut:
        return PlanOut.of(await operation(_world(request), plan_id, by=user))

    operate.__name__ = name.replace("-", "_")  # the route's name and operationId
    writes.post(
        f"/plans/{{plan_id}}/{name}",
        response_model=PlanOut,
        responses=_errors(403, 404, 409, 422),
        summary=summary,
    )(operate)


_plan_operation("resume", World.resume, "Run a paused plan's failed steps again")


@writes.post(
    "/plans/{plan_id}/steps/{idx}/skip",
    response_model=PlanOut,
    responses=_errors(403, 404, 409, 422),
    summary="Skip a failed step (and the steps that need its output)",
)
async def skip(plan_id: PlanId, idx: StepIdx, request: Request, user: User) -> PlanOut:
    return PlanOut.of(await _world(request).skip(plan_id, idx, by=user))


_plan_operation(
    "skip-failed",
    World.skip_failed,
    "Skip every failed step of a plan (a fleet's failed host): it goes on",
)
_plan_operation("cancel", World.cancel, "Cancel a plan")


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
    "/hosts",
    response_model=HostsOut,
    responses=_errors(422, 503),
    summary="The host inventory: every host a discovery or a reply has shown",
)
async def hosts(
    request: Request,
    _user: User,
    filter: Annotated[
        str | None,
        Query(
            max_length=1000, description="only hosts it selects, e.g. 'class:web os_family=debian'"
        ),
    ] = None,
) -> HostsOut:
    found = await _jobs(request).hosts(filter or None)
    return HostsOut(hosts=[HostOut.of(h) for h in found], total=len(found))


@writes.post(
    "/hosts/discover",
    response_model=DiscoveredOut,
    responses=_errors(400, 403, 422, 503),
    summary="Ask the hosts to answer now (a discovery); the inventory records them",
)
async def discover(body: DiscoverIn, request: Request, _user: User) -> DiscoveredOut:
    return DiscoveredOut(hosts=await _jobs(request).discover(body.filter or None))


@router.get(
    "/executors",
    response_model=ExecutorsOut,
    responses=_errors(),
    summary="Executors and the broker connection",
)
async def executors(request: Request, _user: User) -> ExecutorsOut:
    infos = await _world(request).executors()
    return ExecutorsOut(broker=_broker_state(request), executors=[ExecutorOut.of(i) for i in infos])
