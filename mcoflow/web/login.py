"""The login page and logout: a new session (and CSRF token) on each change of user."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from mcoflow.web.auth import AuthSettings, Session, safe_next, verify_password
from mcoflow.web.csrf import require_csrf
from mcoflow.web.strict import known_form_only
from mcoflow.web.templating import render

router = APIRouter(include_in_schema=False)


@router.get("/login")
async def login_page(request: Request, next: str = "/") -> Response:
    return render(request, "login.html", {"next": safe_next(next), "error": "", "username": ""})


@router.post("/login", dependencies=[Depends(require_csrf), Depends(known_form_only)])
async def login(
    request: Request,
    username: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=1000)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    auth: AuthSettings = request.app.state.auth
    if not verify_password(password, auth.users.get(username)):
        context = {"next": safe_next(next), "error": "wrong user name or password"}
        return render(request, "login.html", context | {"username": username}, status_code=401)
    session = Session.new(username, auth.session_seconds)
    request.state.session = request.state.set_session = session
    return RedirectResponse(safe_next(next), status_code=303)


@router.post("/logout", dependencies=[Depends(require_csrf), Depends(known_form_only)])
async def logout(request: Request) -> Response:
    auth: AuthSettings = request.app.state.auth
    request.state.session = request.state.set_session = Session.new(None, auth.session_seconds)
    return RedirectResponse("/login", status_code=303)
