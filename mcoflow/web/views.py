"""What the pages and the live updates show of a plan, built from engine records.

Pages render these with Jinja2 (autoescaped); the live-update stream sends the same
values as JSON, so the server decides every displayed string in one place.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from mcoflow.engine import HistoryEntry, Plan, PlanState, Step, StepState, World
from mcoflow.engine.child_status import ChildStatus, child_status, statuses_named
from mcoflow.engine.display import input_text, step_titles
from mcoflow.engine.flow import contains_reference
from mcoflow.engine.store import ChildPage, ChildRow

MAX_HOST_ROWS = 100  # hosts a page shows (and its live updates send)
HOST_CHIPS = [status.value for status in ChildStatus]
ACTIVE_PLAN_STATES = frozenset(
    {PlanState.PENDING, PlanState.SCHEDULED, PlanState.PLANNING, PlanState.PLANNED}
    | {PlanState.RUNNING, PlanState.PAUSED}
)


def fmt_time(ts: float | None) -> str:
    if ts is None:
        return "—"
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def short_action(name: str) -> str:
    return name.rsplit(".", 1)[-1]


# Durations are shown once a thing has ended: a ticking value would change every
# snapshot and make the live stream resend everything twice a second.
def plan_duration(plan: Plan) -> float | None:
    if plan.started_at is None or plan.ended_at is None:
        return None
    return plan.ended_at - plan.started_at


def step_duration(step: Step) -> float | None:
    if step.started_at is None or step.ended_at is None:
        return None
    return step.ended_at - step.started_at


def summarize_input(value: dict[str, Any], limit: int = 60) -> str:
    """``host=web-01 package=nginx``: what tells one step from its siblings."""
    parts = []
    for key, item in value.items():
        if contains_reference(item) or item in ([], {}, None, ""):
            continue
        shown = item if isinstance(item, str) else json.dumps(item, default=str)
        parts.append(f"{key}={shown}")
    text = " ".join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def reply_of(step: Step) -> dict[str, Any] | None:
    """The host's reply, if the action kept one under ``reply`` in output or data."""
    for source in (step.output, step.data):
        if isinstance(source, dict) and isinstance(source.get("reply"), dict):
            reply: dict[str, Any] = source["reply"]
            return reply
    return None


def reply_view(reply: dict[str, Any] | None) -> dict[str, str] | None:
    if reply is None:
        return None
    data = reply.get("data")
    captured = data.get("output") if isinstance(data, dict) else None
    return {
        "sender": str(reply.get("sender", "")),
        "statuscode": str(reply.get("statuscode", "")),
        "statusmsg": str(reply.get("statusmsg", "")),
        "data": pretty_json(data) if data is not None else "",
        "output": captured if isinstance(captured, str) else "",
    }


def step_view(step: Step, titles: Mapping[int, str] | None = None) -> dict[str, Any]:
    """``titles`` (step index -> what it does) name the steps whose output it takes."""
    error = step.error or {}
    return {
        "idx": step.idx,
        "action": short_action(step.action),
        "summary": summarize_input(step.input),
        "state": step.state.value,
        "progress": round(step.progress * 100),
        "attempts": step.attempts,
        "input": input_text(step.input, titles or {}),
        "output": pretty_json(step.output) if step.output is not None else "",
        "data": pretty_json(step.data) if step.data else "",
        "error_message": str(error.get("message", "")),
        "error_type": str(error.get("type", "")),
        "traceback": str(error.get("traceback", "")),
        "reply": reply_view(reply_of(step)),
        "started": fmt_time(step.started_at),
        "ended": fmt_time(step.ended_at),
        "duration": fmt_duration(step_duration(step)),
        "run_seconds": fmt_duration(step.run_seconds) if step.run_seconds else "—",
        "can_skip": step.state is StepState.ERROR,
    }


def plan_view(plan: Plan) -> dict[str, Any]:
    return {
        "id": plan.id,
        "label": plan.label,
        "action": short_action(plan.action),
        "state": plan.state.value,
        "result": plan.result.value,
        "progress": round(plan.progress * 100),
        "error": plan.error or "",
        "created": fmt_time(plan.created_at),
        "started": fmt_time(plan.started_at),
        # a delayed plan's window (empty for a plan started at once)
        "start_at": fmt_time(plan.start_at) if plan.start_at is not None else "",
        "start_before": fmt_time(plan.start_before) if plan.start_before is not None else "",
        "ended": fmt_time(plan.ended_at),
        "duration": fmt_duration(plan_duration(plan)),
        "finished": plan.state is PlanState.STOPPED,
        "can_resume": plan.state is PlanState.PAUSED,
        "can_cancel": plan.state in ACTIVE_PLAN_STATES,
    }


def history_view(entries: list[HistoryEntry]) -> list[dict[str, str]]:
    return [
        {"at": fmt_time(e.at), "what": e.what, "detail": e.detail or "", "by": e.by}
        for e in entries
    ]


@dataclass(frozen=True)
class HostRow:
    plan_id: str
    host: str
    status: str  # what the table filters on: running, success, error…
    state: str
    result: str
    duration: str
    message: str

    @property
    def can_skip(self) -> bool:
        """A failed host waiting for the operator: its failed steps can be skipped."""
        return self.state == PlanState.PAUSED.value

    def as_dict(self) -> dict[str, Any]:
        return {
            "plan_id": self.plan_id,
            "host": self.host,
            "status": self.status,
            "state": self.state,
            "result": self.result,
            "duration": self.duration,
            "message": self.message,
            "can_skip": self.can_skip,
        }


def host_status(plan: Plan) -> str:
    """One word per host for the table's filter and chips: running, success, error…
    (a paused host failed: it counts as an error)."""
    return child_status(plan).value


def parse_offset(value: str) -> int:
    """A page's ``offset`` query parameter, leniently: a hand-edited link shows page 1."""
    try:
        return min(max(0, int(value or 0)), 10**9)
    except ValueError:
        return 0


def host_row(child: ChildRow) -> HostRow:
    return HostRow(
        plan_id=child.plan_id,
        host=child.label,
        status=child.status.value,
        state=child.state.value,
        result=child.result.value,
        duration=fmt_duration(child.duration),
        message=child.message,
    )


class HostTable:
    """Which page of a fleet's hosts a page or a live stream shows: ``status`` (a word of
    HOST_FILTERS, or blank for all) and ``offset``; each read takes that page only."""

    def __init__(
        self, world: World, *, status: str = "", offset: int = 0, limit: int = MAX_HOST_ROWS
    ) -> None:
        self.world = world
        try:
            self.statuses = statuses_named(status)
        except ValueError:  # a hand-edited link: every host rather than an error page
            self.statuses = None
        self.status = status.strip().lower() if self.statuses is not None else ""
        self.offset = max(0, offset)
        self.limit = limit

    async def page(self, plan_id: str) -> ChildPage:
        return await self.world.store.child_page(
            plan_id, statuses=self.statuses, offset=self.offset, limit=self.limit
        )

    def url(self, plan_id: str, offset: int) -> str:
        query = {"hosts": self.status, "offset": str(offset) if offset else ""}
        kept = {k: v for k, v in query.items() if v}
        return f"/plans/{plan_id}" + ("?" + urlencode(kept) if kept else "") + "#hosts"

    def pager(self, plan_id: str, page: ChildPage) -> dict[str, Any]:
        """The page's place in the (filtered) list: its range and the links around it."""
        shown = len(page.rows)
        first = page.offset + 1 if shown else 0
        what = f" {self.status}" if self.status else ""
        return {
            "host_range": f"Hosts {first} to {page.offset + shown} of {page.matching}{what}"
            if page.matching
            else f"No{what} hosts",
            "host_prev_url": self.url(plan_id, max(0, page.offset - page.limit))
            if page.offset > 0
            else "",
            "host_next_url": self.url(plan_id, page.offset + page.limit) if page.has_more else "",
        }


def flow_step_ids(flow: Any) -> list[int]:
    if isinstance(flow, int):
        return [flow]
    if isinstance(flow, list):
        return [i for part in flow[1:] for i in flow_step_ids(part)]
    return []


async def plan_snapshot(world: World, plan_id: str, table: HostTable) -> dict[str, Any]:
    """Everything the plan page shows and the live stream sends. PlanNotFound if none."""
    plan = await world.get_plan(plan_id)
    all_steps = await world.steps(plan_id)
    titles = step_titles(all_steps)
    steps = [s for s in all_steps if s.has_run]
    page = await table.page(plan_id)
    counts = page.counts
    return {
        "plan": plan_view(plan),
        "steps": [step_view(s, titles) for s in steps],
        "history": history_view(await world.history(plan_id)),
        "fleet": counts.total > 0,
        "hosts": [host_row(r).as_dict() for r in page.rows],
        "host_total": counts.total,
        "host_counts": counts.as_dict(),
        "host_summary": counts.summary() if counts.total else "",
        "can_rerun": counts.failed > 0,
    } | table.pager(plan_id, page)
