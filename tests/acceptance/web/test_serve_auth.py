"""`mcoflow serve` protects its console outside the embedded default on loopback: it
refuses to start without a user or token, and then wants them."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from serve_process import free_port, mcoflow_serve, run_mcoflow, serve_env

PASSWORD = "a long enough password"


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (["--listen", "0.0.0.0:{port}"], "not only on loopback"),
        (
            ["--listen", "127.0.0.1:{port}", "--transport", "amqp://guest:guest@127.0.0.1:1/"],
            "the broker is amqp://",
        ),
    ],
    ids=["all-interfaces", "external-broker"],
)
def test_serve_refuses_to_start_without_users_or_tokens(
    tmp_path: Path, args: list[str], why: str
) -> None:
    port = free_port()
    result = run_mcoflow(
        ["serve", *(a.format(port=port) for a in args)],
        tmp_path,
        serve_env(tmp_path, {}),
    )
    assert result.returncode == 2, result.stdout + result.stderr
    message = " ".join(result.stdout.split())
    assert "the web console needs a login here" in message
    assert why in message
    assert "mcoflow web hash-password NAME" in message
    assert "mcoflow web new-token" in message
    assert not (tmp_path / "mcoflow.db").exists()  # refused before creating anything


def _request(
    url: str, token: str | None = None, body: dict[str, object] | None = None
) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode()


@dataclass
class Secured:
    url: str
    token: str


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    """A server on loopback with the in-process broker, but a user and a token made by
    `mcoflow web` configured: configured credentials are always asked for."""
    directory = tmp_path_factory.mktemp("secured")
    env = serve_env(directory, {})
    made = run_mcoflow(["web", "new-token", "--name", "ci"], directory, env)
    token = re.search(r"^token: (\S+)$", made.stdout, re.M)
    token_line = re.search(r"^web_api_tokens line: (\S+)$", made.stdout, re.M)
    assert token and token_line, made.stdout + made.stderr
    hashed = run_mcoflow(
        ["web", "hash-password", "alice"], directory, env, stdin=f"{PASSWORD}\n{PASSWORD}\n"
    )
    user_line = hashed.stdout.strip()
    assert user_line.startswith("alice:scrypt$"), hashed.stdout + hashed.stderr
    assert PASSWORD not in hashed.stdout + hashed.stderr
    env = serve_env(
        directory,
        {"web_users": [user_line], "web_api_tokens": [token_line[1]]},
    )
    args = ["--no-local-agent", "--simulate-hosts", "1", "--log-level", "warning"]
    with mcoflow_serve(directory, args, env) as served:
        yield Secured(served.url, token[1])


def test_the_api_wants_the_token(secured: Secured) -> None:
    plans = f"{secured.url}/api/v1/plans"
    assert _request(plans)[0] == 401
    assert _request(plans, "not-the-token")[0] == 401
    status, body = _request(plans, secured.token)
    assert status == 200, body
    assert json.loads(body)["total"] >= 1  # the discovery at start

    job = {"kind": "install", "hosts": ["sim-00001"], "parameter": "vim"}
    assert _request(f"{secured.url}/api/v1/jobs", body=job)[0] == 401
    status, body = _request(f"{secured.url}/api/v1/jobs", secured.token, job)
    assert status == 201, body
    plan_id = json.loads(body)["id"]
    status, body = _request(f"{secured.url}/api/v1/plans/{plan_id}", secured.token)
    assert status == 200
    assert {h["by"] for h in json.loads(body)["history"]} >= {"api:ci"}


def test_the_pages_want_a_login(page: Page, secured: Secured) -> None:
    page.goto(f"{secured.url}/plans")
    expect(page).to_have_url(re.compile(r"/login\?next=/plans$"))
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "wrong password")
    page.click("button:has-text('Log in')")
    expect(page.get_by_role("alert")).to_have_text("wrong user name or password")
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Log in')")
    expect(page).to_have_url(f"{secured.url}/plans")
    expect(page.locator("h1")).to_have_text("Plans")
