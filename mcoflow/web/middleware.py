"""A pure ASGI middleware: Host header check, and a signed session cookie on pages.

Every page visitor gets a session (anonymous until login) so every form can carry a
CSRF token, also when authentication is off on loopback.
"""

from __future__ import annotations

from http.cookies import SimpleCookie
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcoflow.web.auth import SESSION_COOKIE, AuthSettings, Session, read_session, sign_session

_NO_SESSION_PREFIXES = ("/api/", "/static/", "/openapi.json", "/docs", "/redoc", "/metrics")


def host_name(host_header: str) -> str:
    if host_header.startswith("["):  # [::1]:9292
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def session_cookie_header(session: Session, auth: AuthSettings, *, https: bool = False) -> bytes:
    """The session cookie; ``Secure`` when the page came over HTTPS (or always, with
    ``auth.secure_cookies``), so a browser never sends it back in clear text."""
    cookie: SimpleCookie = SimpleCookie()
    cookie[SESSION_COOKIE] = sign_session(session, auth.secret)
    morsel = cookie[SESSION_COOKIE]
    morsel["path"] = "/"
    morsel["httponly"] = True
    morsel["samesite"] = "Strict"
    morsel["max-age"] = str(auth.session_seconds)
    if auth.secure_cookies or https:
        morsel["secure"] = True
    return morsel.OutputString().encode("latin-1")


class SessionMiddleware:
    def __init__(self, app: ASGIApp, auth: AuthSettings) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if self.auth.allowed_hosts and host_name(headers.get("host", "")) not in (
            self.auth.allowed_hosts
        ):
            response = PlainTextResponse("this server answers to its loopback name only", 421)
            await response(scope, receive, send)
            return
        if scope["path"].startswith(_NO_SESSION_PREFIXES):
            await self.app(scope, receive, send)
            return
        cookies: SimpleCookie = SimpleCookie()
        try:
            cookies.load(headers.get("cookie", ""))
        except Exception:  # a malformed Cookie header from the client: start afresh
            cookies = SimpleCookie()
        raw = cookies[SESSION_COOKIE].value if SESSION_COOKIE in cookies else None
        session = read_session(raw, self.auth.secret)
        state: dict[str, Any] = scope.setdefault("state", {})
        if session is None:
            session = Session.new(None, self.auth.session_seconds)
            state["set_session"] = session
        state["session"] = session

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                new: Session | None = state.get("set_session")
                if new is not None:
                    message["headers"] = [
                        *message.get("headers", []),
                        (
                            b"set-cookie",
                            # the scheme uvicorn saw, or a trusted proxy's (TrustedProxies)
                            session_cookie_header(
                                new, self.auth, https=scope.get("scheme") == "https"
                            ),
                        ),
                    ]
            await send(message)

        await self.app(scope, receive, send_with_cookie)
