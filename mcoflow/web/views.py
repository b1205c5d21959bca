"""What the pages and the live updates show of a plan, built from engine records.

Pages render these with Jinja2 (autoescaped); the live-update stream sends the same
values as JSON, so the server decides every displayed string in one place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mcoflow.engine import HistoryEntry, Plan, PlanResult, PlanState, Step, StepState, World
from mcoflow.engine.flow import contains_reference

MAX_HOST_ROWS = 1000
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


def step_view(step: Step) -> dict[str, Any]:
    error = step.error or {}
    return {
        "idx": step.idx,
        "action": short_action(step.action),
        "summary": summarize_input(step.input),
        "state": step.state.value,
        "progress": round(step.progress * 100),
        "attempts": step.attempts,
        "input": pretty_json(step.input),
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
    status: str  # what the table filters on: running, paused, success, error…
    state: str
    result: str
    duration: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {
            "plan_id": self.plan_id,
            "host": self.host,
            "status": self.status,
            "state": self.state,
            "result": self.result,
            "duration": self.duration,
            "message": self.message,
        }


def host_status(plan: Plan) -> str:
    """One word per host for the table's filter: running, paused, success, error…"""
    if plan.state is PlanState.STOPPED:
        return plan.result.value
    return plan.state.value


class HostTable:
    """The per-host rows of a fleet job. Keeps the messages of failed hosts it already
    looked up, so a live stream over thousands of hosts does not re-read their steps."""

    def __init__(self, world: World) -> None:
        self.world = world
        self._messages: dict[tuple[str, str, str], str] = {}

    async def message(self, child: Plan) -> str:
        if child.error:
            return child.error
        if child.result is not PlanResult.ERROR and child.state is not PlanState.PAUSED:
            return ""
        key = (child.id, child.state.value, child.result.value)
        if key not in self._messages:
            steps = await self.world.steps(child.id)
            errors = [s.error for s in steps if s.state is StepState.ERROR and s.error]
            self._messages[key] = str(errors[0].get("message", "")) if errors else ""
        return self._messages[key]

    async def rows(self, children: list[Plan]) -> list[HostRow]:
        rows = []
        for child in children[:MAX_HOST_ROWS]:
            rows.append(
                HostRow(
                    plan_id=child.id,
                    host=child.label,
                    status=host_status(child),
                    state=child.state.value,
                    result=child.result.value,
                    duration=fmt_duration(plan_duration(child)),
                    message=await self.message(child),
                )
            )
        return rows


def host_counts(children: list[Plan]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for child in children:
        status = host_status(child)
        counts[status] = counts.get(status, 0) + 1
    return counts


def flow_step_ids(flow: Any) -> list[int]:
    if isinstance(flow, int):
        return [flow]
    if isinstance(flow, list):
        return [i for part in flow[1:] for i in flow_step_ids(part)]
    return []


async def plan_snapshot(world: World, plan_id: str, table: HostTable) -> dict[str, Any]:
    """Everything the plan page shows and the live stream sends. PlanNotFound if none."""
    plan = await world.get_plan(plan_id)
    steps = [s for s in await world.steps(plan_id) if s.has_run]
    children = await world.store.child_plans(plan_id)
    rows = await table.rows(children)
    return {
        "plan": plan_view(plan),
        "steps": [step_view(s) for s in steps],
        "history": history_view(await world.history(plan_id)),
        "fleet": bool(children),
        "hosts": [r.as_dict() for r in rows],
        "host_total": len(children),
        "host_counts": host_counts(children),
    }
