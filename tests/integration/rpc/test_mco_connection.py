"""The STOMP client connection against RabbitMQ's real STOMP plugin (vhost /mcollective)."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from urllib.parse import unquote, urlsplit

import pytest

from mcoflow.rpc.mcollective.connection import StompConnection, StompServer
from mcoflow.rpc.mcollective.stomp import Frame
from mcoflow.rpc.transport import TransportError
from mcoflow.testing import assert_eventually
from tests.conftest import missing
from tests.rpc_fixtures import rabbitmqctl, require_server

pytestmark = pytest.mark.rabbitmq

STOMP_URL = os.environ.get(
    "MCOFLOW_TEST_STOMP_URL", "stomp://mcollective:marionette@127.0.0.1:61613/%2Fmcollective"
)
# test queues remove themselves a minute after their last consumer left
QUEUE_ARGS = {"x-expires": "60000"}


def server_from_url(url: str) -> StompServer:
    parts = urlsplit(url)
    return StompServer(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 61613,
        login=unquote(parts.username or ""),
        passcode=unquote(parts.password or ""),
        vhost=unquote(parts.path[1:]) or "/",
    )


@pytest.fixture
def server() -> StompServer:
    return server_from_url(require_server("RabbitMQ STOMP", STOMP_URL, 61613))


@pytest.fixture
async def connection(server: StompServer) -> AsyncIterator[StompConnection]:
    connection = StompConnection([server], heartbeat=2.0, send_timeout=10.0)
    await connection.connect()
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
def queue() -> str:
    return f"/queue/mcoflow-test.stomp.{uuid.uuid4().hex[:12]}"


async def test_a_binary_body_round_trips_with_its_headers(
    connection: StompConnection, queue: str
) -> None:
    got: list[Frame] = []

    async def handler(frame: Frame) -> None:
        got.append(frame)

    await connection.subscribe(queue, handler, headers=QUEUE_ARGS)
    body = b"\x04\x08{\x00\x00\n\n\x00\r\nend\x00"
    await connection.send(queue, body, {**QUEUE_ARGS, "mc_sender": "node1", "odd": "a:b\nc"})
    await assert_eventually(lambda: len(got) == 1)
    [frame] = got
    assert frame.body == body
    assert frame.header("mc_sender") == "node1"
    assert frame.header("odd") == "a:b\nc"
    assert frame.header("destination") == queue
    assert frame.header("redelivered") == "false"


async def test_a_failed_handler_gets_the_message_again_and_an_acked_one_does_not(
    server: StompServer, queue: str
) -> None:
    got: list[tuple[bytes, str]] = []

    async def handler(frame: Frame) -> None:
        got.append((frame.body, frame.header("redelivered")))
        if frame.body == b"fails once" and frame.header("redelivered") == "false":
            raise RuntimeError("first try fails")

    first = StompConnection([server])
    await first.connect()
    try:
        await first.subscribe(queue, handler, headers=QUEUE_ARGS)
        await first.send(queue, b"fails once", QUEUE_ARGS)
        await first.send(queue, b"works", QUEUE_ARGS)
        await assert_eventually(lambda: len(got) == 3)
        assert sorted(got) == [
            (b"fails once", "false"),
            (b"fails once", "true"),
            (b"works", "false"),
        ]
    finally:
        await first.close()
    # Nothing went back to the queue: a new consumer's first message is the one sent now.
    got.clear()
    second = StompConnection([server])
    await second.connect()
    try:
        await second.subscribe(queue, handler, headers=QUEUE_ARGS)
        await second.send(queue, b"end", QUEUE_ARGS)
        await assert_eventually(lambda: len(got) == 1)
        assert got == [(b"end", "false")]
    finally:
        await second.close()


async def test_prefetch_limits_the_handlers_running_at_once(
    connection: StompConnection, queue: str
) -> None:
    running: set[bytes] = set()
    done: list[bytes] = []
    most = 0
    release = asyncio.Event()

    async def handler(frame: Frame) -> None:
        nonlocal most
        running.add(frame.body)
        most = max(most, len(running))
        await release.wait()
        running.discard(frame.body)
        done.append(frame.body)

    await connection.subscribe(queue, handler, prefetch=2, headers=QUEUE_ARGS)
    for n in range(5):
        await connection.send(queue, b"m%d" % n, QUEUE_ARGS)
    await assert_eventually(lambda: len(running) == 2)
    await asyncio.sleep(0.3)  # time for a third delivery, which must not come
    assert len(running) == 2
    release.set()
    await assert_eventually(lambda: len(done) == 5)
    assert most == 2
    assert sorted(done) == [b"m0", b"m1", b"m2", b"m3", b"m4"]


async def test_a_send_to_a_missing_exchange_fails_and_the_connection_recovers(
    connection: StompConnection, queue: str
) -> None:
    got: list[bytes] = []

    async def handler(frame: Frame) -> None:
        got.append(frame.body)

    reconnected = asyncio.Event()

    async def on_reconnect() -> None:
        reconnected.set()

    connection.on_reconnect(on_reconnect)
    await connection.subscribe(queue, handler, headers=QUEUE_ARGS)
    missing = f"mcoflow-test-missing-{uuid.uuid4().hex[:8]}"
    with pytest.raises(TransportError, match=f"NOT_FOUND - no exchange '{missing}'"):
        await connection.send(f"/exchange/{missing}/key", b"lost")
    # RabbitMQ closed the connection after its ERROR; the next send waits for the new one
    await connection.send(queue, b"after", QUEUE_ARGS)
    await assert_eventually(lambda: got == [b"after"])
    await asyncio.wait_for(reconnected.wait(), 10)
    assert connection.connected


async def test_a_bad_passcode_is_refused_with_the_brokers_words(server: StompServer) -> None:
    connection = StompConnection([replace(server, passcode="wrong")])
    with pytest.raises(TransportError, match="Access refused for user") as raised:
        await connection.connect()
    assert str(replace(server, passcode="wrong")) in str(raised.value)
    assert "wrong" not in str(raised.value)
    assert not connection.connected
    await connection.close()


async def test_a_dead_server_in_the_list_is_skipped(server: StompServer) -> None:
    dead = replace(server, host="127.0.0.1", port=1)  # nobody listens on port 1
    connection = StompConnection([dead, server])
    try:
        await connection.connect()
        assert connection.connected
    finally:
        await connection.close()


async def test_the_subscription_survives_a_lost_connection(
    connection: StompConnection, queue: str
) -> None:
    got: list[bytes] = []
    reconnections = 0

    async def handler(frame: Frame) -> None:
        got.append(frame.body)

    async def on_reconnect() -> None:
        nonlocal reconnections
        reconnections += 1

    connection.on_reconnect(on_reconnect)
    await connection.subscribe(queue, handler, headers=QUEUE_ARGS)
    await connection.send(queue, b"before", QUEUE_ARGS)
    await assert_eventually(lambda: got == [b"before"])
    assert reconnections == 0  # the first connection is no reconnection

    old = connection._link
    assert old is not None
    old.writer.transport.abort()  # our side of the TCP connection goes
    await assert_eventually(lambda: not connection.connected or connection._link is not old)
    await connection.send(queue, b"after", QUEUE_ARGS)  # waits for the reconnection
    await assert_eventually(lambda: got == [b"before", b"after"])
    await assert_eventually(lambda: reconnections == 1)
    assert connection._link is not old


async def test_heart_beats_are_negotiated_and_keep_an_idle_connection(
    server: StompServer,
) -> None:
    connection = StompConnection([server], heartbeat=0.5)
    await connection.connect()
    try:
        link = connection._link
        assert link is not None
        # we offered 500 ms both ways; RabbitMQ counts heart-beats in whole seconds
        assert link.connected.header("heart-beat") == "1000,1000"
        assert (link.send_every, link.silence) == (1.0, 2.0)
        await asyncio.sleep(3.5)  # idle past the silence limit: beats went both ways
        assert connection._link is link
        assert connection.connected
    finally:
        await connection.close()


async def test_close_is_idempotent_and_ends_sending(server: StompServer, queue: str) -> None:
    connection = StompConnection([server])
    await connection.connect()
    await connection.close()
    await connection.close()
    assert not connection.connected
    with pytest.raises(TransportError, match="closed"):
        await connection.send(queue, b"x", QUEUE_ARGS)
    with pytest.raises(TransportError, match="closed"):
        await connection.connect()


async def test_cancel_waits_for_the_handler_in_flight_which_still_acks(
    server: StompServer, queue: str
) -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    got: list[bytes] = []

    async def slow(frame: Frame) -> None:
        started.set()
        await release.wait()
        got.append(frame.body)

    connection = StompConnection([server])
    await connection.connect()
    try:
        subscription = await connection.subscribe(queue, slow, headers=QUEUE_ARGS)
        await connection.send(queue, b"slow", QUEUE_ARGS)
        await asyncio.wait_for(started.wait(), 10)
        cancelling = asyncio.create_task(subscription.cancel())
        await asyncio.sleep(0.2)
        assert not cancelling.done()
        release.set()
        await asyncio.wait_for(cancelling, 10)
        await subscription.cancel()
        assert got == [b"slow"]

        async def record(frame: Frame) -> None:
            got.append(frame.body)

        # acked after the UNSUBSCRIBE: not given back, so the next consumer gets only "end"
        await connection.subscribe(queue, record, headers=QUEUE_ARGS)
        await connection.send(queue, b"end", QUEUE_ARGS)
        await assert_eventually(lambda: got == [b"slow", b"end"])
        assert connection.connected
    finally:
        await connection.close()


async def test_a_queue_destination_is_a_durable_queue_of_transient_messages(
    connection: StompConnection,
) -> None:
    if shutil.which("rabbitmqctl") is None or os.geteuid() != 0:
        missing("listing queues needs rabbitmqctl and root")
    name = f"mcoflow-test.stomp.{uuid.uuid4().hex[:12]}"
    vhost = connection.servers[0].vhost
    try:
        await connection.send(f"/queue/{name}", b"plain")
        await connection.send(f"/queue/{name}", b"kept", {"persistent": "true"})
        process = await asyncio.create_subprocess_exec(
            "rabbitmqctl",
            "-q",
            "list_queues",
            "-p",
            vhost,
            "name",
            "durable",
            "auto_delete",
            "messages",
            "messages_persistent",
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await process.communicate()
        rows = [line.split("\t") for line in out.decode().splitlines()]
        assert [name, "true", "false", "2", "1"] in rows
    finally:
        await rabbitmqctl("delete_queue", "-p", vhost, name)
