"""The ``Allow`` header of a 405 on the API: every method its schema documents for the
path.

Starlette answers 405 with the methods of the first route whose path matched; a path
served by two routes (``GET /api/v1/groups`` for reading, ``POST`` on the router that
checks the origin) would list only one of them."""

from __future__ import annotations

import re

from fastapi import FastAPI, Request

_PARAMETER = re.compile(r"\\\{[^/]+?\\\}")
_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


Documented = tuple[tuple[re.Pattern[str], frozenset[str]], ...]


def _documented(app: FastAPI) -> Documented:
    cached = getattr(app.state, "documented_methods", None)
    if isinstance(cached, tuple):
        return cached
    paths = app.openapi().get("paths", {})
    known: Documented = tuple(
        (
            re.compile(_PARAMETER.sub("[^/]+", re.escape(path)) + "$"),
            frozenset(m.upper() for m in operations if m in _METHODS),
        )
        for path, operations in paths.items()
    )
    app.state.documented_methods = known
    return known


def allowed_methods(request: Request) -> str | None:
    """``GET, POST`` for a documented path; None for any other."""
    methods: set[str] = set()
    for pattern, allowed in _documented(request.app):
        if pattern.match(request.url.path):
            methods |= allowed
    return ", ".join(sorted(methods)) or None
