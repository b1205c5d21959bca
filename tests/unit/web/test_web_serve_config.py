"""What `mcoflow serve` checks before it starts (the console's authentication, its
address, the simulated hosts), and the `mcoflow web` commands."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mcoflow.cli import app
from mcoflow.settings import Settings, SettingsError, load_settings
from mcoflow.web.auth import hash_password, hash_token, token_owner, verify_password
from mcoflow.web.auth_settings import (
    WebConfigError,
    parse_listen,
    persisted_secret,
    web_auth,
)

USER = "alice:" + hash_password("correct horse")
TOKEN_LINE = "ci:" + hash_token("t0ken")


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(state_dir=tmp_path / "state", **values)  # type: ignore[arg-type]


@pytest.mark.parametrize("listen", ["127.0.0.1:9292", "localhost:1", "[::1]:9292", "127.0.0.5:80"])
def test_embedded_default_on_loopback_has_no_login(tmp_path: Path, listen: str) -> None:
    auth = web_auth(_settings(tmp_path, listen=listen), embedded=True)
    assert not auth.enabled
    assert "127.0.0.1" in auth.allowed_hosts  # DNS rebinding: only loopback Host names
    assert not (tmp_path / "state").exists()  # no secret needed, none written


@pytest.mark.parametrize(
    ("listen", "embedded", "why"),
    [
        ("0.0.0.0:9292", True, "it listens on 0.0.0.0:9292, not only on loopback"),
        ("192.0.2.7:9292", True, "not only on loopback"),
        ("console.example:9292", True, "not only on loopback"),
        ("127.0.0.1:9292", False, "the broker is amqp://, not the in-process one"),
    ],
)
def test_elsewhere_it_refuses_without_users_or_tokens(
    tmp_path: Path, listen: str, embedded: bool, why: str
) -> None:
    settings = _settings(tmp_path, listen=listen, transport_url="amqp://broker/")
    with pytest.raises(WebConfigError) as info:
        web_auth(settings, embedded=embedded)
    message = str(info.value)
    assert why in message
    assert "mcoflow web hash-password NAME" in message
    assert "web_users" in message
    assert "mcoflow web new-token" in message


def test_configured_users_and_tokens_turn_login_on(tmp_path: Path) -> None:
    settings = _settings(tmp_path, listen="0.0.0.0:9292", web_users=(USER,))
    auth = web_auth(settings, embedded=False)
    assert auth.enabled
    assert verify_password("correct horse", auth.users["alice"])
    assert auth.api_tokens == {}
    # configuring credentials asks for them even on loopback in the embedded default
    on_loopback = web_auth(_settings(tmp_path, web_api_tokens=(TOKEN_LINE,)), embedded=True)
    assert on_loopback.enabled
    assert token_owner("t0ken", on_loopback.api_tokens) == "ci"
    assert on_loopback.users == {}


def test_session_secret_is_generated_once_private_and_kept(tmp_path: Path) -> None:
    settings = _settings(tmp_path, web_users=(USER,))
    first = web_auth(settings, embedded=False).secret
    path = tmp_path / "state" / "web-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 32
    assert web_auth(settings, embedded=False).secret == first  # logins survive a restart
    assert list(path.parent.iterdir()) == [path]  # no temporary file left


def test_a_secret_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "web-secret"
    path.write_text("x" * 64)
    path.chmod(0o644)
    with pytest.raises(WebConfigError, match="chmod 600"):
        persisted_secret(path)
    path.chmod(0o600)
    assert persisted_secret(path) == b"x" * 64


def test_a_configured_secret_is_used_and_must_be_long(tmp_path: Path) -> None:
    long = "s" * 40
    settings = _settings(tmp_path, web_users=(USER,), web_secret=long)
    assert web_auth(settings, embedded=False).secret == long.encode()
    assert not (tmp_path / "state").exists()
    with pytest.raises(WebConfigError, match="at least 32"):
        web_auth(_settings(tmp_path, web_users=(USER,), web_secret="short"), embedded=False)


@pytest.mark.parametrize(
    ("field", "entry"),
    [
        ("web_users", "alice:hunter2"),  # a plain password
        ("web_users", "alice"),
        ("web_users", ":" + hash_password("x")),
        ("web_api_tokens", "t0ken"),
        ("web_api_tokens", "ci:" + hash_password("x")),
    ],
)
def test_entries_that_are_not_name_and_hash_are_refused(field: str, entry: str) -> None:
    with pytest.raises(SettingsError, match="expected 'NAME:") as info:
        load_settings(**{field: [entry]})
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize("text", ["9292", "host:", ":9292", "h:99999", "h:x"])
def test_listen_must_be_host_and_port(text: str) -> None:
    with pytest.raises(WebConfigError, match="HOST:PORT"):
        parse_listen(text)


def test_listen_url_brackets_ipv6() -> None:
    assert parse_listen("[::1]:0").url(4242) == "http://[::1]:4242"
    assert parse_listen("127.0.0.1:9292").url() == "http://127.0.0.1:9292"


def test_hash_password_prompts_twice_and_prints_the_web_users_line() -> None:
    result = CliRunner().invoke(app, ["web", "hash-password", "bob"], input="s3cret-pw\n" * 2)
    assert result.exit_code == 0, result.output
    line = result.stdout.strip().splitlines()[-1]
    name, _, digest = line.partition(":")
    assert name == "bob"
    assert verify_password("s3cret-pw", digest)
    assert "s3cret-pw" not in result.stdout
    assert load_settings(web_users=[line]).web_users == (line,)


def test_hash_password_refuses_a_mismatch_and_a_short_password() -> None:
    mismatch = CliRunner().invoke(app, ["web", "hash-password", "bob"], input="s3cret-pw\nother\n")
    assert mismatch.exit_code != 0
    assert "scrypt$" not in mismatch.stdout
    short = CliRunner().invoke(app, ["web", "hash-password", "bob"], input="abc\nabc\n")
    assert short.exit_code == 2
    assert "at least 8" in short.output
    bad_name = CliRunner().invoke(app, ["web", "hash-password", "bob:x"], input="")
    assert bad_name.exit_code == 2


def test_new_token_prints_the_token_once_and_the_line_to_configure() -> None:
    result = CliRunner().invoke(app, ["web", "new-token", "--name", "ci"])
    assert result.exit_code == 0, result.output
    token = re.search(r"^token: (\S+)$", result.stdout, re.M)
    line = re.search(r"^web_api_tokens line: (\S+)$", result.stdout, re.M)
    assert token and line
    assert token[1] not in line[1]
    settings = load_settings(web_api_tokens=[line[1]])
    tokens = dict(reversed(e.split(":", 1)) for e in settings.web_api_tokens)
    assert token_owner(token[1], tokens) == "ci"
    again = CliRunner().invoke(app, ["web", "new-token", "--name", "ci"])
    assert token[1] not in again.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--simulate-broken-package", "Bad@"], "simulation: broken_packages"),
        (["--listen", "9292"], "listen: expected HOST:PORT"),
        (["--listen", "0.0.0.0:9292"], "needs a login here"),
    ],
)
def test_serve_refuses_bad_settings_before_creating_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["serve", *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert list(tmp_path.iterdir()) == []
