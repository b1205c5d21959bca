from __future__ import annotations

import logging

import pytest

from mcoflow.rpc import MemoryBroker, MemoryTransport, TransportError, transport_from_url
from mcoflow.testing import assert_eventually


@pytest.fixture
async def transport() -> MemoryTransport:
    return MemoryTransport(MemoryBroker())


async def test_direct_requests_wait_for_a_host_that_is_away() -> None:
    broker = MemoryBroker()
    sender, host = MemoryTransport(broker), MemoryTransport(broker)
    await sender.connect()
    await host.connect()
    got: list[bytes] = []

    async def handler(body: bytes) -> None:
        got.append(body)

    subscription = await host.subscribe_host(
        identity="web1", collective="c", agents=["package"], handler=handler
    )
    await subscription.cancel()
    await sender.publish_request(
        b"while-away", collective="c", agent="package", identities=["web1"]
    )
    await sender.publish_request(b"broadcast", collective="c", agent="package", identities=None)
    assert got == []
    await host.subscribe_host(identity="web1", collective="c", agents=["package"], handler=handler)
    # the direct one was kept for it; the broadcast was for the hosts up at the time
    await assert_eventually(lambda: got == [b"while-away"])
    await host.close()
    await sender.close()


async def test_broadcast_reaches_hosts_serving_the_agent_in_the_collective() -> None:
    transport = MemoryTransport(MemoryBroker())
    await transport.connect()
    seen: dict[str, list[bytes]] = {"a": [], "b": [], "other": [], "noagent": []}

    def keep(name: str):  # type: ignore[no-untyped-def]
        async def handler(body: bytes) -> None:
            seen[name].append(body)

        return handler

    await transport.subscribe_host(identity="a", collective="c", agents=["x"], handler=keep("a"))
    await transport.subscribe_host(identity="b", collective="c", agents=["x"], handler=keep("b"))
    await transport.subscribe_host(
        identity="other", collective="d", agents=["x"], handler=keep("other")
    )
    await transport.subscribe_host(
        identity="noagent", collective="c", agents=["y"], handler=keep("noagent")
    )
    await transport.publish_request(b"hi", collective="c", agent="x", identities=None)
    await assert_eventually(lambda: seen["a"] == [b"hi"] and seen["b"] == [b"hi"])
    assert seen["other"] == []
    assert seen["noagent"] == []
    await transport.close()


async def test_reply_queue_keeps_replies_and_shares_them_between_consumers() -> None:
    broker = MemoryBroker()
    transport = MemoryTransport(broker)
    await transport.connect()
    first: list[bytes] = []
    second: list[bytes] = []

    async def one(body: bytes) -> None:
        first.append(body)

    async def two(body: bytes) -> None:
        second.append(body)

    # the queue exists once subscribed; replies then wait while nobody consumes
    subscription = await transport.subscribe_replies(reply_to="r", handler=one)
    await subscription.cancel()
    await transport.publish_reply(b"kept", reply_to="r")
    await transport.subscribe_replies(reply_to="r", handler=one)
    await transport.subscribe_replies(reply_to="r", handler=two)
    for number in range(10):
        await transport.publish_reply(str(number).encode(), reply_to="r")
    await assert_eventually(lambda: len(first) + len(second) == 11)
    assert b"kept" in first
    assert first  # competing consumers both got work
    assert second
    assert len(set(first) | set(second)) == 11  # and nothing twice
    await transport.close()


async def test_transient_reply_queue_disappears_with_its_subscription(
    transport: MemoryTransport,
) -> None:
    await transport.connect()

    async def ignore(body: bytes) -> None:
        return None

    subscription = await transport.subscribe_replies(reply_to="t", handler=ignore, transient=True)
    assert "t" in transport.broker.reply_queues
    await subscription.cancel()
    assert "t" not in transport.broker.reply_queues
    await transport.close()


async def test_a_failing_handler_is_logged_and_does_not_stop_delivery(
    transport: MemoryTransport, caplog: pytest.LogCaptureFixture
) -> None:
    await transport.connect()
    good: list[bytes] = []

    async def handler(body: bytes) -> None:
        if body == b"bad":
            raise RuntimeError("boom")
        good.append(body)

    await transport.subscribe_replies(reply_to="r", handler=handler)
    with caplog.at_level(logging.ERROR):
        await transport.publish_reply(b"bad", reply_to="r")
        await transport.publish_reply(b"good", reply_to="r")
        await assert_eventually(lambda: good == [b"good"])
    assert "handler failed" in caplog.text
    await transport.close()


async def test_publishing_needs_a_connection(transport: MemoryTransport) -> None:
    assert not transport.connected
    with pytest.raises(TransportError):
        await transport.publish_reply(b"x", reply_to="r")
    await transport.connect()
    assert transport.connected
    await transport.close()
    assert not transport.connected


def test_transport_from_url_selects_by_scheme() -> None:
    from mcoflow.rpc.transports.amqp import AmqpTransport
    from mcoflow.rpc.transports.nats import NatsTransport

    first = transport_from_url("memory://shared")
    second = transport_from_url("memory://shared")
    assert isinstance(first, MemoryTransport)
    assert isinstance(second, MemoryTransport)
    assert first.broker is second.broker
    assert isinstance(transport_from_url("amqp://u:p@h/"), AmqpTransport)
    assert isinstance(transport_from_url("amqps://u:p@h/"), AmqpTransport)
    assert isinstance(transport_from_url("nats://h:4222"), NatsTransport)
    with pytest.raises(ValueError, match="unsupported transport"):
        transport_from_url("stomp://h")
