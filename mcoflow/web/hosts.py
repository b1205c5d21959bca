"""The Hosts page: the host inventory with each host's facts and when it was last seen."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from mcoflow.actions.inventory import facts_summary
from mcoflow.rpc.filters import fact_text
from mcoflow.web.auth import page_user
from mcoflow.web.ports import JobInputError, JobsPort
from mcoflow.web.templating import render
from mcoflow.web.views import fmt_duration, fmt_time

router = APIRouter(include_in_schema=False)
User = Annotated[str, Depends(page_user)]


@router.get("/hosts")
async def hosts_page(request: Request, _user: User, filter: str = "") -> Response:
    jobs: JobsPort | None = request.app.state.jobs
    error = ""
    rows = []
    now = time.time()
    if jobs is None:
        error = "this server has no job service (no broker configured)"
    else:
        try:
            found = await jobs.hosts(filter.strip() or None)
        except JobInputError as exc:
            error, found = f"{exc.field}: {exc.message}", []
        rows = [
            {
                "identity": h.identity,
                "last_seen": fmt_time(h.last_seen),
                "age": fmt_duration(max(0.0, now - h.last_seen)),
                "first_seen": fmt_time(h.first_seen),
                "summary": facts_summary(h.facts),
                "facts": sorted((k, fact_text(v)) for k, v in h.facts.items()),
                "classes": ", ".join(h.classes),
                "agents": ", ".join(h.agents),
            }
            for h in found
        ]
    return render(
        request,
        "hosts.html",
        {"nav": "hosts", "rows": rows, "filter": filter, "error": error},
        status_code=422 if error and jobs is not None else 200,
    )
