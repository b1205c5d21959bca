"""The REST API's request and response models (they make its OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field

from mcoflow.engine import ExecutorInfo, HistoryEntry, Plan, PlanResult, PlanState, Step, StepState
from mcoflow.web.ports import JobKind


class ErrorOut(BaseModel):
    detail: str = Field(description="what went wrong, for a person to read")
    field: str | None = Field(default=None, description="the input field at fault, if one is")


HostName = Annotated[str, Field(min_length=1, max_length=255)]
HOST_COUNT = r"^[0-9]{1,9}%?$"


class TriggerIn(BaseModel):
    kind: JobKind
    hosts: list[HostName] = Field(
        default_factory=list,
        max_length=100_000,
        description="host identities; empty if `filter` is given",
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
    output: dict[str, Any] | None
    data: dict[str, Any] | None
    error: StepErrorOut | None
    attempts: int
    started_at: float | None
    ended_at: float | None
    run_seconds: float

    @classmethod
    def of(cls, step: Step) -> StepOut:
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
    message: str


class PlanDetailOut(PlanOut):
    args: dict[str, Any]
    flow: Any = Field(description='nested ["S"|"C", …] lists of step indexes')
    steps: list[StepOut]
    history: list[HistoryOut]
    hosts: list[HostResultOut] = Field(description="a fleet job's hosts (its child plans)")


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


class HostsOut(BaseModel):
    hosts: list[str]
