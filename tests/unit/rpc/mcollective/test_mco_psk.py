"""The psk scheme against bytes from a real MCollective client and node."""

from __future__ import annotations

import contextlib
import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcoflow.rpc.mcollective.filters import empty_filter
from mcoflow.rpc.mcollective.marshal import Symbol, dumps, loads
from mcoflow.rpc.mcollective.psk import (
    PskRejected,
    RejectReason,
    decode_reply,
    decode_request,
    digest,
    encode_reply,
    encode_request,
    new_request_id,
    rpc_body,
)
from tests.unit.rpc.mcollective.mco_fixtures import (
    PSK,
    REPLY_DDL_ERROR,
    REPLY_ECHO,
    REPLY_GET_FACT,
    REPLY_PONG,
    REQUEST_ECHO,
    REQUEST_GET_FACT,
    REQUEST_PING,
)

S = Symbol
PING_TIME = 1796490074
PONG_TIME = 1796490202


def rejected(reason: RejectReason) -> pytest.RaisesExc[PskRejected]:
    return pytest.raises(PskRejected, check=lambda exc: exc.reason is reason)


def test_reads_a_real_discovery_request() -> None:
    request = decode_request(REQUEST_PING, psk=PSK, now=PING_TIME + 60)
    assert request.requestid == "88952227aace5454be1f0b8b858939ee"
    assert (request.senderid, request.agent, request.collective) == (
        "mcoclient",
        "discovery",
        "mcollective",
    )
    assert (request.callerid, request.ttl, request.msgtime) == ("uid=0", 60, PING_TIME)
    assert request.body == "ping"
    assert request.filter == empty_filter()


def test_reads_a_real_rpc_request() -> None:
    request = decode_request(REQUEST_GET_FACT, psk=PSK, now=PING_TIME + 4)
    assert request.body == rpc_body("rpcutil", "get_fact", {"fact": "osfamily"}, "uid=0")
    echo = decode_request(REQUEST_ECHO, psk=PSK, now=PING_TIME + 4)
    assert echo.body == rpc_body("echo", "run", {"msg": "héllo"}, "uid=0")


def test_real_request_is_refused_with_the_wrong_psk_or_when_old() -> None:
    with rejected(RejectReason.BAD_DIGEST):
        decode_request(REQUEST_PING, psk="other", now=PING_TIME)
    # MCollective's rule: refused once older than ttl, accepted at exactly ttl
    decode_request(REQUEST_PING, psk=PSK, now=PING_TIME + 60)
    with rejected(RejectReason.EXPIRED):
        decode_request(REQUEST_PING, psk=PSK, now=PING_TIME + 61)


@pytest.mark.parametrize(
    ("data", "senderagent", "body"),
    [
        (REPLY_PONG, "discovery", "pong"),
        (
            REPLY_GET_FACT,
            "rpcutil",
            {
                S("statuscode"): 0,
                S("statusmsg"): "OK",
                S("data"): {S("fact"): "role", S("value"): "testnode"},
            },
        ),
        (
            REPLY_ECHO,
            "echo",
            {
                S("statuscode"): 0,
                S("statusmsg"): "OK",
                S("data"): {S("msg"): "héllo ☃ wörld", S("identity"): "node1", S("length"): 13},
            },
        ),
        (
            REPLY_DDL_ERROR,
            "echo",
            {
                S("statuscode"): 4,
                S("statusmsg"): "Action run needs a msg argument",
                S("data"): {S("msg"): None, S("identity"): None, S("length"): None},
            },
        ),
    ],
)
def test_reads_real_replies(data: bytes, senderagent: str, body: object) -> None:
    msgtime = loads(data)[S("msgtime")]  # type: ignore[index,call-overload]
    reply = decode_reply(data, psk=PSK, ttl=60, now=msgtime)
    assert (reply.senderid, reply.senderagent, reply.msgtime) == ("node1", senderagent, msgtime)
    assert len(reply.requestid) == 32
    assert reply.body == body


def test_real_reply_with_the_wrong_psk_tampered_or_late_is_refused() -> None:
    with rejected(RejectReason.BAD_DIGEST):
        decode_reply(REPLY_PONG, psk="wrong", ttl=60, now=PONG_TIME)
    tampered = REPLY_PONG.replace(b"pong", b"pang")
    assert tampered != REPLY_PONG
    with rejected(RejectReason.BAD_DIGEST):
        decode_reply(tampered, psk=PSK, ttl=60, now=PONG_TIME)
    with rejected(RejectReason.EXPIRED):
        decode_reply(REPLY_PONG, psk=PSK, ttl=60, now=PONG_TIME + 61)
    with rejected(RejectReason.EXPIRED):
        decode_reply(REPLY_PONG, psk=PSK, ttl=5, now=PONG_TIME + 6)


def test_digest_is_md5_of_body_and_psk() -> None:
    outer = loads(REPLY_PONG)
    assert isinstance(outer, dict)
    body = outer[S("body")]
    assert isinstance(body, bytes)
    assert digest(body, PSK) == hashlib.md5(body + b"testsecret").hexdigest()
    assert digest(body, PSK) == outer[S("hash")]


def test_psk_must_be_ascii() -> None:
    with pytest.raises(ValueError, match="must be ASCII"):
        digest(b"\x04\x08", "clé")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not marshal",
        dumps([1, 2]),
        dumps({S("body"): "text, not binary", S("hash"): "x"}),
        dumps({S("body"): dumps("pong"), S("hash"): digest(dumps("pong"), PSK)}),
        b"\x04\x08o:\x0bObject\x00",
    ],
)
def test_malformed_envelopes(data: bytes) -> None:
    with rejected(RejectReason.MALFORMED):
        decode_reply(data, psk=PSK, ttl=60)


def test_a_signed_body_that_is_not_plain_data_is_malformed() -> None:
    body = b"\x04\x08o:\x0bObject\x00"
    outer = loads(REPLY_PONG)
    assert isinstance(outer, dict)
    outer[S("body")], outer[S("hash")] = body, digest(body, PSK)
    with rejected(RejectReason.MALFORMED):
        decode_reply(dumps(outer), psk=PSK, ttl=60, now=PONG_TIME)


def ping(**changes: Any) -> bytes:
    """A discovery ping as ``mco ping`` sends it, with ``changes`` to its fields."""
    fields: dict[str, Any] = {
        "psk": PSK,
        "senderid": "mcoclient",
        "agent": "discovery",
        "collective": "mcollective",
        "filter": empty_filter(),
        "callerid": "uid=0",
    }
    return encode_request("ping", **(fields | changes))


def test_request_is_built_like_the_ruby_client_builds_it() -> None:
    ours = ping(requestid="88952227aace5454be1f0b8b858939ee", msgtime=PING_TIME)
    theirs = loads(REQUEST_PING)
    assert isinstance(theirs, dict)
    theirs.pop(S("filter"))
    mine = loads(ours)
    assert isinstance(mine, dict)
    mine.pop(S("filter"))
    # same keys in the same order, same values and the same digest over the same body bytes
    assert list(mine.items()) == list(theirs.items())


def test_request_and_reply_round_trip() -> None:
    requestid = new_request_id()
    data = encode_request(
        rpc_body("package", "install", {"package": "hello"}, "uid=0"),
        psk=PSK,
        senderid="mcoflow",
        agent="package",
        collective="mcollective",
        filter=empty_filter(),
        requestid=requestid,
        ttl=30,
    )
    request = decode_request(data, psk=PSK)
    assert (request.requestid, request.agent, request.ttl) == (requestid, "package", 30)
    reply = encode_reply(
        {S("statuscode"): 0, S("statusmsg"): "OK", S("data"): {S("ensure"): "2.10-3"}},
        psk=PSK,
        senderid="node1",
        requestid=requestid,
        senderagent="package",
    )
    decoded = decode_reply(reply, psk=PSK, ttl=30)
    assert decoded.requestid == requestid
    assert decoded.body == {"statuscode": 0, "statusmsg": "OK", "data": {"ensure": "2.10-3"}}


@pytest.mark.parametrize("callerid", ["", "uid", "uid=0 x", "user=a/b", "=x"])
def test_callerid_must_have_the_shape_the_node_accepts(callerid: str) -> None:
    with pytest.raises(ValueError, match="callerid"):
        ping(callerid=callerid)


@settings(max_examples=200)
@given(st.binary(max_size=600))
def test_arbitrary_envelopes_are_only_ever_rejected_with_a_reason(data: bytes) -> None:
    for candidate in (data, REPLY_PONG[: len(data) % len(REPLY_PONG)] + data):
        with contextlib.suppress(PskRejected):
            decode_reply(candidate, psk=PSK, ttl=60, now=PONG_TIME)
