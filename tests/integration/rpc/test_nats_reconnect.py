"""NATS reconnections: the transport tells its listeners (the orchestrator then publishes
again what still waits for an answer), and its recovery always republishes, since it
cannot tell which broadcasts the hosts missed meanwhile.

The connection is cut by a TCP relay in front of the real server, so the server (shared
with other tests) is not restarted."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

import pytest

from mcoflow.rpc.transports.nats import NatsTransport
from mcoflow.testing import assert_eventually
from tests.rpc_fixtures import require_nats

pytestmark = pytest.mark.nats


class Relay:
    """Forwards loopback connections to the server; ``cut`` closes the current ones."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.writers: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers |= {writer, up_writer}
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()
            self.writers.discard(writer)

    def cut(self) -> None:
        for writer in list(self.writers):
            writer.transport.abort()

    async def close(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def test_a_reconnection_calls_the_listeners_and_the_recovery_republishes() -> None:
    parts = urlsplit(require_nats())
    relay = Relay(parts.hostname or "127.0.0.1", parts.port or 4222)
    port = await relay.start()
    transport = NatsTransport(f"nats://127.0.0.1:{port}")
    calls: list[str] = []

    async def republish() -> None:
        calls.append("republish")

    async def reconnected() -> None:
        calls.append("reconnected")
        await transport.recover_lost_requests(republish)

    try:
        await transport.connect()
        assert await transport.recover_lost_requests(republish) is True  # at a start
        forget = transport.on_reconnect(reconnected)
        relay.cut()
        await assert_eventually(
            lambda: calls == ["republish", "reconnected", "republish"], timeout=10
        )
        assert transport.connected
        forget()
        relay.cut()
        await assert_eventually(lambda: transport.connected is False, timeout=5)
        await assert_eventually(lambda: transport.connected, timeout=10)
        await asyncio.sleep(0.2)  # a listener still registered would have run by now
        assert calls == ["republish", "reconnected", "republish"]
    finally:
        with contextlib.suppress(Exception):
            await transport.close()
        await relay.close()
