"""Random and malformed input never crashes the parsers: only the documented errors."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcoflow.rpc import MessageError, SecurityError, Verifier, build_request, open_request, seal
from mcoflow.rpc.messages import encode_message, parse_reply, parse_request
from tests.rpc_fixtures import Keys

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


def failure_of(call: Callable[[], object]) -> Exception | None:
    try:
        call()
    except Exception as exc:
        return exc
    return None


def assert_refused_cleanly(failure: Exception | None, kind: type[ValueError]) -> None:
    """Either accepted, or refused with the documented error and a reason."""
    if failure is not None:
        assert type(failure) is kind, repr(failure)
        assert failure.reason  # type: ignore[attr-defined]


VALID = json.loads(
    encode_message(
        build_request(
            sender="o", caller="alice", collective="c", agent="a", action="b", reply_to="r"
        )
    )
)


@given(st.binary(max_size=2048))
def test_random_bytes_only_raise_message_error(body: bytes) -> None:
    for parse in (parse_request, parse_reply):
        assert_refused_cleanly(failure_of(lambda: parse(body)), MessageError)  # noqa: B023


@given(st.dictionaries(st.sampled_from(sorted(VALID)), json_values))
def test_mutated_requests_parse_or_raise_message_error(changes: dict[str, object]) -> None:
    body = json.dumps({**VALID, **changes}).encode()
    assert_refused_cleanly(failure_of(lambda: parse_request(body)), MessageError)


@given(json_values)
def test_any_json_document_is_handled(document: object) -> None:
    body = json.dumps(document).encode()
    for parse in (parse_request, parse_reply):
        assert_refused_cleanly(failure_of(lambda: parse(body)), MessageError)  # noqa: B023


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.binary(max_size=512)
    | st.builds(
        lambda d: json.dumps(d).encode(),
        st.dictionaries(st.sampled_from(["v", "signer", "body", "sig"]), json_values),
    )
)
def test_verifier_only_raises_security_error(keys: Keys, envelope: bytes) -> None:
    verifier = keys.trusts_caller
    assert_refused_cleanly(failure_of(lambda: verifier.open(envelope)), SecurityError)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=512))
def test_a_signed_garbage_body_is_a_message_error_not_a_crash(keys: Keys, body: bytes) -> None:
    envelope = keys.caller.sign(body)
    failure = failure_of(lambda: open_request(envelope, keys.trusts_caller))
    assert failure is not None  # random bytes are never a valid request
    assert_refused_cleanly(failure, MessageError)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(min_value=0, max_value=400), st.integers(min_value=0, max_value=255))
def test_any_single_byte_change_to_a_signed_request_is_caught(
    keys: Keys, position: int, value: int
) -> None:
    request = build_request(
        sender="o", caller="alice", collective="c", agent="a", action="b", reply_to="r"
    )
    frame = json.loads(seal(request, keys.caller))
    body = bytearray(base64.b64decode(frame["body"]))
    position %= len(body)
    if body[position] == value:
        return
    body[position] = value
    frame["body"] = base64.b64encode(bytes(body)).decode()
    verifier: Verifier = keys.trusts_caller
    failure = failure_of(lambda: open_request(json.dumps(frame).encode(), verifier))
    assert isinstance(failure, SecurityError)
    assert "bad signature" in failure.reason
