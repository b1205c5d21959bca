"""What a schedule runs and how it is asked for: one ``ScheduleRequest`` for the command
line, the web form and the REST API.

A schedule's job is stored as JSON, one of
- ``{"request": {JobRequest fields}, "timeout": …}``: one of the four jobs;
- ``{"action": NAME, "host_args": {…}, "hosts": […] | "filter": …, fleet options,
  "what": …}``: any registered action that takes a ``hostname`` (an agent call, a job
  template), started as ``Jobs.start_on_hosts`` starts it.

Neutral ground as ``job_request`` is: the web imports this module, and it imports
neither the actions nor the engine.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from mcoflow.job_request import (
    MAX_HOSTS_PER_REQUEST,
    HostCount,
    JobInputError,
    JobRequest,
    RequestedHost,
    parse_hosts,
)

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
ScheduleName = Annotated[str, Field(pattern=NAME_PATTERN, description="letters, digits, _ . -")]


# what only a host action's job takes (one of the four has them inside its request)
HOST_ACTION_FIELDS = (
    "host_args", "hosts", "filter", "concurrency", "batch_size", "max_failures", "what",
)  # fmt: skip


class ScheduledJob(BaseModel):
    """What a schedule runs: ``request``, one of the four jobs; or ``action``, any
    registered action taking a ``hostname``, on named hosts or a filter's."""

    model_config = ConfigDict(extra="forbid")

    request: JobRequest | None = Field(
        None, description="one of the four jobs (install, uninstall, restart, install-and-restart)"
    )
    action: str | None = Field(
        None,
        min_length=1,
        max_length=255,
        description="instead, a registered action taking a hostname: mcoflow.agent_call, "
        "mcoflow.template…",
    )
    host_args: dict[str, Any] = Field(
        default_factory=dict, description="the action's input but its hostname"
    )
    hosts: list[RequestedHost] = Field(default_factory=list, max_length=MAX_HOSTS_PER_REQUEST)
    filter: str | None = Field(None, max_length=1000)
    concurrency: int | None = Field(None, ge=1, le=1_000_000)
    batch_size: HostCount | None = None
    max_failures: HostCount | None = None
    timeout: float | None = Field(None, gt=0, le=86400, description="seconds a host may take")
    what: str | None = Field(None, max_length=200, description="how the job reads in labels")

    @field_validator("request")
    @classmethod
    def _no_start_window(cls, request: JobRequest | None) -> JobRequest | None:
        if request is not None and (request.start_at or request.start_before):
            raise ValueError(
                "a schedule starts its job at each occurrence: no start_at/start_before"
            )
        return request

    @model_validator(mode="after")
    def _one_job(self) -> ScheduledJob:
        if (self.request is None) == (self.action is None):
            raise ValueError("give either request (one of the four jobs) or action")
        if self.request is not None:
            given = [f for f in HOST_ACTION_FIELDS if f in self.model_fields_set]
            if given:
                raise ValueError(f"{given[0]}: with request, give it inside the request")
        return self


class ScheduleRequest(BaseModel):
    """A schedule as the operator asks for it."""

    model_config = ConfigDict(extra="forbid")

    name: ScheduleName
    cron: str = Field(
        min_length=1,
        max_length=255,
        description="five fields (minute hour day-of-month month day-of-week) or @daily…",
    )
    timezone: str = Field("UTC", min_length=1, max_length=64, description="IANA time zone")
    end_at: datetime | None = Field(
        None, description="no occurrence after this ISO 8601 time (server's local time if naive)"
    )
    max_runs: int | None = Field(None, ge=1, le=10**9, description="end after this many runs")
    job: ScheduledJob

    @classmethod
    def parse(cls, **fields: Any) -> ScheduleRequest:
        """The request of the command line's or the form's words; its first problem as a
        JobInputError naming the field (``job.request.parameter``, ``cron``…)."""
        try:
            return cls.model_validate(fields)
        except ValidationError as exc:
            raise validation_input_error(exc) from None


def validation_input_error(exc: ValidationError) -> JobInputError:
    """Pydantic's first problem as a JobInputError naming its field by its path
    (``job.request.parameter``)."""
    problem = exc.errors(include_url=False)[0]
    where = [str(p) for p in problem["loc"]] or ["job"]
    message = str(problem["msg"]).removeprefix("Value error, ")
    return JobInputError(".".join(where), message)


def job_json(job: ScheduledJob) -> dict[str, Any]:
    """The job as stored (JSON), without the options not given."""
    return job.model_dump(mode="json", exclude_defaults=True)


def job_of(stored: dict[str, Any]) -> ScheduledJob:
    """A stored job, read back."""
    return ScheduledJob.model_validate(stored)


def describe_job(stored: dict[str, Any]) -> str:
    """A short line for lists: what runs where."""
    if "request" in stored:
        request = stored["request"]
        what = f"{request.get('kind')} {request.get('parameter')}"
        hosts = request.get("hosts") or []
        where = f"filter {request.get('filter')}" if request.get("filter") else _hosts(hosts)
        return f"{what} on {where}"
    what = stored.get("what") or _action_words(stored)
    where = (
        f"filter {stored['filter']}" if stored.get("filter") else _hosts(stored.get("hosts", []))
    )
    return f"{what} on {where}"


def _action_words(stored: dict[str, Any]) -> str:
    args = stored.get("host_args") or {}
    if "agent" in args and "action" in args:
        return f"{args['agent']}.{args['action']}"
    return str(stored.get("action"))


def _hosts(names: list[str]) -> str:
    names = parse_hosts(names)
    if len(names) <= 3:
        return ", ".join(names) or "no hosts"
    return f"{', '.join(names[:3])} and {len(names) - 3} more"
