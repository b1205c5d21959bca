"""One suite, run on the memory transport and on the real RabbitMQ and NATS servers."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest

from mcoflow.rpc import Filter, Reply, Request, StatusCode, build_request, seal
from mcoflow.rpc.messages import encode_message
from mcoflow.testing import assert_eventually
from mcoflow.testing.rpc import NO_RESPONSE
from tests.rpc_fixtures import DEFAULT_ACTIONS, Lab
from tests.rpc_responder import HostProfile, Outcome, Refusal

FLEET = [
    HostProfile(
        identity="web1.example.com",
        facts={"os_family": "debian", "cpus": 4},
        classes=("role::web",),
    ),
    HostProfile(
        identity="web2.example.com",
        facts={"os_family": "redhat", "cpus": 16},
        classes=("role::web",),
    ),
    HostProfile(
        identity="db1.example.com",
        facts={"os_family": "debian", "cpus": 32},
        classes=("role::db",),
    ),
]


async def test_direct_call(lab: Lab) -> None:
    await lab.fleet(FLEET)
    client = await lab.client()
    result = await client.call(
        "echo", "run", {"x": [1, 2]}, identities=["web1.example.com", "db1.example.com"], timeout=5
    )
    assert result.stats.responded == ("db1.example.com", "web1.example.com")
    assert result.result_for("db1.example.com").data["echo"] == {"x": [1, 2]}


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (Filter(), ["db1.example.com", "web1.example.com", "web2.example.com"]),
        (Filter(identity=("web2.example.com",)), ["web2.example.com"]),
        (Filter(identity=("/^web/",)), ["web1.example.com", "web2.example.com"]),
        (Filter.parse_cli(["os_family=debian"]), ["db1.example.com", "web1.example.com"]),
        (Filter.parse_cli(["cpus>=16"]), ["db1.example.com", "web2.example.com"]),
        (Filter(classes=("role::db",)), ["db1.example.com"]),
        (Filter(agents=("echo",)), ["db1.example.com", "web1.example.com", "web2.example.com"]),
        (Filter(agents=("puppet",)), []),
    ],
    ids=["empty", "identity", "identity-regex", "fact", "fact-numeric", "class", "agent", "none"],
)
async def test_broadcast_applies_each_filter_kind(
    lab: Lab, flt: Filter, expected: list[str]
) -> None:
    responder = await lab.fleet(FLEET)
    client = await lab.client(direct_threshold=0)  # always broadcast the call itself
    expect = len(expected) or None  # only "none" has to wait out the timeout
    assert await client.discover(flt, timeout=0.5, expect=expect) == expected
    result = await client.call(
        "echo", "run", filter=flt, timeout=5, discovery_timeout=0.5, expect=expect
    )
    assert list(result.stats.responded) == expected
    assert result.stats.unexpected == ()
    assert responder.handled == 3 * len(expected)  # two discoveries and the call


async def test_discovery_collects_until_the_timeout(lab: Lab) -> None:
    await lab.fleet([f"node{n}" for n in range(25)])
    client = await lab.client()
    started = time.monotonic()
    found = await client.discover(timeout=0.5)
    assert 0.5 <= time.monotonic() - started < 2
    assert found == sorted(f"node{n}" for n in range(25))


async def test_batching(lab: Lab) -> None:
    hosts = [f"node{n}" for n in range(7)]
    await lab.fleet(hosts)
    client = await lab.client()
    result = await client.call("echo", "run", identities=hosts, batch_size="30%", timeout=5)
    per_request: dict[str, int] = {}
    for host in result.results:
        per_request[host.request_id] = per_request.get(host.request_id, 0) + 1
    assert sorted(per_request.values()) == [1, 3, 3]
    assert len(result.stats.responded) == 7


async def test_silent_host_is_reported_by_the_deadline(lab: Lab) -> None:
    async def hang(request: Request, host: HostProfile) -> Outcome:
        await asyncio.sleep(60)
        return Outcome()

    await lab.fleet(["quick"])
    await lab.fleet(["silent"], actions={"echo": {"run": hang}})
    client = await lab.client()
    started = time.monotonic()
    result = await client.call("echo", "run", identities=["quick", "silent", "ghost"], timeout=1)
    assert time.monotonic() - started < 2.5
    assert result.result_for("quick").ok
    for identity in ("silent", "ghost"):
        silent = result.result_for(identity)
        assert silent.statuscode is NO_RESPONSE
        assert not silent.responded
        assert "no response within 1s" in silent.statusmsg
    assert result.stats.no_response == ("ghost", "silent")
    assert not result.ok


async def test_direct_request_waits_for_a_host_that_is_away(lab: Lab) -> None:
    replies: list[Reply] = []

    async def on_reply(reply: Reply) -> None:
        replies.append(reply)

    responder = await lab.fleet(["laptop"])
    await responder.stop()  # the host goes away; its queue stays
    client = await lab.client(on_reply=on_reply)
    result = await client.call("echo", "run", {"k": 1}, identities=["laptop"], timeout=0.3, ttl=30)
    assert result.result_for("laptop").statuscode is NO_RESPONSE
    await responder.start()  # back: the request waited for it
    await assert_eventually(lambda: len(replies) == 1, timeout=10)
    assert replies[0].request_id == result.result_for("laptop").request_id
    assert replies[0].data["echo"] == {"k": 1}


async def test_replies_wait_while_the_caller_is_away(lab: Lab) -> None:
    await lab.fleet(["web1"])
    first = await lab.client()
    request = first.build("echo", "run", {"n": 7}, ttl=30)
    await first.close()  # the orchestrator stops; its durable reply queue stays
    await first.send(request, ["web1"])
    await asyncio.sleep(0.3)  # the reply is produced while nobody consumes
    received: list[Reply] = []

    async def on_reply(reply: Reply) -> None:
        received.append(reply)

    await lab.client(reply_to=first.reply_to, on_reply=on_reply)
    await assert_eventually(lambda: len(received) == 1, timeout=10)
    assert received[0].request_id == request.id


async def test_a_reply_whose_handler_fails_is_delivered_again(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    attempts: list[str] = []

    async def flaky(reply: Reply) -> None:
        attempts.append(reply.request_id)
        if len(attempts) == 1:
            raise RuntimeError("database briefly unavailable")

    await lab.fleet(["web1"])
    client = await lab.client(on_reply=flaky)
    request = client.build("echo", "run", ttl=30)
    with caplog.at_level(logging.ERROR):
        await client.send(request, ["web1"])
        await assert_eventually(lambda: len(attempts) >= 1, timeout=10)
        if lab.url.startswith("memory:"):
            # no broker to give it back to: logged, not redelivered
            await asyncio.sleep(1)
            assert attempts == [request.id]
        else:
            await assert_eventually(lambda: attempts == [request.id, request.id], timeout=10)
    assert "database briefly unavailable" in caplog.text


async def test_forged_expired_and_replayed_requests_are_refused(lab: Lab) -> None:
    runs: list[str] = []

    async def counted(request: Request, host: HostProfile) -> Outcome:
        runs.append(request.id)
        return Outcome()

    responder = await lab.fleet(["web1"], actions={**DEFAULT_ACTIONS, "echo": {"run": counted}})
    client = await lab.client()
    transport, keys = client.transport, lab.keys

    def request(**kwargs: object) -> Request:
        return build_request(
            sender="o",
            caller="alice",
            collective=lab.collective,
            agent="echo",
            action="run",
            reply_to=client.reply_to,
            **kwargs,  # type: ignore[arg-type]
        )

    async def deliver(envelope: bytes) -> None:
        await transport.publish_request(
            envelope, collective=lab.collective, agent="echo", identities=["web1"]
        )

    forged = request()
    await deliver(seal(forged, keys.stranger))  # unknown signer
    await deliver(encode_message(request()))  # unsigned
    frame = json.loads(seal(request(), keys.caller))
    frame["signer"] = "alice"
    frame["body"] = frame["body"][:-4] + "AAA="  # tampered
    await deliver(json.dumps(frame).encode())
    await deliver(seal(request(now=time.time() - 120, ttl=60), keys.caller))  # expired
    await deliver(seal(request(now=time.time() + 3600), keys.caller))  # from the future
    genuine = seal(request(), keys.caller)
    await deliver(genuine)
    await assert_eventually(lambda: len(runs) == 1, timeout=10)
    # Replayed as a broadcast: JetStream would drop an identical direct publish
    # within its duplicate window, before it even reached the host.
    await transport.publish_request(
        genuine, collective=lab.collective, agent="echo", identities=None
    )

    await assert_eventually(lambda: sum(responder.refusals.values()) == 6, timeout=10)
    assert responder.refusals[Refusal.SECURITY] == 3
    assert responder.refusals[Refusal.EXPIRED] == 2
    assert responder.refusals[Refusal.DUPLICATE] == 1
    assert len(runs) == 1  # only the genuine one ran, once
    reasons = " ".join(reason for _, _, reason in responder.refusal_log)
    assert "unknown signer 'mallory'" in reasons
    assert "expired" in reasons
    assert "future" in reasons


async def test_unknown_action_status(lab: Lab) -> None:
    await lab.fleet(["web1"])
    client = await lab.client()
    result = await client.call("echo", "explode", identities=["web1"], timeout=5)
    assert result.result_for("web1").statuscode is StatusCode.UNKNOWN_ACTION


async def test_transient_reply_destination(lab: Lab) -> None:
    await lab.fleet(["web1"])
    client = await lab.client(transient_replies=True)
    started = time.monotonic()
    for _ in range(3):
        result = await client.call("echo", "run", identities=["web1"], timeout=5)
        assert result.result_for("web1").ok
    assert time.monotonic() - started < 3  # no publish waiting for an ack nobody sends
