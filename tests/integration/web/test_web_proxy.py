"""Behind an HTTPS proxy: `mcoflow serve`'s web console (uvicorn, login on) behind a
TLS-terminating proxy of the test's own, whose address is in trusted_proxies, and the
same X-Forwarded-* headers sent straight from a peer that is not trusted."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from tls_proxy import make_certificates, rewrite_head, tls_proxy

from mcoflow.actions import Jobs
from mcoflow.orchestrator import build_orchestrator
from mcoflow.settings import Settings, SettingsError, load_settings
from mcoflow.web import hash_password
from mcoflow.web.auth_settings import WebConfigError, web_auth
from mcoflow.web.csrf import same_host
from mcoflow.web.proxy import TrustedProxies
from mcoflow.web.server import WebServer

PASSWORD = "correct horse battery staple"
PROXY_ADDRESS = "127.0.0.2"  # the proxy's side of its link to the server; tests use .1
FORWARDED = {
    "X-Forwarded-Proto": "https",
    "X-Forwarded-For": "203.0.113.9",
    "X-Forwarded-Host": "console.example",
}


@dataclass
class Site:
    proxied: httpx.AsyncClient  # https://127.0.0.1:<proxy>, the CA of the test trusted
    direct: httpx.AsyncClient  # http://127.0.0.1:<server>, not a trusted peer
    public: str  # the site's origin as the browser sees it
    server: str


def _settings(tmp_path: Path, **changes: Any) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'web.db'}",
        keys_dir=tmp_path / "keys",
        state_dir=tmp_path / "state",
        listen="127.0.0.1:0",
        poll_interval=0.05,
        web_users=(f"alice:{hash_password(PASSWORD)}",),
        **changes,
    )


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    settings = _settings(tmp_path, trusted_proxies=(f"{PROXY_ADDRESS}/32",))
    orchestrator = await build_orchestrator(settings, simulate_hosts=2)
    await orchestrator.start()
    await Jobs(orchestrator.world).discover(timeout=0.5)
    web = WebServer(orchestrator, settings, embedded=True, log_level="debug")
    await web.start()
    certificates = make_certificates(tmp_path)
    try:
        async with (
            tls_proxy(certificates, ("127.0.0.1", web.port), source=PROXY_ADDRESS) as port,
            httpx.AsyncClient(
                base_url=f"https://127.0.0.1:{port}", verify=certificates.client_context()
            ) as proxied,
            httpx.AsyncClient(base_url=web.url) as direct,
        ):
            yield Site(proxied, direct, f"https://127.0.0.1:{port}", web.url)
    finally:
        await web.stop()
        await orchestrator.stop()


async def _csrf(client: httpx.AsyncClient, path: str, **headers: str) -> tuple[str, str]:
    """The form token of a page, and the session cookie that came with it."""
    page = await client.get(path, headers=headers)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, f"no CSRF token on {path} ({page.status_code})"
    return match[1], page.headers.get("set-cookie", "")


async def _login(client: httpx.AsyncClient, origin: str, **headers: str) -> httpx.Response:
    token, _ = await _csrf(client, "/login", **headers)
    form = {"csrf_token": token, "username": "alice", "password": PASSWORD, "next": "/"}
    return await client.post("/login", data=form, headers={"Origin": origin, **headers})


async def test_login_and_forms_over_https_through_a_trusted_proxy(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    client = site.proxied
    first = await client.get("/")  # not logged in: to the login page, with a session
    assert "; Secure" in first.headers["set-cookie"] and "HttpOnly" in first.headers["set-cookie"]
    assert first.headers["location"] == "/login?next=/"  # relative: the browser keeps https
    to_login = await client.get("/", follow_redirects=True)
    assert str(to_login.url) == f"{site.public}/login?next=/"

    logged_in = await _login(client, origin=site.public)
    assert logged_in.status_code == 303, logged_in.text
    assert logged_in.headers["location"] == "/"
    cookie = logged_in.headers["set-cookie"]
    assert cookie.startswith("mcoflow_session=") and "; Secure" in cookie
    # an absolute redirect (Starlette's for a trailing slash) names the public origin
    slash = await client.get("/hosts/")
    assert slash.status_code == 307
    assert slash.headers["location"] == f"{site.public}/hosts"

    # a form POST with the token (and the browser's https Origin) works: POST-redirect-GET
    token, _ = await _csrf(client, "/")
    form = {"csrf_token": token, "kind": "install", "hosts": "sim-00001", "parameter": "vim"}
    started = await client.post("/", data=form, headers={"Origin": site.public})
    assert started.status_code == 303, started.text
    assert re.fullmatch(r"/plans/[\w-]+", started.headers["location"])
    plan = await client.get(started.headers["location"])
    assert plan.status_code == 200 and str(plan.url).startswith("https://")

    # without the token, or from another site, it is refused
    no_token = {k: v for k, v in form.items() if k != "csrf_token"}
    assert (await client.post("/", data=no_token)).status_code == 403
    elsewhere = await client.post("/", data=form, headers={"Origin": "https://evil.example"})
    assert elsewhere.status_code == 403
    # the server logged the browser's address (X-Forwarded-For), not the proxy's
    access = [r.getMessage() for r in caplog.records if r.name == "uvicorn.access"]
    assert access and all(PROXY_ADDRESS not in line for line in access)


async def test_forwarded_headers_from_an_untrusted_peer_change_nothing(site: Site) -> None:
    client = site.direct
    _, cookie = await _csrf(client, "/login", **FORWARDED)
    assert cookie and "Secure" not in cookie
    slash = await client.get("/hosts/", headers=FORWARDED)
    assert slash.headers["location"] == f"{site.server}/hosts"  # its own scheme and Host
    # the Origin of the claimed host does not match the Host the server sees
    spoofed = await _login(client, origin="https://console.example", **FORWARDED)
    assert spoofed.status_code == 403
    plain = await _login(client, origin=site.server, **FORWARDED)
    assert plain.status_code == 303
    assert "Secure" not in plain.headers["set-cookie"]


async def test_a_client_cannot_add_to_what_the_proxy_forwards(site: Site) -> None:
    """What a browser sends in X-Forwarded-* is replaced by the proxy, as nginx's
    proxy_set_header does; the server then believes the proxy's values only."""
    slash = await site.proxied.get("/hosts/", headers=FORWARDED)
    assert slash.headers["location"] == f"{site.public}/hosts"


# ---- the pieces, without a server ----------------------------------------------------


async def _seen(trusted: tuple[str, ...], peer: str, headers: dict[str, str]) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.update(scope)

    scope = {
        "type": "http",
        "scheme": "http",
        "client": (peer, 40000),
        "headers": [(b"host", b"10.0.0.1:9292")]
        + [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    await TrustedProxies(app, trusted)(scope, None, None)  # type: ignore[arg-type]
    return {**seen, "host": dict(seen["headers"])[b"host"].decode()}


@pytest.mark.parametrize(
    ("trusted", "peer", "headers", "scheme", "client", "host"),
    [
        ((), "127.0.0.1", FORWARDED, "http", "127.0.0.1", "10.0.0.1:9292"),
        (("10.0.0.0/8",), "192.0.2.1", FORWARDED, "http", "192.0.2.1", "10.0.0.1:9292"),
        (("10.0.0.0/8",), "10.1.2.3", FORWARDED, "https", "203.0.113.9", "console.example"),
        (("10.0.0.5",), "::ffff:10.0.0.5", FORWARDED, "https", "203.0.113.9", "console.example"),
        (("::1",), "::1", {"X-Forwarded-Proto": "ftp"}, "http", "::1", "10.0.0.1:9292"),
        # the chain's right end is the nearest proxy; a client may have made up the left
        (
            ("10.0.0.0/8",),
            "10.0.0.7",
            {"X-Forwarded-For": "198.51.100.1, 203.0.113.9, 10.0.0.6"},
            "http",
            "203.0.113.9",
            "10.0.0.1:9292",
        ),
        (
            ("10.0.0.0/8",),
            "10.0.0.7",
            {"X-Forwarded-Proto": "http, https", "X-Forwarded-Host": "a.example, b.example:8443"},
            "https",
            "10.0.0.7",
            "b.example:8443",
        ),
        (("10.0.0.7",), "10.0.0.7", {"X-Forwarded-Host": "evil/path"}, "http", "10.0.0.7", None),
    ],
)
async def test_trusted_proxies_middleware(
    trusted: tuple[str, ...],
    peer: str,
    headers: dict[str, str],
    scheme: str,
    client: str,
    host: str | None,
) -> None:
    seen = await _seen(trusted, peer, headers)
    assert seen["scheme"] == scheme
    assert seen["client"][0] == client
    assert seen["host"] == (host or "10.0.0.1:9292")


@pytest.mark.parametrize(
    ("origin", "host", "same"),
    [
        ("https://console.example", "console.example", True),
        ("https://console.example", "console.example:443", True),
        ("http://console.example", "console.example", True),  # the scheme is not compared
        ("https://Console.Example:8443", "console.example:8443", True),
        ("https://console.example", "console.example:8443", False),
        ("https://evil.example", "console.example", False),
        ("https://console.example:x", "console.example", False),
        ("https://console.example", "", False),
    ],
)
def test_same_host(origin: str, host: str, same: bool) -> None:
    assert same_host(origin, host) is same


def test_trusted_proxies_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCOFLOW_CONFIG", str(tmp_path / "none.yaml"))
    (tmp_path / "none.yaml").write_text("{}\n")
    assert load_settings().trusted_proxies == ()
    monkeypatch.setenv("MCOFLOW_TRUSTED_PROXIES", '["10.0.0.5", "10.1.0.0/16", "::1"]')
    assert load_settings().trusted_proxies == ("10.0.0.5", "10.1.0.0/16", "::1")
    monkeypatch.setenv("MCOFLOW_TRUSTED_PROXIES", '["proxy.example"]')
    with pytest.raises(SettingsError, match=r"'proxy\.example' is not an IP address or network"):
        load_settings()


def test_a_trusted_proxy_means_a_login_even_on_loopback(tmp_path: Path) -> None:
    settings = _settings(tmp_path).model_copy(update={"web_users": ()})
    assert not web_auth(settings, embedded=True).enabled
    proxied = settings.model_copy(update={"trusted_proxies": ("127.0.0.1",)})
    with pytest.raises(WebConfigError, match=r"trusted_proxies is set \(127.0.0.1\)"):
        web_auth(proxied, embedded=True)


def test_the_proxy_replaces_what_the_client_forwarded() -> None:
    head = b"GET / HTTP/1.1\r\nHost: a:1\r\nX-Forwarded-Host: evil\r\nAccept: */*\r\n\r\n"
    rewritten = rewrite_head(head, "127.0.0.1:2", "127.0.0.1").split(b"\r\n")
    assert b"X-Forwarded-Host: a:1" in rewritten and b"Host: 127.0.0.1:2" in rewritten
    assert b"X-Forwarded-Host: evil" not in rewritten and b"Accept: */*" in rewritten
