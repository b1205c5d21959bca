"""PskWire: mcoflow's requests sealed as MCollective's, its nodes' replies read back."""

from __future__ import annotations

import time

import pytest

from mcoflow.rpc.mcollective.marshal import Symbol
from mcoflow.rpc.mcollective.psk import RejectReason, decode_request, encode_reply
from mcoflow.rpc.mcollective.wire import PskWire
from mcoflow.rpc.messages import MessageError, Request, StatusCode, build_request
from mcoflow.rpc.security import SecurityError
from mcoflow.rpc.targeting import parse as parse_filter
from tests.unit.rpc.mcollective.mco_fixtures import PSK, REPLY_PONG

S = Symbol


def wire() -> PskWire:
    return PskWire(psk=PSK, collective="mcollective", callerid="user=deploy")


def request(
    agent: str, action: str, data: dict[str, object] | None = None, **kw: object
) -> Request:
    return build_request(
        sender="orchestrator1",
        caller="mcoflow",
        collective="mcoflow",
        agent=agent,
        action=action,
        data=data,
        reply_to="mcoflow.replies",
        **kw,  # type: ignore[arg-type]
    )


def reply_to(
    req: Request, body: object, *, psk: str = PSK, agent: str | None = None, age: int = 0
) -> bytes:
    return encode_reply(
        body,  # type: ignore[arg-type]
        psk=psk,
        senderid="node1",
        requestid=req.id,
        senderagent=agent or req.agent,
        msgtime=int(time.time()) - age,
    )


def ok(data: dict[object, object], code: int = 0, message: str = "OK") -> dict[object, object]:
    return {S("statuscode"): code, S("statusmsg"): message, S("data"): data}


def test_ping_is_sent_as_discovery_with_the_filter() -> None:
    req = request("rpcutil", "ping", filter=parse_filter("role=db"), ttl=2.5)
    sent = decode_request(wire().seal(req), psk=PSK)
    assert (sent.agent, sent.body, sent.requestid) == ("discovery", "ping", req.id)
    assert (sent.collective, sent.callerid, sent.senderid) == (
        "mcollective",
        "user=deploy",
        "orchestrator1",
    )
    assert sent.ttl == 3  # whole seconds, rounded up
    assert sent.filter["fact"] == [{S("fact"): "role", S("value"): "db", S("operator"): "=="}]
    assert sent.filter["agent"] == []
    assert wire().route_agent(req) == "discovery"


def test_an_action_is_sent_as_mco_rpc_sends_it() -> None:
    req = request("package", "install", {"package": "hello"}, ttl=60)
    sent = decode_request(wire().seal(req), psk=PSK)
    assert sent.agent == "package"
    assert sent.body == {
        S("agent"): "package",
        S("action"): "install",
        S("caller"): "user=deploy",
        S("data"): {S("package"): "hello", S("process_results"): True},
    }
    assert sent.filter["agent"] == ["package"]
    assert wire().route_agent(req) == "package"


def test_a_compound_filter_cannot_be_sent() -> None:
    req = request("rpcutil", "inventory", filter=parse_filter("role=db or role=web"))
    with pytest.raises(MessageError, match="not supported on MCollective"):
        wire().seal(req)


def test_a_reply_is_read_with_the_action_of_its_request() -> None:
    w = wire()
    req = request("rpcutil", "get_fact", {"fact": "role"})
    w.seal(req)
    [reply] = w.open(reply_to(req, ok({S("fact"): "role", S("value"): b"db\xff"})))
    assert (reply.sender, reply.agent, reply.action) == ("node1", "rpcutil", "get_fact")
    assert reply.statuscode is StatusCode.OK
    # Symbol keys become text; a binary String is read as UTF-8
    assert reply.data == {"fact": "role", "value": "db\ufffd"}


def test_a_pong_is_a_ping_reply() -> None:
    w = wire()
    req = request("rpcutil", "ping")
    w.seal(req)
    [reply] = w.open(reply_to(req, "pong", agent="discovery"))
    assert (reply.agent, reply.action, reply.statuscode) == ("rpcutil", "ping", StatusCode.OK)
    assert reply.data["pong"] == pytest.approx(time.time(), abs=5)


def test_wrong_psk_and_expired_replies_are_dropped_and_counted() -> None:
    w = wire()
    req = request("rpcutil", "inventory", ttl=30)
    w.seal(req)
    with pytest.raises(SecurityError, match="bad digest"):
        w.open(reply_to(req, ok({}), psk="not-the-psk"))
    with pytest.raises(SecurityError, match="expired"):
        w.open(reply_to(req, ok({}), age=31))
    w.open(reply_to(req, ok({}), age=29))
    # a real node's reply from long ago, to a request of another process: default ttl
    with pytest.raises(SecurityError, match="expired"):
        w.open(REPLY_PONG)
    with pytest.raises(MessageError, match="malformed"):
        w.open(b"\x04\x08garbage")
    with pytest.raises(MessageError, match="not a Hash"):
        w.open(reply_to(req, [1, 2]))
    assert w.dropped == {
        RejectReason.BAD_DIGEST: 1,
        RejectReason.EXPIRED: 2,
        RejectReason.MALFORMED: 2,
    }


def test_a_reply_to_an_unknown_request_keeps_its_agent() -> None:
    req = request("service", "restart", {"service": "cron"})
    [reply] = wire().open(reply_to(req, ok({S("status"): "running"})))
    assert (reply.agent, reply.action, reply.data) == ("service", "unknown", {"status": "running"})


def test_a_failed_answer_comes_as_the_node_sent_it() -> None:
    # the package agent's "nothing to do" is for the Install step to read, not the wire
    w = wire()
    req = request("package", "install", {"package": "hello"})
    w.seal(req)
    body = ok({S("ensure"): "2.10-3", S("output"): None}, 5, "Package is already installed")
    [reply] = w.open(reply_to(req, body))
    assert (reply.statuscode, reply.statusmsg) == (
        StatusCode.UNKNOWN_ERROR,
        "Package is already installed",
    )
    assert reply.data == {"ensure": "2.10-3", "output": None}


def test_an_unknown_statuscode_is_an_unexpected_error() -> None:
    w = wire()
    req = request("echo", "run", {"msg": "x"})
    w.seal(req)
    [reply] = w.open(reply_to(req, ok({}, 42, "odd")))
    assert (reply.statuscode, reply.statusmsg) == (StatusCode.UNKNOWN_ERROR, "odd")


def test_only_the_newest_requests_are_remembered() -> None:
    w = PskWire(psk=PSK, collective="mcollective", callerid="uid=0", remember=2)
    first, *rest = [request("echo", "run", {"msg": str(i)}) for i in range(3)]
    for req in (first, *rest):
        w.seal(req)
    [reply] = w.open(reply_to(first, ok({})))
    assert reply.action == "unknown"
    [reply] = w.open(reply_to(rest[-1], ok({})))
    assert reply.action == "run"


def test_a_psk_is_required() -> None:
    with pytest.raises(ValueError, match="mcollective_psk"):
        PskWire(psk="", collective="mcollective", callerid="uid=0")
