"""The agent daemon: serves one identity (a real host) or many (simulated hosts).

Subscriptions. One identity: one host subscription (its direct queue, bound to the
broadcasts of the agents it serves). Several identities (simulated hosts): each
identity subscribes to its direct queue only, and one extra "fanout" subscription
receives every broadcast once for the whole process, which then applies the filter
for each identity itself. A broadcast to 10,000 simulated hosts is thus one message
from the broker (verified and parsed once), not 10,000 copies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence

from mcoflow.agent.dispatcher import Dispatcher
from mcoflow.agent.facts import Facts, builtin_facts, load_classes_file, load_facts_file
from mcoflow.agent.journal import Journal
from mcoflow.agent.plugins import Agent, HostContext, make_agents
from mcoflow.agent.policy import Policy
from mcoflow.agent.providers import (
    PackageChoice,
    PackageProvider,
    ServiceChoice,
    ServiceProvider,
    SimulatedFleet,
    detect_package_provider,
    detect_service_provider,
)
from mcoflow.agent.settings import AgentSettings
from mcoflow.agent.trust import TrustWatcher
from mcoflow.rpc.cluster import ClusterOptions
from mcoflow.rpc.security import ReplayGuard, Signer
from mcoflow.rpc.tls import TlsOptions
from mcoflow.rpc.transport import Subscription, Transport
from mcoflow.rpc.transports import transport_from_url

log = logging.getLogger("mcoflow.agent")

PRUNE_INTERVAL = 3600.0
SUBSCRIBE_CONCURRENCY = 64


class AgentDaemon:
    def __init__(
        self,
        config: AgentSettings,
        *,
        transport: Transport | None = None,
        fleet: SimulatedFleet | None = None,
    ) -> None:
        self.config = config
        self._owns_transport = transport is None
        self.transport = (
            transport
            if transport is not None
            else transport_from_url(
                config.broker_url,
                tls=TlsOptions.from_settings(config),
                cluster=ClusterOptions.from_settings(config),
            )
        )
        self.fleet = fleet if fleet is not None else SimulatedFleet(config.simulation)
        self.agents: dict[str, Agent] = make_agents(list(config.agents))
        self.policy = (
            Policy.from_file(config.policy_file) if config.policy_file else Policy.allow_all()
        )
        # the caller keys, read again when they change (rotation, revocation)
        self.trust = TrustWatcher(config.trusted_keys)
        self.verifier = self.trust.verifier
        if not self.verifier.names:
            log.warning("no trusted keys in %s: every request will be refused", config.trusted_keys)
        self.signer = Signer.from_file(config.key_file, config.key_name)
        self.journal = Journal(
            config.journal_file,
            retention=config.journal_retention,
            # simulated providers change nothing real: no fsync per request for them
            synced=config.changes_the_host,
        )
        identities = config.host_identities()
        self.hosts: dict[str, HostContext] = self._make_hosts(identities)
        self.dispatcher = Dispatcher(
            verifier=self.verifier,
            signer=self.signer,
            agents=self.agents,
            publish=self._publish,
            policy=self.policy,
            journal=self.journal,
            # Ids are remembered per identity: room for a few hundred requests each.
            replay_guard=ReplayGuard(
                clock_skew=config.clock_skew, max_entries=max(1_000_000, 200 * len(identities))
            ),
            reply_batch=config.reply_batch_size(),
            refresh_trust=self.trust.on_unknown_key,
        )
        self._subscriptions: list[Subscription] = []
        self._pruner: asyncio.Task[None] | None = None
        self._trust_watch: asyncio.Task[None] | None = None
        self._stats_writer: asyncio.Task[None] | None = None

    # -- set-up ---------------------------------------------------------------------

    def _make_hosts(self, identities: Sequence[str]) -> dict[str, HostContext]:
        config = self.config
        base: Facts = builtin_facts()
        if config.facts_file is not None:
            base.update(load_facts_file(config.facts_file))
        base.update(config.facts)
        classes = config.classes
        if config.classes_file is not None:
            classes = tuple(dict.fromkeys((*load_classes_file(config.classes_file), *classes)))
        served = tuple(self.agents)
        single = len(identities) == 1
        package = None if not single else self._package_provider()
        service = None if not single else self._service_provider()
        hosts = {}
        for identity in identities:
            facts = dict(base) if single else {**base, "hostname": identity}
            if config.simulate_hosts:  # the simulation's own facts and classes of a host
                facts.update(config.simulation.facts_of(identity))
            facts["identity"] = identity
            hosts[identity] = HostContext(
                identity=identity,
                collective=config.collective,
                facts=facts,
                classes=(
                    tuple(dict.fromkeys((*classes, *config.simulation.classes_of(identity))))
                    if config.simulate_hosts
                    else classes
                ),
                agents=served,
                package_provider=package if single else self._simulated_package(identity),
                service_provider=service if single else self._simulated_service(identity),
            )
        return hosts

    def _package_provider(self) -> PackageProvider | None:
        choice = self.config.package_provider
        if choice is PackageChoice.SIMULATED:
            return self.fleet.package_provider(self.config.host_identities()[0])
        return detect_package_provider(choice, time_limit=self.config.command_timeout)

    def _service_provider(self) -> ServiceProvider | None:
        choice = self.config.service_provider
        if choice is ServiceChoice.SIMULATED:
            return self.fleet.service_provider(self.config.host_identities()[0])
        return detect_service_provider(choice, time_limit=min(self.config.command_timeout, 300.0))

    def _simulated_package(self, identity: str) -> PackageProvider | None:
        if self.config.package_provider is PackageChoice.NONE:
            return None
        return self.fleet.package_provider(identity)

    def _simulated_service(self, identity: str) -> ServiceProvider | None:
        if self.config.service_provider is ServiceChoice.NONE:
            return None
        return self.fleet.service_provider(identity)

    # -- running ----------------------------------------------------------------------

    async def _publish(self, envelope: bytes, reply_to: str) -> None:
        await self.transport.publish_reply(envelope, reply_to=reply_to)

    async def start(self) -> None:
        if self._owns_transport or not self.transport.connected:
            await self.transport.connect()
        pruned = self.journal.prune()
        if pruned:
            log.info("journal: forgot %d requests past retention", pruned)
        collective = self.config.collective
        hosts = list(self.hosts.values())
        served = list(self.agents)
        if len(hosts) == 1:
            host = hosts[0]
            self._subscriptions.append(
                await self.transport.subscribe_host(
                    identity=host.identity,
                    collective=collective,
                    agents=served,
                    handler=lambda envelope: self.dispatcher.handle(host, envelope),
                )
            )
        else:
            gate = asyncio.Semaphore(SUBSCRIBE_CONCURRENCY)

            async def direct(host: HostContext) -> Subscription:
                async with gate:
                    return await self.transport.subscribe_host(
                        identity=host.identity,
                        collective=collective,
                        agents=(),
                        handler=lambda envelope: self.dispatcher.handle(host, envelope),
                    )

            self._subscriptions.extend(await asyncio.gather(*(direct(h) for h in hosts)))
            self._subscriptions.append(
                await self.transport.subscribe_host(
                    identity=self.config.fanout_name,
                    collective=collective,
                    agents=served,
                    handler=lambda envelope: self.dispatcher.handle_fanout(hosts, envelope),
                )
            )
        self._pruner = asyncio.create_task(self._prune_forever(), name="journal-pruner")
        self._trust_watch = asyncio.create_task(
            self.trust.watch(self.config.trusted_keys_reload), name="trusted-keys"
        )
        if self.fleet.settings.stats_file is not None:
            self._write_stats()
            self._stats_writer = asyncio.create_task(self._write_stats_forever(), name="sim-stats")
        log.info(
            "agent ready: %d identit%s in collective %s, agents %s, providers %s/%s",
            len(hosts),
            "y" if len(hosts) == 1 else "ies",
            collective,
            ",".join(served),
            _name(hosts[0].package_provider),
            _name(hosts[0].service_provider),
        )

    async def stop(self, grace: float | None = None) -> None:
        """Let running actions finish (up to ``grace`` s, a package install must not be
        killed half way), then unsubscribe and close."""
        await self.dispatcher.drain(self.config.shutdown_grace if grace is None else grace)
        for task in (self._pruner, self._stats_writer, self._trust_watch):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._pruner = self._stats_writer = self._trust_watch = None
        self._write_stats()
        for subscription in self._subscriptions:
            with contextlib.suppress(Exception):
                await subscription.cancel()
        self._subscriptions.clear()
        if self._owns_transport:
            await self.transport.close()
        self.journal.close()
        log.info("agent stopped")

    def reload_trusted_keys(self) -> None:
        """SIGHUP: read the trusted keys again now."""
        log.info("SIGHUP: reading the trusted keys in %s again", self.config.trusted_keys)
        self.trust.check(force=True)

    async def _write_stats_forever(self) -> None:
        """Simulated hosts: the calls per identity, for benchmarks and tests outside."""
        settings = self.fleet.settings
        assert settings.stats_file is not None
        written = self.fleet.changes
        while True:
            await asyncio.sleep(settings.stats_interval)
            if self.fleet.changes != written:
                written = self.fleet.changes
                self._write_stats()

    def _write_stats(self) -> None:
        path = self.fleet.settings.stats_file
        if path is None:
            return
        try:
            self.fleet.write_stats(path)
        except OSError as exc:
            log.warning("cannot write simulation stats to %s: %s", path, exc)

    async def _prune_forever(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_INTERVAL)
            self.journal.prune()


def _name(provider: PackageProvider | ServiceProvider | None) -> str:
    return provider.name if provider is not None else "none"


async def run_agent(
    config: AgentSettings,
    *,
    transport: Transport | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run the agent until SIGTERM/SIGINT (or until ``stop`` is set), then shut down
    cleanly; SIGHUP reads the trusted keys again."""
    stop = stop if stop is not None else asyncio.Event()
    loop = asyncio.get_running_loop()
    daemon = AgentDaemon(config, transport=transport)
    installed: list[signal.Signals] = []
    handlers = {
        signal.SIGTERM: stop.set,
        signal.SIGINT: stop.set,
        signal.SIGHUP: daemon.reload_trusted_keys,
    }
    for signum, handler in handlers.items():
        try:
            loop.add_signal_handler(signum, handler)
            installed.append(signum)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread (e.g. embedded in another program): rely on `stop`
    try:
        await daemon.start()
        await stop.wait()
    finally:
        await daemon.stop()
        for signum in installed:
            loop.remove_signal_handler(signum)
