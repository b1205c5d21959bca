"""The REST API of agent actions, /api/v1: the agents' declared interfaces (cached from
the hosts), any action on hosts with its inputs checked against them, and each host's
reply."""

from __future__ import annotations

from typing import Annotated, Any, Self

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from mcoflow.actions import Jobs
from mcoflow.actions.agent_call import AgentWord
from mcoflow.actions.agent_calls import (
    AgentCalls,
    CallResult,
    InterfacesUnavailable,
    NoHostToAsk,
)
from mcoflow.actions.agent_interfaces import describe_action
from mcoflow.engine.store.interfaces import AgentInterfaceRecord
from mcoflow.job_request import MAX_HOSTS_PER_REQUEST, HostCount, RequestedHost
from mcoflow.web.api import _errors, current_user, known_query_only
from mcoflow.web.csrf import check_origin
from mcoflow.web.schemas import PlanOut
from mcoflow.web.strict import known_body_only

User = Annotated[str, Depends(current_user)]
PlanId = Annotated[str, Path(min_length=1, max_length=100, description="the call's plan id")]
AgentName = Annotated[str, Path(min_length=1, max_length=64, description="the agent's name")]


class InputOut(BaseModel):
    type: str = Field(description="string, integer, number, boolean, list or dict")
    required: bool
    pattern: str | None = None
    max_length: int | None = None
    description: str = ""


class OutputOut(BaseModel):
    type: str
    description: str = ""


class ActionOut(BaseModel):
    description: str
    read_only: bool = Field(description="changes nothing on the host: may be retried freely")
    idempotent: bool
    inputs: dict[str, InputOut]
    outputs: dict[str, OutputOut]


class AgentOut(BaseModel):
    name: str
    version: str
    description: str
    host: str = Field(description="the host the interface was fetched from")
    fetched_at: float
    actions: dict[str, ActionOut]

    @classmethod
    def of(cls, record: AgentInterfaceRecord, calls: dict[str, Any]) -> Self:
        spec = calls[record.agent]
        return cls(
            name=record.agent,
            version=record.version,
            description=spec.description,
            host=record.host,
            fetched_at=record.fetched_at,
            actions={
                name: ActionOut.model_validate(describe_action(action))
                for name, action in spec.actions.items()
            },
        )


class AgentsOut(BaseModel):
    agents: list[AgentOut]


class RefreshIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: RequestedHost | None = Field(
        default=None, description="the host to ask; default: one of the inventory"
    )


class RpcIn(BaseModel):
    """Any agent action on hosts: named ones, or those a filter selects."""

    model_config = ConfigDict(extra="forbid")

    agent: AgentWord
    action: AgentWord
    inputs: dict[str, Any] = Field(
        default_factory=dict,
        description="the action's inputs as JSON values, typed as its interface declares",
    )
    hosts: list[RequestedHost] = Field(default_factory=list, max_length=MAX_HOSTS_PER_REQUEST)
    filter: str | None = Field(default=None, max_length=1000)
    concurrency: int | None = Field(default=None, ge=1, le=1_000_000)
    batch_size: HostCount | None = None
    max_failures: HostCount | None = None
    timeout: float | None = Field(default=None, gt=0, le=86400)


class CallResultOut(BaseModel):
    host: str
    plan_id: str
    state: str
    result: str
    status: str = Field(description="success, warning, error, cancelled, running, planned")
    message: str
    data: dict[str, Any] = Field(description="the host's reply: the action's outputs")

    @classmethod
    def of(cls, row: CallResult) -> Self:
        return cls.model_validate(row.as_json())


class RpcResultOut(BaseModel):
    plan: PlanOut
    hosts: list[CallResultOut]
    failed: int = Field(description="hosts that did not succeed (yet)")


def agent_calls(request: Request) -> AgentCalls:
    """Agent calls through the server's job service (its world and host check)."""
    jobs = request.app.state.jobs
    if jobs is None:
        raise HTTPException(503, "this server has no job service (no broker configured)")
    if not isinstance(jobs, Jobs):  # another JobsPort: calls go through the same world
        jobs = Jobs(
            request.app.state.world,
            check_hosts=getattr(jobs, "check_hosts", True),
            transport=getattr(jobs, "transport", None),
        )
    return AgentCalls(jobs)


def unavailable(exc: InterfacesUnavailable) -> HTTPException:
    """No host known to ask is the operator's to fix (409); no executor is the server's."""
    return HTTPException(409 if isinstance(exc, NoHostToAsk) else 503, str(exc))


Calls = Annotated[AgentCalls, Depends(agent_calls)]
router = APIRouter(prefix="/api/v1", tags=["api"], dependencies=[Depends(known_query_only)])
writes = APIRouter(
    prefix="/api/v1",
    tags=["api"],
    dependencies=[Depends(check_origin), Depends(known_query_only), Depends(known_body_only)],
)


async def _agents(calls: AgentCalls) -> AgentsOut:
    known = await calls.known()
    records = [r for r in await calls.cached_records() if r.agent in known]
    return AgentsOut(agents=[AgentOut.of(r, known) for r in records])


@router.get(
    "/agents",
    response_model=AgentsOut,
    responses=_errors(503),
    summary="The agents' declared interfaces, as cached from the hosts",
)
async def list_agents(_user: User, calls: Calls) -> AgentsOut:
    return await _agents(calls)


@router.get(
    "/agents/{agent}",
    response_model=AgentOut,
    responses=_errors(404, 422, 503),
    summary="One agent's declared interface",
)
async def show_agent(agent: AgentName, _user: User, calls: Calls) -> AgentOut:
    for found in (await _agents(calls)).agents:
        if found.name == agent:
            return found
    raise HTTPException(404, f"no interface of agent {agent!r} is cached")


@writes.post(
    "/agents",
    response_model=AgentsOut,
    responses=_errors(400, 403, 409, 422, 503),
    summary="Fetch the agents' interfaces from a host (one of the inventory) and cache them",
)
async def refresh_agents(body: RefreshIn, user: User, calls: Calls) -> AgentsOut:
    try:
        await calls.fetch(body.host, by=user)
    except InterfacesUnavailable as exc:
        raise unavailable(exc) from None
    return await _agents(calls)


@writes.post(
    "/rpc",
    status_code=201,
    response_model=PlanOut,
    responses=_errors(400, 403, 409, 422, 503),
    summary="Run any agent action on hosts (inputs checked against its interface)",
)
async def run_action(body: RpcIn, user: User, calls: Calls) -> PlanOut:
    try:
        plan = await calls.start(
            body.agent,
            body.action,
            body.inputs,
            as_text=False,
            hosts=body.hosts,
            filter=body.filter,
            concurrency=body.concurrency,
            batch_size=body.batch_size,
            max_failures=body.max_failures,
            timeout=body.timeout,
            by=user,
        )
    except InterfacesUnavailable as exc:
        raise unavailable(exc) from None
    return PlanOut.of(plan)


@router.get(
    "/rpc/{plan_id}",
    response_model=RpcResultOut,
    responses=_errors(404, 422, 503),
    summary="Each host's outcome and reply of an agent action",
)
async def action_results(plan_id: PlanId, _user: User, calls: Calls) -> RpcResultOut:
    plan = await calls.world.get_plan(plan_id)
    rows = await calls.results(plan.id)
    return RpcResultOut(
        plan=PlanOut.of(plan),
        hosts=[CallResultOut.of(r) for r in rows],
        failed=sum(r.failed for r in rows),
    )
