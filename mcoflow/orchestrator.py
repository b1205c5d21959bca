"""Wiring one orchestrator process: store, executor, broker client, reply router, and
in the embedded default an in-process agent for this machine (plus simulated hosts).

Key layout under ``keys_dir`` (``mcoflow keys init`` creates it):
    orchestrator/<caller>.key   signs requests        callers/<caller>.pub  agents trust these
    hosts/<host>.pub            replies verified      host-keys/<host>.key  embedded agents only

The signing key is always orchestrator/<caller>.key: `mcoflow keys rotate` replaces the
file, and a running process signs with the new key within a second (FileSigner).
Rotation, retirement and revocation of caller keys: mcoflow.caller_keys.
"""

from __future__ import annotations

import logging
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcoflow.actions.bridge import LostRequests, ReplyRouter, RpcPublisher
from mcoflow.actions.inventory import use_inventory
from mcoflow.actions.jobs import Jobs
from mcoflow.caller_keys import publish_signing_key
from mcoflow.engine import Executor, Store, World
from mcoflow.recurring.scheduler import Scheduler
from mcoflow.rpc.client import RpcClient
from mcoflow.rpc.cluster import ClusterOptions
from mcoflow.rpc.key_files import FileSigner
from mcoflow.rpc.mcollective.options import McollectiveOptions
from mcoflow.rpc.security import generate_keypair
from mcoflow.rpc.tls import TlsOptions
from mcoflow.rpc.transport import Transport
from mcoflow.rpc.transports import transport_from_url
from mcoflow.settings import Settings

log = logging.getLogger("mcoflow.orchestrator")

SIMULATED_KEY = "simulated"


def _key_pair(keys_dir: Path, private_dir: str, public_dir: str, name: str) -> Path:
    """``private_dir/<name>.key``, created on first use, with its public half copied to
    ``public_dir/<name>.pub`` where the other side reads it."""
    key = keys_dir / private_dir / f"{name}.key"
    if not key.exists():
        generate_keypair(key.parent, name)
    public = keys_dir / public_dir
    public.mkdir(parents=True, exist_ok=True)
    pub = public / f"{name}.pub"
    if not pub.exists():
        shutil.copyfile(key.with_suffix(".pub"), pub)
    return key


def ensure_caller_key(keys_dir: Path, caller: str) -> Path:
    """The orchestrator's signing key, created on first use; its public half is in
    callers/ (agents trust it) unless it is there already under another name."""
    key = keys_dir / "orchestrator" / f"{caller}.key"
    if not key.exists():
        generate_keypair(key.parent, caller)
    publish_signing_key(keys_dir, caller)
    return key


def ensure_host_key(keys_dir: Path, name: str) -> Path:
    """A host key pair for an agent; the orchestrator trusts hosts/<name>.pub."""
    return _key_pair(keys_dir, "host-keys", "hosts", name)


@dataclass
class Orchestrator:
    settings: Settings
    store: Store
    world: World
    executor: Executor
    transport: Transport
    client: RpcClient
    router: ReplyRouter
    agents: list[Any] = field(default_factory=list)
    lost_requests: LostRequests | None = None
    # fires the recurring jobs' occurrences (every executor process runs one)
    scheduler: Scheduler | None = None
    _forget_listener: Callable[[], None] | None = None

    async def start(self) -> None:
        await self.transport.connect()
        for agent in self.agents:
            await agent.start()
        self.router.start()
        await self.client.start()
        # the executor's tasks, created now, inherit it: Discover reads what to expect
        use_inventory(self.store)
        await self.executor.start()
        self.lost_requests = lost = LostRequests(
            self.transport, self.store, self.executor.wake_outbox
        )
        self._forget_listener = self.transport.on_reconnect(lost.check)
        await lost.at_start()
        if self.scheduler is not None:
            self.scheduler.start()

    async def stop(self) -> None:
        if self.scheduler is not None:
            await self.scheduler.stop()
        if self._forget_listener is not None:
            self._forget_listener()
            self._forget_listener = None
        await self.executor.stop()
        await self.client.close()
        await self.router.stop()
        for agent in self.agents:
            await agent.stop()
        await self.transport.close()
        await self.store.close()

    def broker_state(self) -> str:
        kind = self.settings.transport_url.split(":", 1)[0]
        return f"{kind}: {'connected' if self.transport.connected else 'disconnected'}"


async def build_orchestrator(
    settings: Settings,
    *,
    local_agent: bool = False,
    simulate_hosts: int = 0,
    simulation: dict[str, Any] | None = None,
) -> Orchestrator:
    """Everything one orchestrator process runs (not started yet)."""
    keys = settings.keys_dir
    signer = FileSigner(ensure_caller_key(keys, settings.caller), settings.caller)
    if local_agent:
        ensure_host_key(keys, socket.gethostname())
    if simulate_hosts:
        ensure_host_key(keys, SIMULATED_KEY)
    (keys / "hosts").mkdir(parents=True, exist_ok=True)
    from mcoflow.agent.trust import TrustWatcher  # here: the agent package loads late
    from mcoflow.templates import use_templates_dir  # registers the template actions too

    use_templates_dir(settings.templates_dir)

    # a host added to hosts/ while this process runs is trusted from its first reply
    host_keys = TrustWatcher(keys / "hosts")
    store = Store(settings.database_url)
    await store.upgrade()
    transport = transport_from_url(
        settings.transport_url,
        tls=TlsOptions.from_settings(settings),
        cluster=ClusterOptions.from_settings(settings),
        mcollective=McollectiveOptions.from_settings(settings),
    )
    router = ReplyRouter(store)
    client = RpcClient(
        transport,
        signer,
        collective=settings.collective,
        reply_to=settings.reply_to,
        verifier=host_keys.verifier,
        on_reply=router.on_reply,
        refresh_trust=host_keys.on_unknown_key,
    )
    executor = Executor(
        store,
        publisher=RpcPublisher(client),
        batch_size=settings.batch_size,
        poll_interval=settings.poll_interval,
        heartbeat_interval=settings.heartbeat_interval,
        dead_after=settings.dead_after,
        retention=settings.retention_days * 86400,
    )
    router.on_delivered = executor.wake_steps
    agents = []
    if local_agent or simulate_hosts:
        from mcoflow.agent.daemon import AgentDaemon
        from mcoflow.agent.settings import AgentSettings

        common: dict[str, Any] = {
            "collective": settings.collective,
            "broker_url": settings.transport_url,
            "trusted_keys": keys / "callers",
        }
        if local_agent:
            host = socket.gethostname()
            agents.append(
                AgentDaemon(
                    AgentSettings(
                        identity=host,
                        key_file=keys / "host-keys" / f"{host}.key",
                        journal_file=settings.state_dir / "agent-journal.sqlite",
                        **common,
                    ),
                    transport=transport,
                )
            )
        if simulate_hosts:
            agents.append(
                AgentDaemon(
                    AgentSettings(
                        simulate_hosts=simulate_hosts,
                        key_file=keys / "host-keys" / "simulated.key",
                        journal_file=settings.state_dir / "simulated-journal.sqlite",
                        simulation=simulation or {},
                        fanout_name=f"{socket.gethostname()}-sim",
                        **common,
                    ),
                    transport=transport,
                )
            )
    world = World(store, executor)
    scheduler = Scheduler(
        Jobs(world, check_hosts=not settings.allow_unknown_hosts, transport=type(transport))
    )
    return Orchestrator(
        settings, store, world, executor, transport, client, router, agents, scheduler=scheduler
    )
