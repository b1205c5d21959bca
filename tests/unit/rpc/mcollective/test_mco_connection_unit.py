"""The STOMP connection without a broker: heart-beat rules, ERROR attribution, the server
list, and a fake server that falls silent to show a dead link is noticed and replaced."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import cast

import pytest

from mcoflow.rpc.mcollective.connection import StompConnection, StompServer
from mcoflow.rpc.mcollective.stomp import HEARTBEAT, Frame, FrameReader, encode_frame
from mcoflow.rpc.mcollective.stomp_link import Link, LinkLost, error_text, negotiate_heartbeat
from mcoflow.rpc.transport import TransportError
from mcoflow.testing import assert_eventually


@pytest.mark.parametrize(
    ("ours", "theirs", "expected"),
    [
        (10.0, "5000,20000", (20.0, 20.0)),  # the slower of the two wins, each way
        (10.0, "0,0", (0.0, 0.0)),
        (1.0, "3000,0", (0.0, 6.0)),  # it beats, but wants none from us
        (0.0, "1000,1000", (0.0, 0.0)),
        (1.0, "", (0.0, 0.0)),  # no header: no heart-beats
        (1.0, "x,y", (0.0, 0.0)),
    ],
)
def test_heart_beat_negotiation(ours: float, theirs: str, expected: tuple[float, float]) -> None:
    assert negotiate_heartbeat(ours, theirs) == expected


def test_error_text_joins_the_message_and_the_body() -> None:
    frame = Frame("ERROR", {"message": "not_found"}, b"NOT_FOUND - no exchange 'x'\n")
    assert error_text(frame) == "not_found: NOT_FOUND - no exchange 'x'"
    assert error_text(Frame("ERROR", {"message": "Bad CONNECT"})) == "Bad CONNECT"
    assert error_text(Frame("ERROR")) == "ERROR"


def test_a_server_shows_no_passcode() -> None:
    server = StompServer("mq1", login="mco", passcode="s3cret", vhost="/mcollective")
    assert str(server) == "stomp://mco@mq1:61613 vhost /mcollective"
    assert "s3cret" not in repr(server)


def test_a_connection_needs_a_server() -> None:
    with pytest.raises(ValueError, match="at least one server"):
        StompConnection([])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_connect_names_every_server_that_failed() -> None:
    ports = [_free_port(), _free_port()]
    connection = StompConnection([StompServer("127.0.0.1", port) for port in ports])
    with pytest.raises(TransportError, match="no STOMP server accepted") as raised:
        await connection.connect()
    for port in ports:
        assert f"127.0.0.1:{port}" in str(raised.value)
    assert not connection.connected


class _Writer:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        pass


async def test_an_error_goes_to_the_frame_whose_exchange_it_names() -> None:
    writer = _Writer()
    link = Link(
        "fake",
        asyncio.StreamReader(),
        cast(asyncio.StreamWriter, writer),
        FrameReader(),
        Frame("CONNECTED"),
        0.0,
        0.0,
        [],
    )
    good = asyncio.create_task(link.request("SEND", {"destination": "/exchange/there/k"}))
    bad = asyncio.create_task(link.request("SEND", {"destination": "/exchange/gone/k"}))
    await asyncio.sleep(0)
    error = Frame("ERROR", {"message": "not_found"}, b"NOT_FOUND - no exchange 'gone'")
    assert link.blame(error, TransportError("gone"))
    with pytest.raises(TransportError, match="gone"):
        await bad
    assert not good.done()
    assert link.drop("test over")
    assert not link.drop("again")
    with pytest.raises(LinkLost, match="test over"):
        await good
    assert [f.command for f in FrameReader().feed(bytes(writer.data))] == ["SEND", "SEND"]


class _FakeBroker:
    """Answers CONNECT (offering 100 ms heart-beats) and receipts; the first connection
    then falls silent, later ones beat."""

    def __init__(self) -> None:
        self.connections = 0
        self.frames: list[tuple[int, Frame]] = []
        self.server: asyncio.Server | None = None

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        framer = FrameReader()
        beating: asyncio.Task[None] | None = None
        try:
            while data := await reader.read(4096):
                for frame in framer.feed(data):
                    self.frames.append((number, frame))
                    if frame.command == "CONNECT":
                        writer.write(encode_frame("CONNECTED", {"heart-beat": "100,100"}))
                        if number > 1:
                            beating = asyncio.create_task(self._beat(writer))
                    elif receipt := frame.header("receipt"):
                        writer.write(encode_frame("RECEIPT", {"receipt-id": receipt}))
        finally:
            if beating is not None:
                beating.cancel()
            writer.close()

    @staticmethod
    async def _beat(writer: asyncio.StreamWriter) -> None:
        while True:
            writer.write(HEARTBEAT)
            await asyncio.sleep(0.05)


@pytest.fixture
async def broker() -> AsyncIterator[tuple[_FakeBroker, int]]:
    fake = _FakeBroker()
    server = await asyncio.start_server(fake.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield fake, port
        server.close()


async def test_a_silent_server_is_dropped_and_the_subscription_made_again(
    broker: tuple[_FakeBroker, int],
) -> None:
    fake, port = broker
    connection = StompConnection([StompServer("127.0.0.1", port)], heartbeat=0.1)
    reconnections = 0

    async def on_reconnect() -> None:
        nonlocal reconnections
        reconnections += 1

    async def handler(frame: Frame) -> None:
        pass

    connection.on_reconnect(on_reconnect)
    try:
        await connection.connect()
        link = connection._link
        assert link is not None
        assert (link.send_every, link.silence) == (0.1, 0.2)
        await connection.subscribe("/queue/q", handler, prefetch=7)
        await assert_eventually(lambda: reconnections == 1, timeout=5)
        subscribes = [(n, f) for n, f in fake.frames if f.command == "SUBSCRIBE"]
        assert [n for n, _ in subscribes] == [1, 2]
        assert subscribes[0][1].headers["id"] == subscribes[1][1].headers["id"]
        assert subscribes[1][1].headers["prefetch-count"] == "7"
        connect = next(f for _, f in fake.frames if f.command == "CONNECT")
        assert connect.headers["heart-beat"] == "100,100"
        assert connect.headers["accept-version"] == "1.2"
        second = connection._link
        await asyncio.sleep(0.5)  # the beating server is kept: no third connection
        assert connection._link is second
        assert fake.connections == 2
    finally:
        await connection.close()
    assert [f.command for n, f in fake.frames if n == 2][-1] == "DISCONNECT"
