"""Password and token hashes, signed sessions, and the small helpers of the pages."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcoflow.job_request import parse_hosts
from mcoflow.web.auth import (
    Session,
    hash_password,
    hash_token,
    new_api_token,
    read_session,
    safe_next,
    sign_session,
    token_owner,
    verify_password,
)
from mcoflow.web.middleware import host_name
from mcoflow.web.sse import sse_message
from mcoflow.web.views import fmt_duration, summarize_input

SECRET = b"k" * 32


def test_password_hash_is_salted_scrypt_and_verifies() -> None:
    first, second = hash_password("pw"), hash_password("pw")
    assert first.startswith("scrypt$16384$8$1$")
    assert first != second
    assert "pw" not in first
    assert verify_password("pw", first)
    assert not verify_password("PW", first)
    assert not verify_password("pw", None)
    assert not verify_password("pw", "md5$whatever")
    assert not verify_password("pw", "garbage")


def test_api_tokens_are_stored_as_hashes() -> None:
    token, digest = new_api_token()
    assert token not in digest
    assert digest == hash_token(token)
    assert token_owner(token, {digest: "ci"}) == "ci"
    assert token_owner(token + "x", {digest: "ci"}) is None


def test_session_round_trip_and_tampering() -> None:
    session = Session.new("alice", 60)
    cookie = sign_session(session, SECRET)
    assert read_session(cookie, SECRET) == session
    assert read_session(cookie, b"other" * 8) is None
    body, mac = cookie.rsplit(".", 1)
    assert (
        read_session(body.replace(body[3], "A" if body[3] != "A" else "B") + "." + mac, SECRET)
        is None
    )
    expired = Session("alice", "t", time.time() - 1)
    assert read_session(sign_session(expired, SECRET), SECRET) is None


@settings(max_examples=200)
@given(st.text())
def test_any_cookie_text_is_refused_not_crashing(text: str) -> None:
    assert read_session(text, SECRET) is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("/plans?x=1", "/plans?x=1"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example", "/"),
        ("", "/"),
        (None, "/"),
    ],
)
def test_safe_next(url: str | None, expected: str) -> None:
    assert safe_next(url) == expected


@pytest.mark.parametrize(
    ("header", "name"),
    [("127.0.0.1:9292", "127.0.0.1"), ("localhost", "localhost"), ("[::1]:9292", "::1")],
)
def test_host_name(header: str, name: str) -> None:
    assert host_name(header) == name


def test_parse_hosts() -> None:
    assert parse_hosts(" web-01, web-02  web-03,,") == ["web-01", "web-02", "web-03"]
    assert parse_hosts("  ") == []


def test_sse_message_keeps_every_line_in_data() -> None:
    assert sse_message("plan", "a\nb") == "event: plan\ndata: a\ndata: b\n\n"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "—"), (0.25, "250 ms"), (3.21, "3.2 s"), (125, "2 min 05 s"), (7300, "2 h 01 min")],
)
def test_fmt_duration(seconds: float | None, text: str) -> None:
    assert fmt_duration(seconds) == text


def test_summarize_input_leaves_out_references_and_empties() -> None:
    summary = summarize_input({"host": "h", "after": [{"$ref": [2, "changed"]}], "x": []})
    assert summary == "host=h"
    assert len(summarize_input({"k": "v" * 500})) == 60
