"""The web application factory: pages, live updates and the REST API on one World."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from importlib.resources import files
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcoflow.engine import InputError, InvalidOperation, PlanNotFound, World
from mcoflow.web import (
    api,
    api_groups,
    api_rpc,
    api_schedules,
    api_templates,
    groups,
    hosts,
    login,
    metrics,
    operations,
    pages,
    rpc_page,
    schedules_page,
    sse,
    template_form,
    trigger,
)
from mcoflow.web.allow import allowed_methods
from mcoflow.web.auth import AuthSettings, LoginRequired
from mcoflow.web.limits import BodyLimit
from mcoflow.web.middleware import SessionMiddleware
from mcoflow.web.ports import JobInputError, JobsPort
from mcoflow.web.proxy import TrustedProxies
from mcoflow.web.strict import UNKNOWN_FIELD
from mcoflow.web.templating import make_templates, render
from mcoflow.web.unreachable import install_unreachable_handler

API_PREFIX = "/api/"
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers if scope["type"] == "http" else send)


def _is_api(request: Request) -> bool:
    """Answered for programs (JSON errors, headers such as WWW-Authenticate kept)."""
    return request.url.path.startswith(API_PREFIX) or request.url.path == "/metrics"


def _error(
    request: Request,
    status: int,
    detail: str,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    if _is_api(request):
        body: dict[str, Any] = {"detail": detail, "field": field}
        return JSONResponse(body, status_code=status, headers=headers)
    context = {"status": status, "message": detail}
    return render(request, "error.html", context, status_code=status)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        headers = exc.headers
        if exc.status_code == 405 and (allowed := allowed_methods(request)):
            headers = {**(headers or {}), "Allow": allowed}  # of every route on the path
        return _error(request, exc.status_code, str(exc.detail), headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = []
        first_field = None
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
            where = ".".join(loc) or "input"
            first_field = first_field or where
            message = err.get("msg", "invalid")
            if err.get("type") == "extra_forbidden" and not message.startswith(UNKNOWN_FIELD):
                message = f"{UNKNOWN_FIELD} (not one this request takes)"  # pydantic's words
            problems.append(f"{where}: {message}")
        return _error(request, 422, "; ".join(problems) or "invalid input", first_field)

    @app.exception_handler(PlanNotFound)
    async def not_found(request: Request, exc: PlanNotFound) -> Response:
        return _error(request, 404, str(exc.args[0]) if exc.args else "no such plan")

    @app.exception_handler(InvalidOperation)
    async def invalid_operation(request: Request, exc: InvalidOperation) -> Response:
        return _error(request, 409, str(exc))

    @app.exception_handler(JobInputError)
    async def job_input(request: Request, exc: JobInputError) -> Response:
        return _error(request, 422, f"{exc.field}: {exc.message}", exc.field)

    @app.exception_handler(InputError)
    async def action_input(request: Request, exc: InputError) -> Response:
        field = exc.problems[0][0] if exc.problems else None
        return _error(request, 422, str(exc), field)

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        if _is_api(request):
            return _error(request, 401, "authentication required")
        return RedirectResponse(f"/login?next={quote(exc.next_url)}", status_code=303)


def create_app(
    world: World,
    *,
    auth: AuthSettings,
    jobs: JobsPort | None = None,
    broker_state: Callable[[], str] | None = None,
    dropped_replies: Callable[[], Mapping[str, int]] | None = None,
    sse_interval: float = 0.5,
    trusted_proxies: Iterable[str] = (),
) -> FastAPI:
    """The whole web app. ``auth.enabled=False`` only for the embedded default on
    loopback (``AuthSettings.loopback()``); ``broker_state`` reports the broker link,
    ``dropped_replies`` the replies the transport refused, by reason (MCollective's);
    ``trusted_proxies`` (addresses, networks) may say the scheme, client and Host."""
    app = FastAPI(
        title="mcoflow",
        summary="Trigger jobs on a fleet of hosts and operate on their plans.",
        version="1",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,  # Swagger UI loads third-party scripts; the schema is enough
        redoc_url=None,
    )
    app.state.world = world
    app.state.auth = auth
    app.state.jobs = jobs
    app.state.broker_state = broker_state
    app.state.dropped_replies = dropped_replies
    app.state.sse_interval = sse_interval
    app.state.closing = False  # set when the server stops: live streams end
    app.state.templates = make_templates()
    app.mount("/static", StaticFiles(directory=str(files("mcoflow.web") / "static")), "static")
    routers = (
        api,
        api_templates,
        api_rpc,
        login,
        trigger,
        template_form,
        rpc_page,
        pages,
        hosts,
        groups,
        api_groups,
        schedules_page,
        api_schedules,
        sse,
    )
    for module in (*routers, operations, metrics):
        for name in ("router", "writes"):
            if hasattr(module, name):
                app.include_router(getattr(module, name))
    _install_error_handlers(app)
    install_unreachable_handler(app, _error)
    app.add_middleware(SessionMiddleware, auth=auth)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(BodyLimit)
    app.add_middleware(TrustedProxies, trusted=tuple(trusted_proxies))  # outermost: first
    return app
