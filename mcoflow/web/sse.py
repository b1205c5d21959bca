"""Live updates: a server-sent event stream per plan, fed by polling the database.

The database is the source of truth and may be written by executors in other
processes, so the stream polls it (every ``interval`` s) and sends a snapshot only
when something the page shows changed. It ends once the plan has stopped, or the
server is stopping (the browser then reconnects to another or the restarted one).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from mcoflow.engine import PlanNotFound, World
from mcoflow.engine.store.reconnect import is_unreachable
from mcoflow.web.auth import page_user
from mcoflow.web.views import HostTable, parse_offset, plan_snapshot

router = APIRouter(include_in_schema=False)
KEEPALIVE_SECONDS = 15.0


def sse_message(event: str, data: str) -> str:
    lines = "".join(f"data: {line}\n" for line in data.splitlines() or [""])
    return f"event: {event}\n{lines}\n"


async def plan_events(
    world: World,
    plan_id: str,
    *,
    interval: float,
    request: Request | None = None,
    table: HostTable | None = None,
) -> AsyncIterator[str]:
    """``table``: the page of hosts the page shows (the counts are of all of them)."""
    table = table or HostTable(world)
    last = ""
    quiet_since = time.monotonic()
    yield "retry: 2000\n\n"
    while request is None or not (request.app.state.closing or await request.is_disconnected()):
        try:
            snapshot = await plan_snapshot(world, plan_id, table)
        except PlanNotFound:
            yield sse_message("gone", "{}")
            return
        except Exception as exc:
            if not is_unreachable(exc):
                raise
            await asyncio.sleep(interval)  # the database is away: the stream waits for it
            continue
        data = json.dumps(snapshot, separators=(",", ":"))
        if data != last:
            last = data
            quiet_since = time.monotonic()
            yield sse_message("plan", data)
        elif time.monotonic() - quiet_since > KEEPALIVE_SECONDS:
            quiet_since = time.monotonic()
            yield ": keepalive\n\n"
        if snapshot["plan"]["finished"]:
            yield sse_message("end", "{}")
            return
        await asyncio.sleep(interval)


@router.get("/plans/{plan_id}/events", dependencies=[Depends(page_user)])
async def plan_stream(
    request: Request, plan_id: str, hosts: str = "", offset: str = "0"
) -> StreamingResponse:
    world: World = request.app.state.world
    await world.get_plan(plan_id)  # 404 before the stream starts
    table = HostTable(world, status=hosts, offset=parse_offset(offset))
    return StreamingResponse(
        plan_events(
            world,
            plan_id,
            interval=request.app.state.sse_interval,
            request=request,
            table=table,
        ),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
