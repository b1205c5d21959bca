"""The trigger page: hosts, a parameter and four buttons; a job on submit."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from mcoflow.actions.schedule import parse_time
from mcoflow.engine import InputError
from mcoflow.job_request import JobInputError, JobKind, JobRequest, parse_hosts
from mcoflow.web.auth import page_user
from mcoflow.web.csrf import require_csrf
from mcoflow.web.ports import JobsPort
from mcoflow.web.strict import known_form_only
from mcoflow.web.template_form import template_context
from mcoflow.web.templating import render

router = APIRouter(include_in_schema=False)
User = Annotated[str, Depends(page_user)]
BUTTONS = {
    "install": "Install",
    "uninstall": "Uninstall",
    "restart": "Restart",
    "install-and-restart": "Install and restart",
}
EMPTY_FORM = {
    "target": "hosts",
    "hosts": "",
    "parameter": "",
    "concurrency": "",
    "batch_size": "",
    "max_failures": "",
    "start_at": "",
    "start_before": "",
}


def _page(
    request: Request,
    form: dict[str, str],
    errors: dict[str, str],
    status: int = 200,
    templates: dict[str, Any] | None = None,
) -> Response:
    jobs: JobsPort | None = request.app.state.jobs
    context: dict[str, Any] = {
        **(templates if templates is not None else template_context(request)),
        "nav": "trigger",
        "form": form,
        "errors": errors,
        "buttons": BUTTONS,
        "enabled": jobs is not None,
        "fleet_open": any(form[k] for k in ("concurrency", "batch_size", "max_failures")),
        "later_open": bool(form["start_at"] or form["start_before"]),
        # datetime-local has no zone: the times are read as the server's local time
        "server_zone": datetime.now().astimezone().strftime("%Z, UTC%z"),
    }
    return render(request, "trigger.html", context, status_code=status)


def trigger_response(request: Request, templates: dict[str, Any], status: int) -> Response:
    """The trigger page with its template section as ``templates`` (template_context)."""
    return _page(request, dict(EMPTY_FORM), {}, status, templates)


@router.get("/")
async def trigger_page(
    request: Request,
    _user: User,
    template: Annotated[str, Query(max_length=200, description="a job template to fill in")] = "",
) -> Response:
    chosen = template_context(request, template.strip())
    return _page(request, dict(EMPTY_FORM), {}, templates=chosen)


@router.post("/", dependencies=[Depends(require_csrf), Depends(known_form_only)])
async def trigger(
    request: Request,
    user: User,
    kind: Annotated[str, Form()] = "",
    target: Annotated[str, Form()] = "hosts",
    hosts: Annotated[str, Form(max_length=100_000)] = "",
    parameter: Annotated[str, Form(max_length=10_000)] = "",
    concurrency: Annotated[str, Form(max_length=20)] = "",
    batch_size: Annotated[str, Form(max_length=20)] = "",
    max_failures: Annotated[str, Form(max_length=20)] = "",
    start_at: Annotated[str, Form(max_length=40)] = "",
    start_before: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    form = {
        "target": "filter" if target == "filter" else "hosts",
        "hosts": hosts,
        "parameter": parameter,
        "concurrency": concurrency,
        "batch_size": batch_size,
        "max_failures": max_failures,
        "start_at": start_at,
        "start_before": start_before,
    }
    jobs: JobsPort | None = request.app.state.jobs
    try:
        if jobs is None:
            raise JobInputError("kind", "this server has no job service (no broker configured)")
        if kind not in set(JobKind):
            raise JobInputError("kind", "press one of the four buttons")
        names = [] if form["target"] == "filter" else parse_hosts(hosts)
        host_filter = hosts.strip() if form["target"] == "filter" else None
        if not names and not host_filter:
            raise JobInputError("hosts", "enter one or more host names, or a filter")
        limit = None
        if concurrency.strip():
            if not concurrency.strip().isdigit() or int(concurrency) < 1:
                raise JobInputError("concurrency", "a whole number of hosts, 1 or more")
            limit = int(concurrency)
        job = JobRequest.parse(
            kind=kind,
            hosts=names,
            filter=host_filter,
            parameter=parameter.strip(),
            concurrency=limit,
            batch_size=batch_size.strip() or None,
            max_failures=max_failures.strip() or None,
            start_at=parse_time(start_at, field="start_at") if start_at.strip() else None,
            start_before=(
                parse_time(start_before, field="start_before") if start_before.strip() else None
            ),
        )
        plan = await jobs.start(job, by=user)
    except JobInputError as exc:
        field = "hosts" if exc.field == "filter" else exc.field
        return _page(request, form, {field: exc.message}, status=422)
    except InputError as exc:
        where, what = exc.problems[0] if exc.problems else ("kind", str(exc))
        field = where.split(".")[0]
        field = field if field in EMPTY_FORM else "kind"
        return _page(request, form, {field: f"{where}: {what}"}, status=422)
    return RedirectResponse(f"/plans/{plan.id}", status_code=303)
