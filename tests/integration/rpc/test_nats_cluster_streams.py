"""The NATS transport on a three-node cluster of its own (issue 20 item 2): streams get
``nats_replicas`` copies, one made earlier with fewer is raised, and a client given the
nodes' URLs connects when the first is down and moves on when its node dies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mcoflow.rpc.cluster import ClusterOptions
from mcoflow.rpc.transports import transport_from_url
from mcoflow.rpc.transports.nats import NODES_STREAM, NatsTransport
from mcoflow.testing import assert_eventually
from tests.conftest import unavailable
from tests.nats_cluster import NatsCluster, nats_cluster, nats_server_available
from tests.tls_servers import NATS_SERVER

pytestmark = pytest.mark.nats


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[NatsCluster]:
    if not nats_server_available():
        unavailable("nats-server", f"{NATS_SERVER} is not installed; the test starts a cluster")
    async with nats_cluster(tmp_path) as started:
        yield started


def nats_transport(url: str, replicas: int) -> NatsTransport:
    transport = transport_from_url(url, cluster=ClusterOptions(nats_replicas=replicas))
    assert isinstance(transport, NatsTransport)
    return transport


async def stream_replicas(transport: NatsTransport, name: str) -> int:
    js = transport._require_js()
    return (await js.stream_info(name)).config.num_replicas or 1


async def test_streams_have_the_replicas_asked_for_and_are_raised_to_them(
    cluster: NatsCluster,
) -> None:
    single = nats_transport(cluster.url, 1)  # e.g. `--check` before the first start
    await single.connect()
    try:
        assert await stream_replicas(single, NODES_STREAM) == 1
    finally:
        await single.close()
    replicated = nats_transport(cluster.url, 3)
    await replicated.connect()
    try:
        assert await stream_replicas(replicated, NODES_STREAM) == 3
    finally:
        await replicated.close()


async def test_a_client_skips_a_dead_node_and_leaves_one_that_dies(cluster: NatsCluster) -> None:
    first, second, _ = cluster.nodes
    earlier = nats_transport(cluster.url, 3)  # the streams, made while all nodes run
    await earlier.connect()
    await earlier.close()
    await cluster.kill(first.name)
    transport = nats_transport(cluster.url, 3)
    await transport.connect()
    try:
        assert await cluster.clients(second.name) == 1  # the next in the list
        await cluster.restart(first.name)
        await cluster.kill(second.name)

        async def elsewhere() -> None:
            assert transport.connected
            counts = [await cluster.clients(node.name) for node in cluster.running()]
            assert sum(counts) == 1, counts

        await assert_eventually(elsewhere, timeout=20, interval=0.1)
    finally:
        await transport.close()
