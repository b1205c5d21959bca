"""While the database is away (a restart, a network cut), every page and API call that
needs it answers 503 with what is wrong and a Retry-After header, instead of a 500 and
a traceback: HTML for pages, JSON for /api/v1 and /metrics."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Request
from sqlalchemy.exc import DBAPIError
from starlette.responses import Response

from mcoflow.engine.store.reconnect import is_unreachable, reason
from mcoflow.engine.store.unavailable import StoreUnavailable

RETRY_AFTER_SECONDS = 5
ErrorResponse = Callable[..., Response]


def unreachable_message(request: Request, exc: BaseException) -> str:
    store = request.app.state.world.store
    return f"the database is unreachable: {reason(store.url, exc)}; retry in a moment"


def install_unreachable_handler(app: FastAPI, error: ErrorResponse) -> None:
    """``error(request, status, detail)`` renders the app's error answers."""

    async def unreachable(request: Request, exc: Exception) -> Response:
        if not is_unreachable(exc):
            raise exc  # a real error: the server's 500, with its traceback in the log
        request.app.state.world.store.link.lost(exc)  # a request may be the first to see it
        response = error(request, 503, unreachable_message(request, exc))
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response

    for kind in (DBAPIError, StoreUnavailable, ConnectionError):
        app.add_exception_handler(kind, unreachable)
