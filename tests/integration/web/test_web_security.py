"""Authentication, CSRF, and escaping of what hosts and operators typed."""

from __future__ import annotations

import re

import httpx
import pytest
from web_client import PASSWORD, TOKEN, Web

from mcoflow.web.auth import SESSION_COOKIE

XSS = "<script>alert(1)</script>"


async def _login(web: Web, password: str = PASSWORD, next_url: str = "/plans") -> httpx.Response:
    token = await web.csrf(f"/login?next={next_url}")
    return await web.client.post(
        "/login",
        data={"csrf_token": token, "username": "alice", "password": password, "next": next_url},
    )


@pytest.mark.parametrize(
    "path", ["/", "/plans", "/plans/x", "/executors", "/hosts", "/plans/x/events"]
)
async def test_pages_redirect_to_login_when_auth_is_on(secure_web: Web, path: str) -> None:
    r = await secure_web.client.get(path)
    assert r.status_code == 303
    assert r.headers["location"].startswith("/login?next=")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/plans"),
        ("GET", "/api/v1/plans/x"),
        ("GET", "/api/v1/executors"),
        ("GET", "/api/v1/hosts"),
        ("POST", "/api/v1/plans/x/resume"),
        ("POST", "/api/v1/plans/x/cancel"),
    ],
)
async def test_api_refuses_without_a_valid_token(secure_web: Web, method: str, path: str) -> None:
    r = await secure_web.client.request(method, path)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in r.json()["detail"]
    wrong = await secure_web.client.request(
        method, path, headers={"Authorization": "Bearer not-the-token"}
    )
    assert wrong.status_code == 401


async def test_api_with_a_token(secure_web: Web) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    r = await secure_web.client.post(
        "/api/v1/jobs",
        json={"kind": "install", "hosts": ["web-01"], "parameter": "vim"},
        headers=headers,
    )
    assert r.status_code == 201
    assert secure_web.jobs.triggered[-1]["by"] == "api:ci"
    assert (await secure_web.client.get("/api/v1/plans", headers=headers)).status_code == 200


async def test_login_then_pages_then_logout(secure_web: Web) -> None:
    wrong = await _login(secure_web, password="guess")
    assert wrong.status_code == 401
    assert "wrong user name or password" in wrong.text
    ok = await _login(secure_web)
    assert ok.status_code == 303
    assert ok.headers["location"] == "/plans"
    cookie = ok.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Secure" not in cookie  # plain HTTP: a Secure cookie would never come back
    page = await secure_web.client.get("/plans")
    assert page.status_code == 200
    assert "<span>alice</span>" in page.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    out = await secure_web.client.post("/logout", data={"csrf_token": token[1]})
    assert out.status_code == 303
    assert (await secure_web.client.get("/plans")).status_code == 303


async def test_login_does_not_redirect_off_site(secure_web: Web) -> None:
    r = await _login(secure_web, next_url="//evil.example/")
    assert r.headers["location"] == "/"


async def test_a_tampered_session_cookie_is_ignored(secure_web: Web) -> None:
    await _login(secure_web)
    value = secure_web.client.cookies[SESSION_COOKIE]
    body, mac = value.rsplit(".", 1)
    secure_web.client.cookies.clear()
    secure_web.client.cookies.set(SESSION_COOKIE, body[:-2] + "xx." + mac)
    assert (await secure_web.client.get("/plans")).status_code == 303


@pytest.mark.parametrize(
    "path", ["/", "/plans/x/resume", "/plans/x/cancel", "/plans/x/steps/1/skip", "/login"]
)
async def test_form_posts_without_the_csrf_token_are_refused(web: Web, path: str) -> None:
    await web.csrf()  # has a session, but does not send its token
    r = await web.client.post(path, data={"kind": "install", "hosts": "web-01", "confirmed": "yes"})
    assert r.status_code == 403
    assert "security token" in r.text
    forged = await web.client.post(path, data={"csrf_token": "forged", "confirmed": "yes"})
    assert forged.status_code == 403
    assert web.jobs.triggered == []


async def test_cross_site_posts_are_refused(web: Web) -> None:
    token = await web.csrf()
    r = await web.client.post(
        "/",
        data={"csrf_token": token, "kind": "install", "hosts": "web-01", "parameter": "x"},
        headers={"Origin": "http://evil.example"},
    )
    assert r.status_code == 403
    api = await web.client.post("/api/v1/plans/x/cancel", headers={"Origin": "http://evil.example"})
    assert api.status_code == 403


async def test_loopback_server_answers_only_to_loopback_names(web: Web) -> None:
    r = await web.client.get("/plans", headers={"Host": "attacker.example"})
    assert r.status_code == 421


async def test_pages_send_security_headers(web: Web) -> None:
    r = await web.client.get("/")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"


async def test_host_data_and_input_are_shown_as_text(web: Web) -> None:
    plan = await web.jobs.trigger(
        "install",
        hosts=["web-02"],
        parameter=f"{XSS},html-output",
        by="t",
    )
    await web.world.wait(plan.id)
    page = (await web.client.get(f"/plans/{plan.id}")).text
    assert XSS not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page
    assert "&lt;b&gt;bold&lt;/b&gt;&lt;img src=x onerror=alert(2)&gt;" in page
    listing = (await web.client.get("/plans")).text
    assert XSS not in listing
    assert "&lt;script&gt;" in listing


async def test_trigger_form_echo_is_escaped(web: Web) -> None:
    token = await web.csrf()
    r = await web.client.post(
        "/",
        data={"csrf_token": token, "kind": "install", "hosts": f'"><b>{XSS}', "parameter": XSS},
    )
    assert r.status_code == 422
    assert XSS not in r.text
    assert "&#34;&gt;&lt;b&gt;&lt;script&gt;" in r.text


async def test_the_session_cookie_is_secure_over_https(secure_web: Web) -> None:
    async with httpx.AsyncClient(
        transport=secure_web.transport, base_url="https://127.0.0.1"
    ) as client:
        page = await client.get("/login?next=/plans")
        assert page.status_code == 200
        cookie = page.headers["set-cookie"]
        assert cookie.startswith(f"{SESSION_COOKIE}=")
        assert "; Secure" in cookie and "HttpOnly" in cookie
