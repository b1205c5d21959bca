"""The console's pages: plan list, plan page, executors."""

from __future__ import annotations

import time
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from mcoflow.engine import PlanFilter, PlanNotFound, PlanResult, PlanState, World
from mcoflow.web.auth import page_user
from mcoflow.web.templating import render
from mcoflow.web.views import (
    HOST_CHIPS,
    HostTable,
    fmt_duration,
    fmt_time,
    parse_offset,
    plan_snapshot,
    plan_view,
)

router = APIRouter(include_in_schema=False)
User = Annotated[str, Depends(page_user)]
PAGE_SIZE = 25
ORDERS = {
    "-created_at": "newest first",
    "created_at": "oldest first",
    "-started_at": "recently started",
    "-ended_at": "recently ended",
    "label": "label A to Z",
    "state": "state",
}
DONE_NOTICES = {
    "resumed": "The plan was resumed: its failed steps (and failed hosts) run again.",
    "skipped": "The step was skipped; the plan goes on without it.",
    "host-skipped": "The host's failed steps were skipped; it goes on without them.",
    "cancelled": "The plan was cancelled.",
    "rerun": "A new job was started on the hosts that failed.",
    "triggered": "The job was started.",
}


def _enum(kind: type[PlanState] | type[PlanResult], value: str | None) -> Any:
    try:
        return kind(value) if value else None
    except ValueError:
        return None


def _int(value: str | None, default: int) -> int:
    try:
        return max(1, int(value or default))
    except ValueError:
        return default


@router.get("/plans")
async def plans_page(
    request: Request,
    _user: User,
    state: str = "",
    result: str = "",
    action: str = "",
    label: str = "",
    sub: str = "",
    order: str = "-created_at",
    page: str = "1",
) -> Response:
    world: World = request.app.state.world
    order = order if order in ORDERS else "-created_at"
    number = _int(page, 1)
    filters = PlanFilter(
        state=_enum(PlanState, state),
        result=_enum(PlanResult, result),
        action=action.strip() or None,
        label=label.strip() or None,
        top_level_only=not sub,
    )
    listing = await world.list_plans(
        filters, offset=(number - 1) * PAGE_SIZE, limit=PAGE_SIZE, order=order
    )
    rows = [
        plan_view(p) | {"full_action": p.action, "parent_plan_id": p.parent_plan_id}
        for p in listing.items
    ]
    pages = max(1, -(-listing.total // PAGE_SIZE))
    query = {"state": state, "result": result, "action": action, "label": label}
    query |= {"sub": sub, "order": order}
    kept = {k: v for k, v in query.items() if v}

    def page_url(n: int) -> str:
        return "/plans?" + urlencode(kept | {"page": str(n)})

    return render(
        request,
        "plans.html",
        {
            "nav": "plans",
            "rows": rows,
            "total": listing.total,
            "page": number,
            "pages": pages,
            "prev_url": page_url(number - 1) if number > 1 else "",
            "next_url": page_url(number + 1) if number < pages else "",
            "f": query,
            "states": [s.value for s in PlanState],
            "results": [r.value for r in PlanResult],
            "orders": ORDERS,
        },
    )


@router.get("/plans/{plan_id}")
async def plan_page(
    request: Request,
    plan_id: str,
    _user: User,
    hosts: str = "",
    offset: str = "0",
    done: str = "",
) -> Response:
    world: World = request.app.state.world
    table = HostTable(world, status=hosts, offset=parse_offset(offset))
    snapshot = await plan_snapshot(world, plan_id, table)
    plan = await world.get_plan(plan_id)
    parent = None
    if plan.parent_plan_id:
        try:
            parent = plan_view(await world.get_plan(plan.parent_plan_id))
        except PlanNotFound:  # deleted by the cleaner meanwhile
            parent = None
    steps = {s["idx"]: s for s in snapshot["steps"]}
    return render(
        request,
        "plan.html",
        snapshot
        | {
            "nav": "plans",
            "full_action": plan.action,
            "args": plan.args,
            "flow": plan.flow,
            "steps_by_idx": steps,
            "parent": parent,
            "host_filter": table.status,
            "host_offset": table.offset,
            "host_chips": HOST_CHIPS,
            "notice": DONE_NOTICES.get(done, ""),
        },
    )


@router.get("/executors")
async def executors_page(request: Request, _user: User) -> Response:
    world: World = request.app.state.world
    probe = request.app.state.broker_state
    now = time.time()
    rows = [
        {
            "id": e.id,
            "host": e.host,
            "pid": e.pid,
            "started": fmt_time(e.started_at),
            "heartbeat": fmt_time(e.heartbeat_at),
            "age": fmt_duration(max(0.0, now - e.heartbeat_at)),
            "claimed": e.claimed_steps,
        }
        for e in await world.executors()
    ]
    return render(
        request,
        "executors.html",
        {"nav": "executors", "rows": rows, "broker": probe() if probe else "unknown"},
    )
