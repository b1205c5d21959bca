"""The REST API's request and response models (they make its OpenAPI schema)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mcoflow.engine import PlanResult, PlanState, Step, StepState
from mcoflow.engine.child_status import ChildCounts
from mcoflow.engine.display import summary_text
from mcoflow.engine.store import ChildRow
from mcoflow.job_request import JobRequest


class ErrorOut(BaseModel):
    detail: str = Field(description="what went wrong, for a person to read")
    field: str | None = Field(default=None, description="the input field at fault, if one is")


class OfRecord(BaseModel):
    """A response that is the engine's record of the same field names."""

    model_config = ConfigDict(from_attributes=True)

    @classmethod
    def of(cls, record: Any) -> Self:
        return cls.model_validate(record)


class TriggerIn(JobRequest):
    """A JobRequest under the name the API's schema has always given it."""


class PlanOut(OfRecord):
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

    @field_validator("progress", mode="before")
    @classmethod
    def _within_bounds(cls, value: float) -> float:
        return min(1.0, max(0.0, value))


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


class HistoryOut(OfRecord):
    at: float
    what: str
    detail: str | None
    by: str


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


class ExecutorOut(OfRecord):
    id: str
    host: str
    pid: int
    started_at: float
    heartbeat_at: float
    claimed_steps: int


class ExecutorsOut(BaseModel):
    broker: str = Field(description="the broker connection's state")
    executors: list[ExecutorOut]


class HostOut(OfRecord):
    identity: str
    facts: dict[str, Any] = Field(description="as the host last reported them")
    classes: list[str]
    agents: list[str]
    first_seen: float = Field(description="epoch seconds of the first discovery or reply")
    last_seen: float = Field(description="epoch seconds of the latest discovery or reply")
    inventory_at: float | None = Field(
        description="when facts, classes and agents were reported; null: only seen answering"
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
