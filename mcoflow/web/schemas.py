"""The REST API's request and response models (they make its OpenAPI schema)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from mcoflow.engine import ExecutorInfo, HistoryEntry, Plan, PlanResult, PlanState, Step, StepState
from mcoflow.engine.child_status import ChildCounts
from mcoflow.engine.display import summary_text
from mcoflow.engine.store import ChildRow, HostRecord
from mcoflow.web.limits import MAX_HOSTS_PER_REQUEST
from mcoflow.web.ports import JobKind


class ErrorOut(BaseModel):
    detail: str = Field(description="what went wrong, for a person to read")
    field: str | None = Field(default=None, description="the input field at fault, if one is")


HostName = Annotated[str, Field(min_length=1, max_length=255)]
HOST_COUNT = r"^[0-9]{1,9}%?$"


class TriggerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelled limit must not be ignored

    kind: JobKind
    hosts: list[HostName] = Field(
        default_factory=list,
        max_length=MAX_HOSTS_PER_REQUEST,
        description=f"host identities, at most {MAX_HOSTS_PER_REQUEST} (more: several jobs, "
        "or a filter); empty if `filter` is given",
    )
    filter: str | None = Field(
        default=None, max_length=1000, description="select hosts by discovery instead"
    )
    parameter: str = Field(
        min_length=1,
        max_length=10_000,
        description="packages or services, comma separated; install-and-restart: "
        "'pkg1,pkg2;svc1,svc2' (services optional)",
    )
    concurrency: int | None = Field(
        default=None, ge=1, le=1_000_000, description="hosts at once (fleet)"
    )
    batch_size: str | None = Field(
        default=None, pattern=HOST_COUNT, description="hosts per batch: N or N%"
    )
    max_failures: str | None = Field(
        default=None,
        pattern=HOST_COUNT,
        description="failed hosts (N or N%) before the rest is cancelled",
    )
    start_at: datetime | None = Field(
        default=None,
        description="start the job later, at this ISO 8601 time (the server's local time "
        "unless it carries an offset); not in the past",
    )
    start_before: datetime | None = Field(
        default=None,
        description="give the job up (result error) if it has not started by then; after start_at",
    )


class PlanOut(BaseModel):
    id: str
    action: str
    label: str
    state: PlanState
    result: PlanResult
    progress: float = Field(ge=0, le=1)
    error: str | None
    parent_plan_id: str | None
    created_at: float
    started_at: float | None
    ended_at: float | None
    duration: float | None
    start_at: float | None = Field(
        default=None, description="a delayed plan's start time (state scheduled until then)"
    )
    start_before: float | None = Field(
        default=None, description="a delayed plan not started by then ends with an error"
    )

    @classmethod
    def of(cls, plan: Plan) -> PlanOut:
        return cls(
            id=plan.id,
            action=plan.action,
            label=plan.label,
            state=plan.state,
            result=plan.result,
            progress=min(1.0, max(0.0, plan.progress)),
            error=plan.error,
            parent_plan_id=plan.parent_plan_id,
            created_at=plan.created_at,
            started_at=plan.started_at,
            ended_at=plan.ended_at,
            duration=plan.duration,
            start_at=plan.start_at,
            start_before=plan.start_before,
        )


class StepErrorOut(BaseModel):
    type: str | None = None
    message: str
    traceback: str | None = None


class StepOut(BaseModel):
    idx: int
    action: str
    state: StepState
    progress: float
    input: dict[str, Any]
    input_text: str = Field(
        default="",
        description="the input as the console shows it: a reference to another step's "
        "output reads 'output[\"changed\"] of step 2 (Install curl on web-01)'",
    )
    output: dict[str, Any] | None
    data: dict[str, Any] | None
    error: StepErrorOut | None
    attempts: int
    started_at: float | None
    ended_at: float | None
    run_seconds: float

    @classmethod
    def of(cls, step: Step, titles: Mapping[int, str] | None = None) -> StepOut:
        error = None
        if step.error:
            error = StepErrorOut(
                type=step.error.get("type"),
                message=str(step.error.get("message", "")),
                traceback=step.error.get("traceback"),
            )
        return cls(
            idx=step.idx,
            action=step.action,
            state=step.state,
            progress=step.progress,
            input=step.input,
            input_text=summary_text(step.input, titles or {}),
            output=step.output,
            data=step.data,
            error=error,
            attempts=step.attempts,
            started_at=step.started_at,
            ended_at=step.ended_at,
            run_seconds=step.run_seconds,
        )


class HistoryOut(BaseModel):
    at: float
    what: str
    detail: str | None
    by: str

    @classmethod
    def of(cls, entry: HistoryEntry) -> HistoryOut:
        return cls(at=entry.at, what=entry.what, detail=entry.detail, by=entry.by)


class HostResultOut(BaseModel):
    plan_id: str
    host: str
    state: PlanState
    result: PlanResult
    status: str = Field(
        description="running, planned, success, warning, error (a paused host too), cancelled"
    )
    message: str

    @classmethod
    def of(cls, row: ChildRow) -> HostResultOut:
        return cls(
            plan_id=row.plan_id,
            host=row.label,
            state=row.state,
            result=row.result,
            status=row.status.value,
            message=row.message,
        )


class HostCountsOut(BaseModel):
    total: int
    planned: int
    running: int
    success: int
    warning: int
    error: int = Field(description="failed hosts, those paused for the operator included")
    cancelled: int
    paused: int = Field(description="of the errors, the hosts waiting for the operator")
    summary: str = Field(description="e.g. '50 hosts: 0 succeeded, 5 failed, 45 cancelled'")

    @classmethod
    def of(cls, counts: ChildCounts) -> HostCountsOut:
        return cls(**counts.as_dict(), summary=counts.summary())


class PlanDetailOut(PlanOut):
    args: dict[str, Any]
    flow: Any = Field(description='nested ["S"|"C", …] lists of step indexes')
    steps: list[StepOut]
    history: list[HistoryOut]
    hosts: list[HostResultOut] = Field(
        description="a fleet job's first hosts (its child plans) in host order; "
        "`hosts_next` pages through the others"
    )
    host_counts: HostCountsOut | None = Field(
        default=None, description="a fleet job's hosts by status (none for other plans)"
    )
    hosts_next: str | None = Field(
        default=None, description="URL of the next page of hosts; null when `hosts` has them all"
    )


class HostPageOut(BaseModel):
    hosts: list[HostResultOut] = Field(description="in host order")
    total: int = Field(description="hosts the `status` filter selects (all without one)")
    offset: int
    limit: int
    next: str | None = Field(description="URL of the next page; null on the last one")
    host_counts: HostCountsOut = Field(description="all the plan's hosts by status")


class PlanPageOut(BaseModel):
    items: list[PlanOut]
    total: int
    offset: int
    limit: int


class ExecutorOut(BaseModel):
    id: str
    host: str
    pid: int
    started_at: float
    heartbeat_at: float
    claimed_steps: int

    @classmethod
    def of(cls, info: ExecutorInfo) -> ExecutorOut:
        return cls(
            id=info.id,
            host=info.host,
            pid=info.pid,
            started_at=info.started_at,
            heartbeat_at=info.heartbeat_at,
            claimed_steps=info.claimed_steps,
        )


class ExecutorsOut(BaseModel):
    broker: str = Field(description="the broker connection's state")
    executors: list[ExecutorOut]


class HostOut(BaseModel):
    identity: str
    facts: dict[str, Any] = Field(description="as the host last reported them")
    classes: list[str]
    agents: list[str]
    first_seen: float = Field(description="epoch seconds of the first discovery or reply")
    last_seen: float = Field(description="epoch seconds of the latest discovery or reply")
    inventory_at: float | None = Field(
        description="when facts, classes and agents were reported; null: only seen answering"
    )

    @classmethod
    def of(cls, host: HostRecord) -> HostOut:
        return cls(
            identity=host.identity,
            facts=dict(host.facts),
            classes=list(host.classes),
            agents=list(host.agents),
            first_seen=host.first_seen,
            last_seen=host.last_seen,
            inventory_at=host.inventory_at,
        )


class HostsOut(BaseModel):
    hosts: list[HostOut] = Field(description="by identity")
    total: int


class DiscoverIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filter: str | None = Field(
        default=None, max_length=1000, description="only hosts it selects, e.g. 'class:web'"
    )


class DiscoveredOut(BaseModel):
    hosts: list[str] = Field(description="identities of the hosts that answered")
