"""Fixtures for the agent's unit tests: keys, a memory broker, a daemon, a reply sink."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mcoflow.agent.daemon import AgentDaemon
from mcoflow.agent.providers import SimulatedFleet, SimulationSettings
from mcoflow.agent.settings import AgentSettings
from mcoflow.rpc.envelope import open_replies, seal
from mcoflow.rpc.filters import Filter
from mcoflow.rpc.messages import Reply, Request, build_request
from mcoflow.rpc.security import Signer, Verifier, generate_keypair, load_public_key
from mcoflow.rpc.transports.memory import MemoryBroker, MemoryTransport
from mcoflow.testing import assert_eventually

REPLY_TO = "test-replies"


@dataclass
class Keys:
    folder: Path
    caller: Signer
    intruder: Signer
    host: Signer
    reply_verifier: Verifier
    trusted: Path


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    folder = tmp_path / "keys"
    trusted = tmp_path / "trusted"
    trusted.mkdir()
    caller_key, caller_pub = generate_keypair(folder, "ops")
    intruder_key, _ = generate_keypair(folder, "intruder")
    host_key, host_pub = generate_keypair(folder, "host")
    (trusted / "ops.pub").write_bytes(caller_pub.read_bytes())
    return Keys(
        folder=folder,
        caller=Signer.from_file(caller_key),
        intruder=Signer.from_file(intruder_key, "intruder"),
        host=Signer.from_file(host_key),
        reply_verifier=Verifier({"host": load_public_key(host_pub)}),
        trusted=trusted,
    )


def make_request(
    agent: str = "rpcutil",
    action: str = "ping",
    data: dict[str, Any] | None = None,
    *,
    caller: str = "ops",
    filter: Filter | None = None,
    ttl: float = 60.0,
    now: float | None = None,
    id: str | None = None,
    collective: str = "mcoflow",
) -> Request:
    return build_request(
        sender="test-client",
        caller=caller,
        collective=collective,
        agent=agent,
        action=action,
        data=data,
        filter=filter,
        ttl=ttl,
        reply_to=REPLY_TO,
        id=id,
        now=now,
    )


@dataclass
class Harness:
    """A daemon on a memory broker, a client transport, and the replies it got."""

    keys: Keys
    broker: MemoryBroker
    client: MemoryTransport
    daemon: AgentDaemon
    fleet: SimulatedFleet
    replies: list[Reply] = field(default_factory=list)

    async def send(
        self,
        request: Request,
        *,
        signer: Signer | None = None,
        identities: list[str] | None = None,
        envelope: bytes | None = None,
    ) -> None:
        body = envelope if envelope is not None else seal(request, signer or self.keys.caller)
        await self.client.publish_request(
            body,
            collective=request.collective,
            agent=request.agent,
            identities=identities if identities is not None else list(self.daemon.hosts),
        )

    async def broadcast(self, request: Request) -> None:
        await self.client.publish_request(
            seal(request, self.keys.caller),
            collective=request.collective,
            agent=request.agent,
            identities=None,
        )

    def replies_to(self, request: Request) -> list[Reply]:
        return [r for r in self.replies if r.request_id == request.id]

    async def call(self, request: Request, *, count: int = 1) -> list[Reply]:
        await self.send(request)
        await assert_eventually(lambda: _at_least(self.replies_to(request), count), timeout=5.0)
        return self.replies_to(request)


def _at_least(replies: list[Reply], count: int) -> None:
    assert len(replies) >= count, f"{len(replies)} replies, waiting for {count}"


HarnessFactory = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def harness_factory(keys: Keys, tmp_path: Path) -> AsyncIterator[HarnessFactory]:
    started: list[Harness] = []
    broker = MemoryBroker()

    async def factory(*, simulation: SimulationSettings | None = None, **settings: Any) -> Harness:
        values: dict[str, Any] = {
            "identity": "web1",
            "key_file": keys.folder / "host.key",
            "trusted_keys": keys.trusted,
            "journal_file": tmp_path / "journal.sqlite",
            "package_provider": "simulated",
            "service_provider": "simulated",
            "facts": {"role": "web", "cpus": 4},
            "classes": ["webserver"],
        }
        values.update(settings)
        config = AgentSettings(**values)
        fleet = SimulatedFleet(simulation or SimulationSettings())
        transport = MemoryTransport(broker)
        await transport.connect()
        daemon = AgentDaemon(config, transport=transport, fleet=fleet)
        client = MemoryTransport(broker)
        await client.connect()
        harness = Harness(keys, broker, client, daemon, fleet)

        async def collect(envelope: bytes) -> None:
            # A daemon serving several identities batches replies that are ready together.
            harness.replies.extend(open_replies(envelope, keys.reply_verifier))

        await client.subscribe_replies(reply_to=REPLY_TO, handler=collect)
        await daemon.start()
        started.append(harness)
        return harness

    yield factory
    for harness in started:
        await harness.daemon.stop()
        await harness.client.close()
        await harness.daemon.transport.close()


@pytest.fixture
async def harness(harness_factory: HarnessFactory) -> Harness:
    return await harness_factory()


@pytest.fixture(name="make_request")
def make_request_fixture() -> Callable[..., Request]:
    return make_request
