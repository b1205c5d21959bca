from __future__ import annotations

import json
from typing import Any

import pytest

from mcoflow.rpc import Filter, MessageError, Request, StatusCode, build_reply, build_request
from mcoflow.rpc.messages import MAX_MESSAGE_BYTES, encode_message, parse_reply, parse_request


def a_request(**changes: Any) -> Request:
    """``build_request`` with the arguments a test does not care about filled in."""
    arguments: dict[str, Any] = {
        "sender": "orchestrator",
        "caller": "alice",
        "collective": "mcollective",
        "agent": "package",
        "action": "install",
        "data": {"package": "curl"},
        "reply_to": "replies",
    }
    return build_request(**(arguments | changes))


def make_request(**overrides: object) -> dict[str, object]:
    request = a_request(ttl=30, now=1000.0)
    fields = json.loads(encode_message(request))
    fields.update(overrides)
    return fields


def test_request_round_trips_through_json() -> None:
    request = a_request(
        data={"package": "curl", "version": None},
        filter=Filter.parse_cli(["os_family=debian", "identity:/^web/"]),
    )
    parsed = parse_request(encode_message(request))
    assert parsed == request
    assert parsed.filter.identity == ("/^web/",)
    assert parsed.version == 1


def test_reply_round_trips_and_keeps_status_code_enum() -> None:
    request = a_request(action="status", data=None)
    reply = build_reply(
        request, sender="web1", statuscode=StatusCode.ABORTED, statusmsg="failed", data={"x": 1}
    )
    parsed = parse_reply(encode_message(reply))
    assert parsed.statuscode is StatusCode.ABORTED
    assert parsed.request_id == request.id
    assert (parsed.agent, parsed.action) == ("package", "status")


def test_status_codes_match_the_design() -> None:
    assert [(c.name, c.value) for c in StatusCode] == [
        ("OK", 0),
        ("ABORTED", 1),
        ("UNKNOWN_ACTION", 2),
        ("MISSING_DATA", 3),
        ("INVALID_DATA", 4),
        ("UNKNOWN_ERROR", 5),
    ]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"agent": "x" * 65}, "agent"),
        ({"agent": "bad name"}, "agent"),
        ({"collective": "a*b"}, "collective"),
        ({"reply_to": "x" * 256}, "reply_to"),
        ({"sender": ""}, "sender"),
        ({"ttl": 0}, "ttl"),
        ({"ttl": -5}, "ttl"),
        ({"time": -1}, "time"),
        ({"version": 2}, "version"),
        ({"data": [1, 2]}, "data"),
        ({"surprise": 1}, "surprise"),
        ({"filter": {"identity": ["/[unclosed/"]}}, "invalid regular expression"),
        ({"filter": {"facts": [{"fact": "a", "operator": "~~", "value": "1"}]}}, "operator"),
    ],
)
def test_invalid_fields_are_rejected_with_the_field_named(
    overrides: dict[str, object], reason: str
) -> None:
    body = json.dumps(make_request(**overrides)).encode()
    with pytest.raises(MessageError) as caught:
        parse_request(body)
    assert reason in caught.value.reason


def test_missing_field_is_named() -> None:
    fields = make_request()
    del fields["action"]
    with pytest.raises(MessageError, match="action: Field required"):
        parse_request(json.dumps(fields).encode())


@pytest.mark.parametrize(
    "body", [b"", b"{", b"[]", b"null", b"\xff\xfe", b"[" * 100_000, b'{"version": 1}']
)
def test_malformed_bodies_raise_message_error(body: bytes) -> None:
    with pytest.raises(MessageError, match="invalid request"):
        parse_request(body)
    with pytest.raises(MessageError, match="invalid reply"):
        parse_reply(body)


def test_oversized_message_is_refused_before_parsing() -> None:
    body = b" " * (MAX_MESSAGE_BYTES + 1)
    with pytest.raises(MessageError, match="exceeds"):
        parse_request(body)


def test_encoding_refuses_an_oversized_message() -> None:
    request = a_request(data={"blob": "x" * MAX_MESSAGE_BYTES})
    with pytest.raises(MessageError, match="exceeds"):
        encode_message(request)


def test_build_request_reports_bad_names() -> None:
    with pytest.raises(MessageError, match="agent"):
        a_request(agent="no-dash")
    with pytest.raises(MessageError, match="ttl"):
        a_request(ttl=float("inf"))


def test_messages_are_frozen() -> None:
    request = a_request()
    with pytest.raises(ValueError, match="frozen"):
        request.agent = "other"  # type: ignore[misc]
