"""Schedules as the command line, the console and the API show them: one JSON shape
(``ScheduleOut``, the API's response model too) and one wording of a run's result."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from mcoflow.engine.states import PlanResult, PlanState
from mcoflow.engine.store.schedules import ScheduleRecord, ScheduleRun, ScheduleState
from mcoflow.recurring.job import describe_job


def run_result(run: ScheduleRun) -> str:
    """One word or a short phrase: the plan's result once stopped, else its state; why
    no plan started; or that the plan was deleted (retention)."""
    if run.plan_id is None:
        return f"not started: {run.error}" if run.error else "not started"
    if run.plan_state is None:
        return "plan deleted"
    if run.plan_state is PlanState.STOPPED and run.plan_result is not None:
        return run.plan_result.value
    return run.plan_state.value


class ScheduleRunOut(BaseModel):
    occurrence_at: float = Field(description="the occurrence this run is for (epoch seconds)")
    at: float = Field(description="when an executor fired it")
    plan_id: str | None = Field(description="the plan it started; none if it could not start")
    skipped: int = Field(description="earlier occurrences missed (no executor ran) and not run")
    error: str | None = Field(description="why no plan started")
    plan_state: PlanState | None
    plan_result: PlanResult | None
    result: str = Field(description="the plan's result, its state, or why it did not start")

    @classmethod
    def of(cls, run: ScheduleRun) -> ScheduleRunOut:
        return cls(
            occurrence_at=run.occurrence_at,
            at=run.at,
            plan_id=run.plan_id,
            skipped=run.skipped,
            error=run.error,
            plan_state=run.plan_state,
            plan_result=run.plan_result,
            result=run_result(run),
        )


class ScheduleOut(BaseModel):
    id: str
    name: str
    state: ScheduleState
    cron: str
    timezone: str
    end_at: float | None
    max_runs: int | None
    next_at: float | None = Field(description="the next occurrence; none unless active")
    runs: int
    skipped: int = Field(description="occurrences missed while no executor ran, in all")
    job: dict[str, Any] = Field(description="{request: …} (the four jobs) or {action: …}")
    description: str = Field(description="what runs where, in a line")
    created_at: float
    created_by: str
    last_run: ScheduleRunOut | None

    @classmethod
    def of(cls, record: ScheduleRecord) -> ScheduleOut:
        return cls(
            id=record.id,
            name=record.name,
            state=record.state,
            cron=record.cron,
            timezone=record.timezone,
            end_at=record.end_at,
            max_runs=record.max_runs,
            next_at=record.next_at,
            runs=record.runs,
            skipped=record.skipped,
            job=record.job,
            description=describe_job(record.job),
            created_at=record.created_at,
            created_by=record.created_by,
            last_run=None if record.last_run is None else ScheduleRunOut.of(record.last_run),
        )
