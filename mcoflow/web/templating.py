"""Jinja2 set-up: autoescaping on for every template, and the page context."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.responses import Response

from mcoflow.web.auth import ANONYMOUS, AuthSettings, Session

STATE_BADGES = {
    "pending", "scheduled", "planning", "planned", "running", "paused", "stopped",
    "suspended", "success", "warning", "error", "skipping", "skipped", "cancelled",
}  # fmt: skip


def _badge(value: str) -> str:
    """A CSS class for a state or result: only known names, never host data."""
    return f"badge-{value}" if value in STATE_BADGES else "badge-unknown"


def make_templates() -> Jinja2Templates:
    env = Environment(
        loader=PackageLoader("mcoflow.web", "templates"),
        autoescape=True,  # every template, whatever its extension
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["badge"] = _badge
    return Jinja2Templates(env=env)


def render(
    request: Request, name: str, context: dict[str, Any], *, status_code: int = 200
) -> Response:
    templates: Jinja2Templates = request.app.state.templates
    auth: AuthSettings = request.app.state.auth
    session: Session | None = getattr(request.state, "session", None)
    user = session.user if session and session.user else None
    base = {
        "auth_enabled": auth.enabled,
        "user": user or (ANONYMOUS if not auth.enabled else None),
        "csrf_token": session.csrf if session else "",
        "nav": "",
    }
    return templates.TemplateResponse(request, name, base | context, status_code=status_code)
