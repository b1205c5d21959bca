"""The trigger page's job templates: pick one (``/?template=NAME``), fill in its inputs
as a form built from their declarations, run it (``POST /templates/run``)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from mcoflow.job_request import JobInputError, parse_hosts
from mcoflow.web.auth import page_user
from mcoflow.web.csrf import CSRF_FIELD, require_csrf
from mcoflow.web.ports import JobsPort
from mcoflow.web.strict import UNKNOWN_FIELD

if TYPE_CHECKING:
    from mcoflow.templates import Template, TemplateLibrary

router = APIRouter(include_in_schema=False)
User = Annotated[str, Depends(page_user)]
INPUT_PREFIX = "input."
# the template form's own fields, beside one "input.NAME" per template input
FIXED_FIELDS = ("template", "target", "hosts", "concurrency", "batch_size", "max_failures")
FIELD_LIMIT = 100_000


@dataclass(frozen=True)
class InputField:
    """One template input as the form shows it."""

    name: str
    type: str
    required: bool
    default: str
    pattern: str
    description: str

    @property
    def form_name(self) -> str:
        return INPUT_PREFIX + self.name


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def input_fields(template: Template) -> list[InputField]:
    return [
        InputField(
            name=i.name,
            type=str(getattr(i.type, "value", i.type)),
            required=bool(i.required),
            default=_shown(i.default),
            pattern=i.pattern or "",
            description=i.description or "",
        )
        for i in template.inputs
    ]


def _library(request: Request) -> TemplateLibrary:
    from mcoflow.web.api_templates import template_library_of

    return template_library_of(request)


def template_context(
    request: Request,
    chosen: str = "",
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> dict[str, Any]:
    """What trigger.html's template section shows: the templates to pick from and, once
    one is picked, its inputs as fields with the values sent and the errors."""
    from mcoflow.templates import TemplateNotFound

    library = _library(request)
    names = [t.name for t in library.all()]
    errors = dict(errors or {})
    template = None
    if chosen:
        try:
            template = library.get(chosen)
        except TemplateNotFound:
            errors.setdefault("template", f"no template {chosen!r}")
    fields = input_fields(template) if template is not None else []
    shown = {f.form_name: f.default for f in fields} | {"target": "hosts"}
    shown |= values or {}
    return {
        "template_names": names,
        "template_refused": [str(e) for e in library.errors],
        "template": template,
        "template_fields": fields,
        "template_defaults": (
            template.defaults.model_dump(exclude_none=True) if template is not None else {}
        ),
        "template_values": {k: shown.get(k, "") for k in (*FIXED_FIELDS, *shown)},
        "template_errors": errors,
        "template_open": bool(chosen),
    }


def _refuse_unknown(sent: set[str], template: Template) -> None:
    known = {*FIXED_FIELDS, CSRF_FIELD, *(INPUT_PREFIX + i.name for i in template.inputs)}
    unknown = sorted(sent - known)
    if unknown:
        takes = ", ".join(sorted(known))
        raise RequestValidationError(
            [
                {
                    "loc": ("body", name),
                    "msg": f"{UNKNOWN_FIELD} (this form takes: {takes})",
                    "type": "extra_forbidden",
                }
                for name in unknown
            ]
        )


def _page(
    request: Request, chosen: str, values: dict[str, str], errors: dict[str, str]
) -> Response:
    from mcoflow.web.trigger import trigger_response

    return trigger_response(request, template_context(request, chosen, values, errors), 422)


def _limit(field: str, text: str) -> int | None:
    if not text.strip():
        return None
    if not text.strip().isdigit() or int(text) < 1:
        raise JobInputError(field, "a whole number of hosts, 1 or more")
    return int(text)


@router.post("/templates/run", dependencies=[Depends(require_csrf)])
async def run_template_form(request: Request, user: User) -> Response:
    from mcoflow.templates import TemplateNotFound

    form = await request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str) and k != CSRF_FIELD}
    for key, value in values.items():
        if len(value) > FIELD_LIMIT:
            return _page(request, "", {}, {"template": f"{key}: longer than {FIELD_LIMIT}"})
    chosen = values.get("template", "")
    template = None
    with contextlib.suppress(TemplateNotFound):
        template = _library(request).get(chosen)
    if template is None:  # its inputs cannot be checked: none of them is kept
        return _page(request, "", values, {"template": f"choose a template (no {chosen!r})"})
    _refuse_unknown(set(form.keys()), template)
    jobs: JobsPort | None = request.app.state.jobs
    by_filter = values.get("target") == "filter"
    hosts_text = values.get("hosts", "")
    inputs = {
        name[len(INPUT_PREFIX) :]: text.strip()
        for name, text in values.items()
        if name.startswith(INPUT_PREFIX) and text.strip()  # empty: the default applies
    }
    try:
        if jobs is None:
            raise JobInputError("template", "this server has no job service (no broker configured)")
        names = [] if by_filter else parse_hosts(hosts_text)
        if not names and not hosts_text.strip():
            raise JobInputError("hosts", "enter one or more host names, or a filter")
        plan = await jobs.run_template(
            template.name,
            inputs,
            hosts=names,
            filter=hosts_text.strip() if by_filter else None,
            concurrency=_limit("concurrency", values.get("concurrency", "")),
            batch_size=values.get("batch_size", "").strip() or None,
            max_failures=values.get("max_failures", "").strip() or None,
            start_at=None,
            start_before=None,
            by=user,
        )
    except JobInputError as exc:
        field = "hosts" if exc.field == "filter" else exc.field
        if field.startswith("inputs."):
            field = INPUT_PREFIX + field[len("inputs.") :]
        known = {*FIXED_FIELDS, *(INPUT_PREFIX + i.name for i in template.inputs)}
        shown = {field: exc.message} if field in known else {"template": str(exc)}
        return _page(request, chosen, values, shown)
    return RedirectResponse(f"/plans/{plan.id}", status_code=303)
