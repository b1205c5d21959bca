"""The "Run an action" page: pick an agent's action, fill in the form its declared
interface makes, name hosts or a filter; then each host's reply.

The form's input fields are the action's inputs (``input.NAME``), so which fields the
form takes depends on the action: fields the action does not declare are refused,
naming them, as every console form refuses fields it does not send.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from starlette.datastructures import FormData
from starlette.responses import Response

from mcoflow.actions import Jobs
from mcoflow.actions.agent_calls import AgentCalls, InterfacesUnavailable
from mcoflow.actions.agent_interfaces import INPUTS, ActionSpec, AgentSpec
from mcoflow.job_request import JobInputError, parse_hosts
from mcoflow.web.auth import page_user
from mcoflow.web.csrf import CSRF_FIELD, require_csrf
from mcoflow.web.templating import render

router = APIRouter(include_in_schema=False)
User = Annotated[str, Depends(page_user)]
INPUT_FIELD = "input."  # an input's form field: input.package
FIXED_FIELDS = frozenset(
    {"call", "target", "hosts", "concurrency", "batch_size", "max_failures", "timeout"}
)
FIELD_MAX = 100_000


def _calls(request: Request) -> AgentCalls | None:
    """Agent calls through the server's job service; None when it has none."""
    jobs = request.app.state.jobs
    if jobs is None:
        return None
    if not isinstance(jobs, Jobs):  # another JobsPort: calls go through the same world
        jobs = Jobs(
            request.app.state.world,
            check_hosts=getattr(jobs, "check_hosts", True),
            transport=getattr(jobs, "transport", None),
        )
    return AgentCalls(jobs)


def _page(
    request: Request,
    agents: dict[str, AgentSpec],
    chosen: ActionSpec | None,
    form: dict[str, str],
    errors: dict[str, str],
    *,
    enabled: bool,
    status: int = 200,
) -> Response:
    context: dict[str, Any] = {
        "nav": "rpc",
        "agents": [agents[name] for name in sorted(agents)],
        "chosen": chosen,
        "form": form,
        "errors": errors,
        "enabled": enabled,
        "fleet_open": any(form.get(k) for k in ("concurrency", "batch_size", "max_failures")),
    }
    return render(request, "rpc.html", context, status_code=status)


def _chosen(agents: dict[str, AgentSpec], call: str) -> ActionSpec | None:
    agent, _, action = call.partition(".")
    spec = agents.get(agent)
    return spec.actions.get(action) if spec is not None else None


@router.get("/rpc")
async def rpc_page(request: Request, _user: User, call: str = "") -> Response:
    calls = _calls(request)
    agents = await calls.known() if calls is not None else {}
    chosen = _chosen(agents, call)
    errors = {"call": f"no declared action {call!r}"} if call and chosen is None else {}
    form = {"call": call, "target": "hosts"}
    return _page(request, agents, chosen, form, errors, enabled=calls is not None)


@router.post("/rpc/refresh", dependencies=[Depends(require_csrf)])
async def refresh(request: Request, user: User) -> Response:
    calls = _calls(request)
    agents: dict[str, AgentSpec] = {}
    try:
        if calls is None:
            raise InterfacesUnavailable("this server has no job service (no broker configured)")
        agents = await calls.fetch(by=user)
    except InterfacesUnavailable as exc:
        form = {"call": "", "target": "hosts"}
        known = await calls.known() if calls is not None else {}
        return _page(
            request, known, None, form, {"call": str(exc)}, enabled=calls is not None, status=503
        )
    del agents
    return RedirectResponse("/rpc", status_code=303)


def _form_text(form: FormData) -> dict[str, str]:
    values = {}
    for key, value in form.items():
        if key == CSRF_FIELD:
            continue
        values[key] = value if isinstance(value, str) else ""
    return values


@router.post("/rpc", dependencies=[Depends(require_csrf)])
async def run_action(request: Request, user: User) -> Response:
    form = _form_text(await request.form())
    calls = _calls(request)
    agents = await calls.known() if calls is not None else {}
    chosen = _chosen(agents, form.get("call", ""))

    def again(field: str, message: str, status: int = 422) -> Response:
        return _page(
            request,
            agents,
            chosen,
            form,
            {field: message},
            enabled=calls is not None,
            status=status,
        )

    if calls is None:
        return again("call", "this server has no job service (no broker configured)", 503)
    if chosen is None:
        return again("call", "choose one of the declared actions")
    unknown = sorted(
        k
        for k in form
        if k not in FIXED_FIELDS
        and not (k.startswith(INPUT_FIELD) and chosen.input(k.removeprefix(INPUT_FIELD)))
    )
    if unknown:
        return again("call", f"unknown field {unknown[0]} (not an input of {chosen.full_name})")
    if any(len(v) > FIELD_MAX for v in form.values()):
        return again("call", f"a field is longer than {FIELD_MAX} characters")
    # an empty field is an input not given (the form shows every declared one)
    inputs = {
        k.removeprefix(INPUT_FIELD): v
        for k, v in form.items()
        if k.startswith(INPUT_FIELD) and v.strip()
    }
    by_filter = form.get("target") == "filter"
    target = form.get("hosts", "")
    try:
        plan = await calls.start(
            chosen.agent,
            chosen.name,
            inputs,
            as_text=True,
            hosts=[] if by_filter else parse_hosts(target),
            filter=target.strip() or None if by_filter else None,
            concurrency=_whole(form.get("concurrency", ""), "concurrency"),
            batch_size=form.get("batch_size", "").strip() or None,
            max_failures=form.get("max_failures", "").strip() or None,
            timeout=_seconds(form.get("timeout", "")),
            by=user,
        )
    except JobInputError as exc:
        field = exc.field
        if field.startswith(f"{INPUTS}."):
            field = INPUT_FIELD + field.removeprefix(f"{INPUTS}.")
        elif field in ("agent", "action", INPUTS):
            field = "call"
        elif field == "filter":
            field = "hosts"
        return again(field, exc.message)
    except InterfacesUnavailable as exc:
        return again("call", str(exc), 503)
    return RedirectResponse(f"/rpc/plans/{plan.id}", status_code=303)


def _whole(text: str, field: str) -> int | None:
    if not text.strip():
        return None
    if not text.strip().isdigit() or int(text) < 1:
        raise JobInputError(field, "a whole number of hosts, 1 or more")
    return int(text)


def _seconds(text: str) -> float | None:
    if not text.strip():
        return None
    try:
        seconds = float(text)
    except ValueError:
        raise JobInputError("timeout", f"seconds, a number: got {text!r}") from None
    if not 0 < seconds <= 86400:
        raise JobInputError("timeout", "more than 0 and at most 86400 seconds")
    return seconds


@router.get("/rpc/plans/{plan_id}")
async def results_page(request: Request, plan_id: str, _user: User) -> Response:
    calls = _calls(request)
    if calls is None:
        return RedirectResponse(f"/plans/{plan_id}", status_code=303)
    plan = await calls.world.get_plan(plan_id)
    rows = await calls.results(plan.id)
    columns = list(dict.fromkeys(key for r in rows for key in r.data))
    shown = [
        {
            "host": r.host,
            "plan_id": r.plan_id,
            "status": r.status,
            "message": r.message,
            "cells": {c: _cell(r.data.get(c)) for c in columns},
        }
        for r in rows
    ]
    context = {
        "nav": "rpc",
        "plan": plan,
        "rows": shown,
        "columns": columns,
        "failed": sum(r.failed for r in rows),
        "running": plan.state.value not in ("stopped", "paused"),
    }
    return render(request, "rpc_results.html", context)


def _cell(value: Any) -> str:
    """A reply's value in a cell: text as it is, anything else as JSON."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)
