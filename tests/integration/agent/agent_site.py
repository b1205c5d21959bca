"""Helpers for the agent daemon over the real brokers: RabbitMQ (amqp) and NATS.

A broker that cannot be reached skips its tests with the reason, except when the CI
environment variable is set: there it is a failure (see tests/rpc_fixtures.py).
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mcoflow.agent.daemon import AgentDaemon
from mcoflow.agent.providers import SimulatedFleet
from mcoflow.agent.settings import AgentSettings
from mcoflow.rpc.security import Signer, Verifier, generate_keypair, load_public_key
from mcoflow.rpc.transports import transport_from_url
from mcoflow.testing.rpc import DirectClient
from tests.rpc_fixtures import drop_reply_queues, require_amqp, require_nats


@pytest.fixture(
    params=[
        pytest.param("amqp", marks=pytest.mark.rabbitmq),
        pytest.param("nats", marks=pytest.mark.nats),
    ]
)
def broker_url(request: pytest.FixtureRequest) -> str:
    return require_amqp() if request.param == "amqp" else require_nats()


@dataclass
class Site:
    """Keys, a collective of its own, and the daemons and clients a test started."""

    url: str
    folder: Path
    collective: str = field(default_factory=lambda: f"agt{uuid.uuid4().hex[:10]}")
    daemons: list[AgentDaemon] = field(default_factory=list)
    clients: list[DirectClient] = field(default_factory=list)
    reply_queues: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        keys, trusted = self.folder / "keys", self.folder / "trusted"
        trusted.mkdir(parents=True)
        _, caller_pub = generate_keypair(keys, "ops")
        generate_keypair(keys, "mallory")
        _, host_pub = generate_keypair(keys, "host")
        (trusted / "ops.pub").write_bytes(caller_pub.read_bytes())
        self.trusted = trusted
        self.host_verifier = Verifier({"host": load_public_key(host_pub)})

    def signer(self, name: str) -> Signer:
        return Signer.from_file(self.folder / "keys" / f"{name}.key")

    async def daemon(self, **settings: Any) -> AgentDaemon:
        values: dict[str, Any] = {
            "identity": f"host-{uuid.uuid4().hex[:8]}",
            "collective": self.collective,
            "broker_url": self.url,
            "key_file": self.folder / "keys" / "host.key",
            "trusted_keys": self.trusted,
            "journal_file": self.folder / "journal.sqlite",
            "package_provider": "simulated",
            "service_provider": "simulated",
            "fanout_name": f"fanout-{uuid.uuid4().hex[:8]}",
        }
        values.update(settings)
        config = AgentSettings(**values)
        daemon = AgentDaemon(config, fleet=SimulatedFleet(config.simulation))
        await daemon.start()
        self.daemons.append(daemon)
        return daemon

    async def client(self, signer: str = "ops") -> DirectClient:
        transport = transport_from_url(self.url)
        await transport.connect()
        reply_to = f"mcoflow-test.agent-replies.{uuid.uuid4().hex[:10]}"
        self.reply_queues.append(reply_to)
        client = DirectClient(
            transport,
            self.signer(signer),
            collective=self.collective,
            reply_to=reply_to,
            verifier=self.host_verifier,
        )
        await client.start()
        self.clients.append(client)
        return client

    async def cleanup(self) -> None:
        for client in self.clients:
            await client.close()
        identities = {i for d in self.daemons for i in d.hosts} | {
            d.config.fanout_name for d in self.daemons
        }
        for daemon in self.daemons:
            with contextlib.suppress(Exception):
                await daemon.stop()
        if self.clients:
            transport = self.clients[0].transport
            for identity in identities:
                with contextlib.suppress(Exception):
                    await transport.forget_host(identity=identity, collective=self.collective)
        for client in self.clients:
            await client.transport.close()
        await drop_reply_queues(self.url, self.reply_queues)
