from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from mcoflow.rpc import (
    Filter,
    Reply,
    Request,
    StatusCode,
)
from mcoflow.testing import assert_eventually
from mcoflow.testing.rpc import NO_RESPONSE, batches
from tests.rpc_fixtures import DEFAULT_ACTIONS, Keys, Lab
from tests.rpc_responder import HostProfile, Outcome


@pytest.fixture
async def memory_lab(collective: str, keys: Keys) -> AsyncIterator[Lab]:
    lab = Lab(f"memory://{uuid.uuid4().hex}", collective, keys)
    try:
        yield lab
    finally:
        await lab.cleanup()


async def test_direct_call_returns_each_hosts_result(memory_lab: Lab) -> None:
    await memory_lab.fleet(["web1", "web2", "web3"])
    client = await memory_lab.client()
    result = await client.call("echo", "run", {"n": 1}, identities=["web1", "web2"], timeout=2)
    assert [r.identity for r in result.results] == ["web1", "web2"]
    assert all(r.statuscode is StatusCode.OK for r in result.results)
    assert result.result_for("web2").data == {"echo": {"n": 1}, "identity": "web2"}
    assert result.stats.responded == ("web1", "web2")
    assert result.stats.no_response == ()
    assert all(r.elapsed is not None and r.elapsed < 2 for r in result.results)
    assert result.ok


async def test_discovery_applies_the_filter_on_the_hosts(memory_lab: Lab) -> None:
    await memory_lab.fleet(
        [
            HostProfile(identity="web1", facts={"cpus": 2}, classes=("role::web",)),
            HostProfile(identity="web2", facts={"cpus": 16}, classes=("role::web",)),
            HostProfile(identity="db1", facts={"cpus": 16}, classes=("role::db",)),
        ]
    )
    client = await memory_lab.client()
    assert await client.discover(timeout=0.3) == ["db1", "web1", "web2"]
    assert await client.discover(Filter.parse_cli(["cpus>=8"]), timeout=0.3) == ["db1", "web2"]
    assert await client.discover(Filter(classes=("role::web",)), timeout=0.3) == ["web1", "web2"]
    assert await client.discover(Filter(identity=("/^d/",)), timeout=0.3) == ["db1"]
    started = time.monotonic()
    assert len(await client.discover(timeout=5, expect=3)) == 3
    assert time.monotonic() - started < 1


async def test_call_by_filter_discovers_then_broadcasts_above_the_threshold(
    memory_lab: Lab,
) -> None:
    hosts = [HostProfile(identity=f"h{n:02}", facts={"n": n}) for n in range(30)]
    responder = await memory_lab.fleet(hosts)
    client = await memory_lab.client(direct_threshold=5)
    result = await client.call(
        "echo", "run", filter=Filter.parse_cli(["n<20"]), timeout=2, discovery_timeout=0.3
    )
    assert result.stats.discovered == tuple(f"h{n:02}" for n in range(20))
    assert result.stats.responded == result.stats.discovered
    assert result.stats.discovery_seconds >= 0.3
    # one broadcast, so every result carries the same request id
    assert len({r.request_id for r in result.results}) == 1
    assert responder.handled == 20 + 20


async def test_hosts_not_discovered_but_answering_are_unexpected(memory_lab: Lab) -> None:
    late = await memory_lab.fleet(["h9"], start=False)
    await memory_lab.fleet([f"h{n}" for n in range(3)])
    client = await memory_lab.client(direct_threshold=0)

    original = client.discover

    async def discover_then_add_host(*args: object, **kwargs: object) -> list[str]:
        found = await original(*args, **kwargs)  # type: ignore[arg-type]
        await late.start()  # h9 comes up after discovery
        return found

    client.discover = discover_then_add_host  # type: ignore[method-assign]
    result = await client.call("echo", "run", timeout=0.5, discovery_timeout=0.2)
    assert result.stats.discovered == ("h0", "h1", "h2")
    assert result.stats.unexpected == ("h9",)
    assert result.result_for("h9").ok


def test_batches_by_count_and_percentage() -> None:
    hosts = [f"h{n}" for n in range(10)]
    assert batches(hosts, None) == [hosts]
    assert batches(hosts, 4) == [hosts[:4], hosts[4:8], hosts[8:]]
    assert batches(hosts, "3") == [hosts[:3], hosts[3:6], hosts[6:9], hosts[9:]]
    assert batches(hosts, "25%") == [hosts[:3], hosts[3:6], hosts[6:9], hosts[9:]]
    assert batches(hosts[:1], "1%") == [hosts[:1]]
    assert batches([], 3) == []
    for bad in (0, "0%", "150%", -1):
        with pytest.raises(ValueError, match="batch size"):
            batches(hosts, bad)


async def test_batched_call_sends_one_request_per_batch_and_sleeps(memory_lab: Lab) -> None:
    await memory_lab.fleet([f"h{n}" for n in range(5)])
    client = await memory_lab.client()
    started = time.monotonic()
    result = await client.call(
        "echo",
        "run",
        identities=[f"h{n}" for n in range(5)],
        batch_size=2,
        batch_sleep=0.2,
        timeout=2,
    )
    assert time.monotonic() - started >= 0.4  # two sleeps between three batches
    assert len(result.stats.responded) == 5
    groups: dict[str, list[str]] = {}
    for host in result.results:
        groups.setdefault(host.request_id, []).append(host.identity)
    assert sorted(groups.values()) == [["h0", "h1"], ["h2", "h3"], ["h4"]]


async def test_late_replies_go_to_the_reply_callback(memory_lab: Lab) -> None:
    async def slow(request: Request, host: HostProfile) -> Outcome:
        await asyncio.sleep(0.3)
        return Outcome(data={"late": True})

    received: list[Reply] = []

    async def on_reply(reply: Reply) -> None:
        received.append(reply)

    await memory_lab.fleet(["slow"], actions={"echo": {"run": slow}})
    client = await memory_lab.client(on_reply=on_reply)
    result = await client.call("echo", "run", identities=["slow"], timeout=0.1)
    assert result.result_for("slow").statuscode is NO_RESPONSE
    await assert_eventually(lambda: len(received) == 1)
    assert received[0].request_id == result.result_for("slow").request_id
    assert received[0].data == {"late": True}


async def test_send_with_reply_callback_routes_replies(memory_lab: Lab) -> None:
    received: list[Reply] = []

    async def on_reply(reply: Reply) -> None:
        received.append(reply)

    await memory_lab.fleet(["web1", "web2"])
    client = await memory_lab.client(on_reply=on_reply)
    request = client.build("echo", "run", {"k": "v"}, ttl=5)
    await client.send(request, ["web1", "web2"])
    await assert_eventually(lambda: {r.sender for r in received} == {"web1", "web2"})
    assert {r.request_id for r in received} == {request.id}


async def test_replies_signed_by_an_untrusted_key_are_refused(memory_lab: Lab) -> None:
    rogue = Lab(memory_lab.url, memory_lab.collective, memory_lab.keys)
    rogue.keys = Keys(
        caller=memory_lab.keys.caller, host=memory_lab.keys.stranger, stranger=memory_lab.keys.host
    )
    try:
        await rogue.fleet(["web1"])
        client = await memory_lab.client()
        result = await client.call("echo", "run", identities=["web1"], timeout=0.3)
        assert result.result_for("web1").statuscode is NO_RESPONSE
        assert client.rejected_replies == 1
    finally:
        await rogue.cleanup()


async def test_publish_failure_is_reported_per_host_not_raised(memory_lab: Lab) -> None:
    client = await memory_lab.client()
    await client.transport.close()
    result = await client.call("echo", "run", identities=["web1"], timeout=1)
    assert result.result_for("web1").statuscode is NO_RESPONSE
    assert result.result_for("web1").statusmsg.startswith("not sent:")


async def test_responder_reports_unknown_actions_and_errors(memory_lab: Lab) -> None:
    async def broken(request: Request, host: HostProfile) -> Outcome:
        raise RuntimeError("disk on fire")

    await memory_lab.fleet(["web1"], actions={**DEFAULT_ACTIONS, "bad": {"run": broken}})
    client = await memory_lab.client()
    unknown = await client.call("echo", "nope", identities=["web1"], timeout=1)
    assert unknown.result_for("web1").statuscode is StatusCode.UNKNOWN_ACTION
    assert "echo.nope" in unknown.result_for("web1").statusmsg
    failed = await client.call("bad", "run", identities=["web1"], timeout=1)
    assert failed.result_for("web1").statuscode is StatusCode.UNKNOWN_ERROR
    assert "disk on fire" in failed.result_for("web1").statusmsg


def test_the_caller_must_be_the_signing_key(keys: Keys) -> None:
    from mcoflow.rpc import MemoryTransport, RpcClient

    with pytest.raises(ValueError, match="must be the signing key"):
        RpcClient(MemoryTransport(), keys.caller, collective="c", caller="bob", reply_to="r")


async def test_client_takes_a_batch_of_replies_in_one_envelope(memory_lab: Lab) -> None:
    from mcoflow.rpc import build_reply
    from mcoflow.rpc.messages import encode_message, encode_reply_batch

    client = await memory_lab.client()
    transport = await memory_lab.transport()
    request = client.build("rpcutil", "ping")
    senders = [f"sim{n}" for n in range(5)]

    async def answer_in_one_batch() -> None:
        await asyncio.sleep(0.05)
        bodies = [
            encode_message(build_reply(request, sender=s, statuscode=StatusCode.OK))
            for s in senders
        ]
        batch = memory_lab.keys.host.sign(encode_reply_batch(bodies))
        await transport.publish_reply(batch, reply_to=client.reply_to)
        await transport.publish_reply(batch, reply_to=client.reply_to)  # redelivered

    answering = asyncio.create_task(answer_in_one_batch())
    pending, failure = await client._round(request, senders, expected=frozenset(senders), wait=5.0)
    await answering
    assert failure is None
    assert sorted(pending.replies) == senders
