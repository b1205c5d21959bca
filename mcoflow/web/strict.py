"""Refusing input an endpoint does not take: a misspelled field silently ignored (a
``concurency`` limit that is not applied) would mislead whoever made the typo.

JSON bodies refuse unknown fields by their model (``extra="forbid"``); these
dependencies cover the endpoints with no body model, and the console's forms.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError

from mcoflow.web.csrf import CSRF_FIELD

UNKNOWN_FIELD = "unknown field"


def _route_body_fields(request: Request) -> set[str] | None:
    """The body fields the matched route takes (None: not known here)."""
    dependant = getattr(request.scope.get("route"), "dependant", None)
    if dependant is None:
        return None
    names: set[str] = set()
    stack = [dependant]
    while stack:
        current = stack.pop()
        names.update(param.alias for param in current.body_params)
        stack.extend(current.dependencies)
    return names


async def known_body_only(request: Request) -> None:
    """An API endpoint that takes no body refuses one with fields (``{}`` and nothing are
    fine); endpoints with a body model refuse unknown fields by the model."""
    if _route_body_fields(request):
        return
    raw = await request.body()
    if not raw.strip():
        return
    try:
        body: Any = json.loads(raw)
    except ValueError:
        body = None
    if body == {}:
        return
    names = sorted(body) if isinstance(body, dict) else ["(body)"]
    raise RequestValidationError(
        [
            {
                "loc": ("body", name),
                "msg": f"{UNKNOWN_FIELD} (this endpoint takes no body)",
                "type": "extra_forbidden",
            }
            for name in names
        ]
    )


async def known_form_only(request: Request) -> None:
    """A console form refuses fields its page does not send (the CSRF token is one it
    sends)."""
    known = _route_body_fields(request)
    if known is None:
        return
    known.add(CSRF_FIELD)
    form = await request.form()
    unknown = sorted(set(form.keys()) - known)
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
