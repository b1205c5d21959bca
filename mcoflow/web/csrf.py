"""CSRF protection: a per-session token in every form, and no cross-site POSTs.

The session cookie is SameSite=Strict already; the token and the Origin check make
forged requests fail even in browsers or set-ups where SameSite does not apply.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from fastapi import HTTPException, Request

from mcoflow.web.auth import Session

CSRF_FIELD = "csrf_token"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def same_host(origin: str, host: str) -> bool:
    """Whether an Origin names the site of this Host header (after a trusted proxy's
    X-Forwarded-Host), a default port written or not. The scheme is not compared: behind
    a TLS proxy not in trusted_proxies the app sees http for an https page, and a page of
    the plain-http site cannot read the form token of the https one anyway."""
    try:
        sent, here = urlsplit(origin), urlsplit(f"//{host}")
        default = _DEFAULT_PORTS.get(sent.scheme)
        return (
            sent.hostname is not None
            and sent.hostname == here.hostname
            and (sent.port or default) == (here.port or default)
        )
    except ValueError:  # a port that is not a number
        return False


def check_origin(request: Request) -> None:
    """Refuse a state-changing request that a browser sent from another site."""
    origin = request.headers.get("origin")
    if origin is None:
        return  # not from a browser's cross-origin request (CLI, curl, same-origin GET form)
    if origin == "null" or not same_host(origin, request.headers.get("host", "")):
        raise HTTPException(403, "cross-site request refused")


async def require_csrf(request: Request) -> None:
    """A FastAPI dependency for every page form POST."""
    check_origin(request)
    session: Session | None = getattr(request.state, "session", None)
    form = await request.form()
    sent = form.get(CSRF_FIELD)
    if (
        session is None
        or not isinstance(sent, str)
        or not hmac.compare_digest(sent.encode(), session.csrf.encode())
    ):
        raise HTTPException(
            403, "the form's security token is missing or expired: reload the page and retry"
        )
