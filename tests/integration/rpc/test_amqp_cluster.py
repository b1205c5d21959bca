"""RabbitMQ as a cluster would be used (issue 20 item 2), on the real broker: with
``amqp_queue_type: quorum`` the durable queues (hosts', the shared replies') are quorum
queues and a job runs through them; a URL listing several nodes connects to the first
that answers. A single node accepts quorum queues, so no cluster is started; the
queues are this test's own (a collective of its own) and deleted after it."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from pathlib import Path

import pytest
from yarl import URL

from mcoflow.actions import Install
from mcoflow.agent.daemon import AgentDaemon
from mcoflow.agent.settings import AgentSettings
from mcoflow.engine import PlanResult
from mcoflow.orchestrator import SIMULATED_KEY, build_orchestrator, ensure_host_key
from mcoflow.rpc.cluster import ClusterOptions, QueueType
from mcoflow.rpc.transports import transport_from_url
from mcoflow.rpc.transports.amqp import host_queue_name
from tests.conftest import missing
from tests.embedded import orchestrator_settings
from tests.rpc_fixtures import drop_reply_queues, require_amqp
from tests.tls_servers import spare_port

pytestmark = pytest.mark.rabbitmq

HOSTS = ("sim-00001", "sim-00002")


def require_rabbitmqctl() -> None:
    if shutil.which("rabbitmqctl") is None or os.geteuid() != 0:
        missing("listing RabbitMQ's queues and their types needs rabbitmqctl and root")


async def queue_types(prefix: str) -> dict[str, str]:
    """name -> type (classic, quorum) of the broker's queues whose name starts so."""
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", "list_queues", "--quiet", "--no-table-headers", "name", "type",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    rows = (line.split("\t") for line in out.decode().splitlines() if "\t" in line)
    return {name: kind for name, kind in rows if name.startswith(prefix)}


async def test_quorum_queues_are_declared_and_a_job_runs_through_them(tmp_path: Path) -> None:
    url = require_amqp()
    require_rabbitmqctl()
    collective = f"q{uuid.uuid4().hex[:10]}"
    settings = orchestrator_settings(
        f"sqlite:///{tmp_path / 'engine.db'}",
        tmp_path,
        transport_url=url,
        collective=collective,
        reply_to=f"mcoflow.{collective}.replies",
        amqp_queue_type="quorum",
    )
    keys = settings.keys_dir
    ensure_host_key(keys, SIMULATED_KEY)
    orchestrator = await build_orchestrator(settings)
    agent = AgentDaemon(
        AgentSettings(
            identities=HOSTS,
            package_provider="simulated",
            service_provider="simulated",
            collective=collective,
            broker_url=url,
            amqp_queue_type=QueueType.QUORUM,
            trusted_keys=keys / "callers",
            key_file=keys / "host-keys" / f"{SIMULATED_KEY}.key",
            journal_file=tmp_path / "journal.sqlite",
            fanout_name=f"{collective}-fanout",
        )
    )
    queues = [host_queue_name(collective, h) for h in (*HOSTS, f"{collective}-fanout")]
    try:
        await orchestrator.start()
        await agent.start()
        plan = await orchestrator.world.trigger(
            Install, hostname=HOSTS[0], package="nginx", timeout=60
        )
        done = await orchestrator.world.wait(plan.id, timeout=60)
        assert done.result is PlanResult.SUCCESS, done.error
        assert agent.fleet.calls[(HOSTS[0], "install")] == 1
        types = await queue_types(f"mcoflow.{collective}.")
        assert types == dict.fromkeys([*queues, settings.reply_to], "quorum"), types
    finally:
        await agent.stop()
        await orchestrator.stop()
        await drop_reply_queues(url, [*queues, settings.reply_to])


async def test_a_classic_setting_keeps_classic_queues() -> None:
    url = require_amqp()
    require_rabbitmqctl()
    reply_to = f"mcoflow.c{uuid.uuid4().hex[:10]}.replies"
    transport = transport_from_url(url, cluster=ClusterOptions(amqp_queue_type=QueueType.CLASSIC))

    async def ignore(envelope: bytes) -> None:
        return None

    try:
        await transport.connect()
        await transport.subscribe_replies(reply_to=reply_to, handler=ignore)
        assert await queue_types(reply_to) == {reply_to: "classic"}
    finally:
        await transport.close()
        await drop_reply_queues(url, [reply_to])


async def test_a_list_of_nodes_connects_to_one_that_answers() -> None:
    url = require_amqp()
    nobody = str(URL(url).with_port(spare_port()))  # nothing listens there
    transport = transport_from_url(f"{nobody},{url}")
    try:
        await transport.connect()
        assert transport.connected
    finally:
        await transport.close()
