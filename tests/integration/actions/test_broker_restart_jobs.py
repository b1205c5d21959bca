"""RabbitMQ restarts while install requests wait in the queues of hosts that are away:
the broker loses them (requests are transient), the executor publishes them again, and
the hosts run each install once when they come back."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mcoflow.actions import Install
from mcoflow.agent.daemon import AgentDaemon
from mcoflow.agent.settings import AgentSettings
from mcoflow.engine import PlanResult
from mcoflow.orchestrator import SIMULATED_KEY, Orchestrator, build_orchestrator, ensure_host_key
from mcoflow.rpc.transports.amqp import host_queue_name
from mcoflow.settings import Settings
from mcoflow.testing import assert_eventually
from tests.embedded import orchestrator_settings
from tests.rpc_fixtures import (
    drop_reply_queues,
    queue_depth,
    rabbitmqctl,
    require_broker_restarts,
    wait_for_depth,
)

pytestmark = pytest.mark.rabbitmq

HOSTS = ("sim-00001", "sim-00002", "sim-00003")


@dataclass
class Site:
    url: str
    settings: Settings
    orchestrator: Orchestrator

    def agent(self) -> AgentDaemon:
        keys = self.settings.keys_dir
        return AgentDaemon(
            AgentSettings(
                simulate_hosts=len(HOSTS),
                collective=self.settings.collective,
                broker_url=self.url,
                trusted_keys=keys / "callers",
                key_file=keys / "host-keys" / f"{SIMULATED_KEY}.key",
                journal_file=self.settings.state_dir / "agent-journal.sqlite",
                fanout_name=f"{self.settings.collective}-fanout",
            )
        )

    def queue(self, identity: str) -> str:
        return host_queue_name(self.settings.collective, identity)


@pytest.fixture
async def site(db_url: str, tmp_path: Path) -> AsyncIterator[Site]:
    url = require_broker_restarts()
    collective = f"t{uuid.uuid4().hex[:12]}"
    settings = orchestrator_settings(
        db_url, tmp_path, transport_url=url, collective=collective, reply_to=f"{collective}.replies"
    )
    ensure_host_key(settings.keys_dir, SIMULATED_KEY)  # before the orchestrator reads hosts/
    site = Site(url, settings, await build_orchestrator(settings))
    try:
        yield site
    finally:
        await rabbitmqctl("start_app")  # whatever happened, leave the broker running
        await site.orchestrator.stop()
        fanout = site.queue(f"{collective}-fanout")
        await drop_reply_queues(url, [*map(site.queue, HOSTS), fanout, settings.reply_to])


async def test_requests_lost_by_a_broker_restart_are_sent_again(site: Site) -> None:
    away = site.agent()
    await away.start()  # the hosts' queues exist ...
    await away.stop()  # ... and the hosts go away
    await site.orchestrator.start()
    world = site.orchestrator.world
    plans = [
        await world.trigger(Install, hostname=host, package="nginx", timeout=120) for host in HOSTS
    ]
    for host in HOSTS:
        await wait_for_depth(site.url, site.queue(host), 1)

    await rabbitmqctl("stop_app")
    await rabbitmqctl("start_app")
    # the executor noticed the restart and sent the waiting requests again, once each
    for host in HOSTS:
        await wait_for_depth(site.url, site.queue(host), 1)
    lost = site.orchestrator.lost_requests
    await assert_eventually(lambda: lost is not None and lost.republished == len(HOSTS))

    back = site.agent()
    await back.start()
    try:
        for plan in plans:
            done = await world.wait(plan.id, timeout=30)
            assert done.result is PlanResult.SUCCESS, done.error
        assert {h: back.fleet.calls[(h, "install")] for h in HOSTS} == dict.fromkeys(HOSTS, 1)
        assert all([await queue_depth(site.url, site.queue(h)) == 0 for h in HOSTS])
    finally:
        await back.stop()


async def test_requests_lost_while_the_executor_was_down_are_sent_again_at_its_start(
    site: Site,
) -> None:
    away = site.agent()
    await away.start()
    await away.stop()
    await site.orchestrator.start()
    plan = await site.orchestrator.world.trigger(
        Install, hostname=HOSTS[0], package="nginx", timeout=120
    )
    await wait_for_depth(site.url, site.queue(HOSTS[0]), 1)
    await site.orchestrator.stop()

    await rabbitmqctl("stop_app")
    await rabbitmqctl("start_app")
    await wait_for_depth(site.url, site.queue(HOSTS[0]), 0)  # lost with the restart
    site.orchestrator = await build_orchestrator(site.settings)
    await site.orchestrator.start()
    await wait_for_depth(site.url, site.queue(HOSTS[0]), 1)
    assert site.orchestrator.lost_requests is not None
    assert site.orchestrator.lost_requests.republished == 1

    back = site.agent()
    await back.start()
    try:
        done = await site.orchestrator.world.wait(plan.id, timeout=30)
        assert done.result is PlanResult.SUCCESS, done.error
        assert back.fleet.calls[(HOSTS[0], "install")] == 1
    finally:
        await back.stop()
