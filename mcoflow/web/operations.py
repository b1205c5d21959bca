"""The operator's buttons on the plan page: resume, skip (a step, or a fleet's failed
host), cancel, rerun on failed hosts.

Each asks for confirmation: the page's script asks in a dialog and sends
``confirmed=yes``; without it the server answers with a confirmation page first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from mcoflow.engine import InvalidOperation, Plan, PlanNotFound, World
from mcoflow.web.auth import page_user
from mcoflow.web.csrf import require_csrf
from mcoflow.web.ports import JobsPort
from mcoflow.web.strict import known_form_only
from mcoflow.web.templating import render

router = APIRouter(
    include_in_schema=False, dependencies=[Depends(require_csrf), Depends(known_form_only)]
)
User = Annotated[str, Depends(page_user)]
Confirmed = Annotated[str, Form()]


async def _operate(
    request: Request,
    plan_id: str,
    confirmed: str,
    *,
    question: str,
    button: str,
    done: str,
    work: Callable[[], Awaitable[Plan]],
) -> Response:
    world: World = request.app.state.world
    plan = await world.get_plan(plan_id)  # PlanNotFound → 404 page
    if confirmed != "yes":
        context = {"plan": plan, "question": question, "button": button, "action": request.url.path}
        return render(request, "confirm.html", context)
    try:
        result = await work()
    except InvalidOperation as exc:
        context = {"plan": plan, "title": f"{button}: not possible", "message": str(exc)}
        return render(request, "result.html", context, status_code=409)
    return RedirectResponse(f"/plans/{result.id}?done={done}", status_code=303)


def _plan_button(
    name: str, operation: Callable[..., Awaitable[Plan]], question: str, button: str, done: str
) -> None:
    """``POST /plans/{plan_id}/NAME``: ``operation`` (a World method) on the plan, once
    confirmed."""

    async def operate(
        request: Request, plan_id: str, user: User, confirmed: Confirmed = ""
    ) -> Response:
        world: World = request.app.state.world
        return await _operate(
            request,
            plan_id,
            confirmed,
            question=question,
            button=button,
            done=done,
            work=lambda: operation(world, plan_id, by=user),
        )

    operate.__name__ = name
    router.post(f"/plans/{{plan_id}}/{name}")(operate)


_plan_button(
    "resume", World.resume, "Resume this plan? Its failed steps run again.", "Resume", "resumed"
)


@router.post("/plans/{plan_id}/steps/{idx}/skip")
async def skip(
    request: Request, plan_id: str, idx: int, user: User, confirmed: Confirmed = ""
) -> Response:
    world: World = request.app.state.world
    if not 0 <= idx < 2**31:
        raise PlanNotFound(f"plan {plan_id} has no step {idx}")
    return await _operate(
        request,
        plan_id,
        confirmed,
        question=f"Skip step {idx}? The steps that need its output are skipped too.",
        button="Skip",
        done="skipped",
        work=lambda: world.skip(plan_id, idx, by=user),
    )


@router.post("/plans/{plan_id}/hosts/{host_plan_id}/skip")
async def skip_host(
    request: Request, plan_id: str, host_plan_id: str, user: User, confirmed: Confirmed = ""
) -> Response:
    """Skip a failed host's failed steps from its fleet's page: the host goes on, and the
    paused fleet with it once no other host waits for the operator."""
    world: World = request.app.state.world

    async def work() -> Plan:
        host = await world.get_plan(host_plan_id)
        if host.parent_plan_id != plan_id:
            raise PlanNotFound(f"plan {plan_id} has no host plan {host_plan_id}")
        await world.skip_failed(host_plan_id, by=user)
        return await world.get_plan(plan_id)

    return await _operate(
        request,
        plan_id,
        confirmed,
        question="Skip this host's failed steps? The host goes on without them.",
        button="Skip",
        done="host-skipped",
        work=work,
    )


_plan_button(
    "cancel",
    World.cancel,
    "Cancel this plan? Steps not started yet will not run.",
    "Cancel plan",
    "cancelled",
)


@router.post("/plans/{plan_id}/rerun-failed")
async def rerun_failed(
    request: Request, plan_id: str, user: User, confirmed: Confirmed = ""
) -> Response:
    jobs: JobsPort | None = request.app.state.jobs

    async def work() -> Plan:
        if jobs is None:
            raise InvalidOperation("this server has no job service (no broker configured)")
        return await jobs.rerun_failed(plan_id, by=user)

    return await _operate(
        request,
        plan_id,
        confirmed,
        question="Start a new job on the hosts that failed in this one?",
        button="Rerun on failed hosts",
        done="rerun",
        work=work,
    )
