"""Job templates in the REST API: list them with their inputs as JSON Schema, show one,
run one on hosts (``/api/v1/templates``)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from mcoflow.job_request import (
    MAX_HOSTS_PER_REQUEST,
    HostCount,
    RequestedHost,
    parse_hosts,
)
from mcoflow.web.api import User, _errors, _jobs, known_query_only
from mcoflow.web.csrf import check_origin
from mcoflow.web.schemas import ErrorOut, PlanOut
from mcoflow.web.strict import known_body_only

if TYPE_CHECKING:
    from mcoflow.templates import Template, TemplateLibrary

TemplateName = Annotated[str, Path(min_length=1, max_length=200, description="the template's name")]

router = APIRouter(prefix="/api/v1", tags=["templates"], dependencies=[Depends(known_query_only)])
writes = APIRouter(
    prefix="/api/v1",
    tags=["templates"],
    dependencies=[Depends(check_origin), Depends(known_query_only), Depends(known_body_only)],
)


class TemplateOut(BaseModel):
    name: str
    description: str
    inputs: dict[str, Any] = Field(description="the template's inputs as a JSON Schema object")
    defaults: dict[str, Any] = Field(
        description="fleet options the template sets unless the run gives them: "
        "concurrency, batch_size, max_failures"
    )
    source: str = Field(description="where the template was loaded from")

    @classmethod
    def of(cls, template: Template) -> TemplateOut:
        return cls(
            name=template.name,
            description=template.description,
            inputs=template.input_schema(),
            defaults=template.defaults.model_dump(exclude_none=True),
            source=str(template.source),
        )


class RefusedTemplateOut(BaseModel):
    file: str
    line: int
    field: str
    message: str


class TemplatesOut(BaseModel):
    templates: list[TemplateOut] = Field(description="by name")
    refused: list[RefusedTemplateOut] = Field(
        description="template files of the configured folder that do not load, and why"
    )


class TemplateRunIn(BaseModel):
    """A template's inputs and the hosts to run it on, with the fleet options of a job."""

    model_config = ConfigDict(extra="forbid")  # a misspelled limit must not be ignored

    inputs: dict[str, Any] = Field(
        default_factory=dict,
        description="the template's inputs by name, as its `inputs` schema describes them",
    )
    hosts: Annotated[list[RequestedHost], AfterValidator(parse_hosts)] = Field(
        default_factory=list,
        max_length=MAX_HOSTS_PER_REQUEST,
        description="host identities; empty if `filter` is given",
    )
    filter: str | None = Field(
        default=None, max_length=1000, description="select hosts by discovery instead"
    )
    concurrency: int | None = Field(
        default=None, ge=1, le=1_000_000, description="hosts at once (fleet)"
    )
    batch_size: HostCount | None = Field(default=None, description="hosts per batch: N or N%")
    max_failures: HostCount | None = Field(
        default=None, description="failed hosts (N or N%) before the rest is cancelled"
    )
    start_at: datetime | None = Field(
        default=None, description="start later, at this ISO 8601 time; not in the past"
    )
    start_before: datetime | None = Field(
        default=None, description="give the job up if it has not started by then"
    )


def template_library_of(request: Request) -> TemplateLibrary:
    """The templates this server runs (``app.state.template_library`` when a test set
    one, else the process's library)."""
    from mcoflow.templates import template_library

    library: TemplateLibrary | None = getattr(request.app.state, "template_library", None)
    return library if library is not None else template_library()


def template_named(request: Request, name: str) -> Template:
    from mcoflow.templates import TemplateNotFound

    library = template_library_of(request)
    try:
        return library.get(name)
    except TemplateNotFound:
        raise HTTPException(404, f"no template {name!r}") from None


_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "no such template"}
}


@router.get(
    "/templates",
    response_model=TemplatesOut,
    responses=_errors(),
    summary="The job templates, with their inputs as JSON Schema",
)
async def list_templates(request: Request, _user: User) -> TemplatesOut:
    library = template_library_of(request)
    refused = [
        RefusedTemplateOut(file=e.file, line=e.line, field=e.field, message=e.problem)
        for e in library.errors
    ]
    return TemplatesOut(templates=[TemplateOut.of(t) for t in library.all()], refused=refused)


@router.get(
    "/templates/{name}",
    response_model=TemplateOut,
    responses={**_errors(422), **_NOT_FOUND},
    summary="A job template, with its inputs as JSON Schema",
)
async def show_template(name: TemplateName, request: Request, _user: User) -> TemplateOut:
    return TemplateOut.of(template_named(request, name))


@writes.post(
    "/templates/{name}/run",
    status_code=201,
    response_model=PlanOut,
    responses={**_errors(400, 403, 422, 503), **_NOT_FOUND},
    summary="Run a job template on hosts (a fleet job on several)",
)
async def run_template(
    name: TemplateName, body: TemplateRunIn, request: Request, user: User
) -> PlanOut:
    template_named(request, name)  # 404 before the job service is asked
    plan = await _jobs(request).run_template(
        name,
        body.inputs,
        hosts=body.hosts,
        filter=body.filter,
        concurrency=body.concurrency,
        batch_size=body.batch_size,
        max_failures=body.max_failures,
        start_at=body.start_at,
        start_before=body.start_before,
        by=user,
    )
    return PlanOut.of(plan)
