"""Fixtures shared by the rpc tests: broker reachability, keys, transports, fleets.

A test that needs RabbitMQ or NATS is skipped with the reason when the server is
unreachable, except under CI (env var CI set) where that is a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mcoflow.rpc import Request, Signer, Transport, Verifier, transport_from_url
from mcoflow.testing.rpc import DirectClient
from tests.rpc_responder import ActionFunc, HostProfile, Outcome, Responder, ping

AMQP_URL = os.environ.get("MCOFLOW_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
NATS_URL = os.environ.get("MCOFLOW_TEST_NATS_URL", "nats://127.0.0.1:4222")


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), timeout=1.0
        ):
            return True
    except OSError:
        return False


def require_server(name: str, url: str, default_port: int) -> str:
    if not _reachable(url, default_port):
        message = f"{name} is not reachable at {url} (set the URL env var or start it)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI is set, so this is a failure")
        pytest.skip(message)
    return url


def require_amqp() -> str:
    return require_server("RabbitMQ", AMQP_URL, 5672)


def require_broker_restarts() -> str:
    """The RabbitMQ URL, for a test that restarts the broker (rabbitmqctl, as root)."""
    url = require_amqp()
    if shutil.which("rabbitmqctl") is None or os.geteuid() != 0:
        message = "restarting RabbitMQ needs rabbitmqctl and root"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return url


async def rabbitmqctl(*args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl",
        *args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await process.communicate()
    assert process.returncode == 0, f"rabbitmqctl {' '.join(args)}: {stderr.decode()}"


async def queue_depth(url: str, name: str) -> int:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, passive=True)
        count = queue.declaration_result.message_count
        assert count is not None
        return count


async def wait_for_depth(url: str, name: str, depth: int, timeout: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        # a connection refused means the broker is still starting: ask again
        with contextlib.suppress(aio_pika.exceptions.AMQPConnectionError):
            if await queue_depth(url, name) == depth:
                return
        assert asyncio.get_running_loop().time() < deadline, f"{name} never held {depth}"
        await asyncio.sleep(0.1)


def require_nats() -> str:
    return require_server("NATS", NATS_URL, 4222)


@dataclass
class Keys:
    caller: Signer
    host: Signer
    stranger: Signer  # a well-formed key nobody trusts

    @property
    def trusts_caller(self) -> Verifier:
        return Verifier({self.caller.name: self.caller.public_key})

    @property
    def trusts_host(self) -> Verifier:
        return Verifier({self.host.name: self.host.public_key})


@pytest.fixture
def keys() -> Keys:
    return Keys(
        caller=Signer("alice", Ed25519PrivateKey.generate()),
        host=Signer("hosts", Ed25519PrivateKey.generate()),
        stranger=Signer("mallory", Ed25519PrivateKey.generate()),
    )


@pytest.fixture
def collective() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture(
    params=[
        "memory",
        pytest.param("amqp", marks=pytest.mark.rabbitmq),
        pytest.param("nats", marks=pytest.mark.nats),
    ]
)
def transport_url(request: pytest.FixtureRequest) -> str:
    kind = request.param
    if kind == "amqp":
        return require_amqp()
    if kind == "nats":
        return require_nats()
    return f"memory://{uuid.uuid4().hex}"


async def echo(request: Request, host: HostProfile) -> Outcome:
    return Outcome(data={"echo": request.data, "identity": host.identity})


DEFAULT_ACTIONS: Mapping[str, Mapping[str, ActionFunc]] = {
    "rpcutil": {"ping": ping},
    "echo": {"run": echo},
}


class Lab:
    """Transports, responders and clients on one broker URL, all cleaned up after."""

    def __init__(self, url: str, collective: str, keys: Keys) -> None:
        self.url = url
        self.collective = collective
        self.keys = keys
        self.transports: list[Transport] = []
        self.responders: list[Responder] = []
        self.clients: list[DirectClient] = []
        self.reply_queues: list[str] = []

    async def transport(self) -> Transport:
        transport = transport_from_url(self.url)
        await transport.connect()
        self.transports.append(transport)
        return transport

    async def fleet(
        self,
        hosts: Sequence[HostProfile | str],
        *,
        actions: Mapping[str, Mapping[str, ActionFunc]] = DEFAULT_ACTIONS,
        transport: Transport | None = None,
        start: bool = True,
    ) -> Responder:
        profiles = [h if isinstance(h, HostProfile) else HostProfile(identity=h) for h in hosts]
        responder = Responder(
            transport or await self.transport(),
            collective=self.collective,
            signer=self.keys.host,
            verifier=self.keys.trusts_caller,
            actions=actions,
            hosts=profiles,
        )
        if start:
            await responder.start()
        self.responders.append(responder)
        return responder

    async def client(
        self, *, transport: Transport | None = None, reply_to: str | None = None, **kwargs: Any
    ) -> DirectClient:
        reply_to = reply_to or f"mcoflow-test.replies.{uuid.uuid4().hex[:12]}"
        self.reply_queues.append(reply_to)
        client = DirectClient(
            transport or await self.transport(),
            self.keys.caller,
            collective=self.collective,
            reply_to=reply_to,
            verifier=self.keys.trusts_host,
            **kwargs,
        )
        await client.start()
        self.clients.append(client)
        return client

    async def cleanup(self) -> None:
        for client in self.clients:
            await client.close()
        for responder in self.responders:
            await responder.stop()
        identities = {h.identity for r in self.responders for h in r.hosts}
        if self.transports:
            transport = self.transports[0]
            for identity in identities:
                with contextlib.suppress(Exception):
                    await transport.forget_host(identity=identity, collective=self.collective)
        for transport in self.transports:
            await transport.close()
        await drop_reply_queues(self.url, self.reply_queues)


async def drop_reply_queues(url: str, names: Sequence[str]) -> None:
    """Remove the durable reply queues/streams a test created on a real broker."""
    scheme = urlsplit(url).scheme
    if not names or scheme == "memory":
        return
    if scheme.startswith("amqp"):
        import aio_pika

        connection = await aio_pika.connect(url)
        async with connection:
            for name in names:
                channel = await connection.channel()
                with contextlib.suppress(Exception):
                    await channel.queue_delete(name)
                with contextlib.suppress(Exception):
                    await channel.close()
        return
    import nats

    from mcoflow.rpc.transports.nats import _durable_name

    nc = await nats.connect(url)
    js = nc.jetstream()
    for name in names:
        with contextlib.suppress(Exception):
            await js.delete_stream(_durable_name("MCOFLOW_REPLY_", name))
    await nc.close()


@pytest.fixture
async def lab(transport_url: str, collective: str, keys: Keys) -> AsyncIterator[Lab]:
    lab = Lab(transport_url, collective, keys)
    try:
        yield lab
    finally:
        await lab.cleanup()
