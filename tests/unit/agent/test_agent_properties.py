"""Property tests: random and malformed messages and inputs never crash the agent,
always get a clear status code (or no reply at all), and never run anything."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcoflow.agent.dispatcher import Dispatcher
from mcoflow.agent.plugins import HostContext, make_agents
from mcoflow.agent.providers import SimulatedFleet
from mcoflow.rpc.envelope import seal
from mcoflow.rpc.messages import Reply, StatusCode, parse_reply
from mcoflow.rpc.security import Signer, Verifier
from tests.unit.agent.conftest import make_request

CALLER_KEY = Ed25519PrivateKey.generate()
HOST_KEY = Ed25519PrivateKey.generate()
CALLER = Signer("ops", CALLER_KEY)
HOST_VERIFIER = Verifier({"host": HOST_KEY.public_key()})
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


def _world() -> tuple[Dispatcher, SimulatedFleet, list[Reply], HostContext]:
    fleet = SimulatedFleet()
    replies: list[Reply] = []

    async def publish(envelope: bytes, reply_to: str) -> None:
        _signer, body = HOST_VERIFIER.open(envelope)
        replies.append(parse_reply(body))

    agents = make_agents(["package", "service"])
    dispatcher = Dispatcher(
        verifier=Verifier({"ops": CALLER_KEY.public_key()}),
        signer=Signer("host", HOST_KEY),
        agents=agents,
        publish=publish,
    )
    host = HostContext(
        identity="web1",
        collective="mcoflow",
        facts={"role": "web"},
        classes=(),
        agents=tuple(agents),
        package_provider=fleet.package_provider("web1"),
        service_provider=fleet.service_provider("web1"),
    )
    return dispatcher, fleet, replies, host


def _deliver(envelope: bytes) -> tuple[SimulatedFleet, list[Reply]]:
    dispatcher, fleet, replies, host = _world()
    asyncio.run(dispatcher.handle(host, envelope))
    return fleet, replies


@SETTINGS
@given(st.binary(max_size=2048))
def test_random_bytes_are_refused_without_reply(envelope: bytes) -> None:
    fleet, replies = _deliver(envelope)
    assert replies == []
    assert fleet.calls == {}


@SETTINGS
@given(json_values)
def test_random_json_envelopes_are_refused_without_reply(frame: Any) -> None:
    fleet, replies = _deliver(json.dumps(frame).encode())
    assert replies == []
    assert fleet.calls == {}


@SETTINGS
@given(json_values)
def test_correctly_signed_garbage_bodies_are_refused_without_reply(body: Any) -> None:
    fleet, replies = _deliver(CALLER.sign(json.dumps(body).encode()))
    assert replies == []
    assert fleet.calls == {}


@SETTINGS
@given(
    agent=st.sampled_from(["package", "service", "rpcutil", "puppet"]),
    action=st.sampled_from(["install", "uninstall", "purge", "update", "restart", "explode"]),
    data=st.dictionaries(
        st.sampled_from(["package", "version", "service", "fact", "extra"]),
        json_values,
        max_size=4,
    ),
)
def test_random_inputs_get_a_clear_status_and_invalid_ones_run_nothing(
    agent: str, action: str, data: dict[str, Any]
) -> None:
    request = make_request(agent, action, data, now=time.time())
    fleet, replies = _deliver(seal(request, CALLER))
    [reply] = replies
    assert reply.request_id == request.id
    assert reply.statuscode in set(StatusCode)
    assert reply.statuscode is not StatusCode.UNKNOWN_ERROR, reply.statusmsg
    if reply.statuscode in (
        StatusCode.UNKNOWN_ACTION,
        StatusCode.MISSING_DATA,
        StatusCode.INVALID_DATA,
    ):
        assert fleet.calls == {}
        assert reply.statusmsg
    if reply.statuscode in (StatusCode.MISSING_DATA, StatusCode.INVALID_DATA):
        assert reply.statusmsg.startswith("input ")


@SETTINGS
@given(
    field=st.sampled_from(["id", "agent", "action", "ttl", "time", "reply_to", "data"]),
    value=json_values,
)
def test_signed_requests_with_one_bad_field_do_not_crash(field: str, value: Any) -> None:
    request = make_request("package", "install", {"package": "hello"})
    raw = json.loads(request.model_dump_json())
    raw[field] = value
    fleet, replies = _deliver(CALLER.sign(json.dumps(raw).encode()))
    for reply in replies:
        assert reply.statuscode in set(StatusCode)
        assert reply.statuscode is not StatusCode.UNKNOWN_ERROR, reply.statusmsg
    if not replies:
        assert fleet.calls == {}


def test_a_body_that_is_not_base64_is_refused() -> None:
    frame = {"v": 1, "signer": "ops", "body": "%%%", "sig": base64.b64encode(b"x" * 64).decode()}
    fleet, replies = _deliver(json.dumps(frame).encode())
    assert (replies, fleet.calls) == ([], {})
