"""A clustered broker's settings: several node URLs, NATS replicas, RabbitMQ queue type
(issue 20 item 2); the servers themselves are in tests/acceptance/test_nats_cluster.py
and tests/integration/rpc/test_amqp_cluster.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from yarl import URL

from mcoflow.agent.settings import AgentSettings
from mcoflow.rpc.cluster import ClusterOptions, QueueType, server_urls
from mcoflow.rpc.transports import transport_from_url
from mcoflow.rpc.transports.amqp import AmqpTransport
from mcoflow.rpc.transports.amqp_nodes import node_urls
from mcoflow.rpc.transports.nats import NatsTransport
from mcoflow.rpc.unreachable import safe_url
from mcoflow.settings import SettingsError, load_settings


def test_a_comma_separated_url_lists_the_nodes() -> None:
    assert server_urls("nats://a:4222, nats://b:4222") == ["nats://a:4222", "nats://b:4222"]
    assert server_urls("nats://a:4222") == ["nats://a:4222"]
    with pytest.raises(ValueError, match="empty entry"):
        server_urls("nats://a:4222,,nats://b:4222")
    with pytest.raises(ValueError, match=r"mix schemes \(nats://, tls://\)"):
        server_urls("nats://a:4222,tls://b:4222")


def test_no_password_of_any_node_is_shown() -> None:
    shown = safe_url("amqp://u:secret@r1:5672/,amqp://u:secret@r2:5672/")
    assert shown == "amqp://u:***@r1:5672/,amqp://u:***@r2:5672/"


def test_rabbitmq_nodes_share_user_password_and_vhost() -> None:
    nodes = node_urls(["amqp://u:p@r1/vh", "amqp://u:p@r2:5673/vh"])
    assert [(n.host, n.port) for n in nodes] == [("r1", None), ("r2", 5673)]  # None: 5672
    with pytest.raises(ValueError, match=r"amqp://u@r2/other: the nodes of a cluster"):
        node_urls(["amqp://u:p@r1/vh", "amqp://u:p@r2/other"])


def test_the_transports_get_the_cluster_options() -> None:
    cluster = ClusterOptions(nats_replicas=3, amqp_queue_type=QueueType.QUORUM)
    nats = transport_from_url("nats://a:4222,nats://b:4222", cluster=cluster)
    assert isinstance(nats, NatsTransport) and nats.replicas == 3
    amqp = transport_from_url("amqp://u:p@r1/,amqp://u:p@r2/", cluster=cluster)
    assert isinstance(amqp, AmqpTransport) and amqp.queue_type is QueueType.QUORUM
    assert amqp.nodes == [URL("amqp://u:p@r1/"), URL("amqp://u:p@r2/")]
    default = transport_from_url("nats://a:4222")
    assert isinstance(default, NatsTransport) and default.replicas == 1
    with pytest.raises(ValueError, match="nats_replicas: 6 is not between 1 and 5"):
        ClusterOptions(nats_replicas=6)


def test_the_settings_name_what_is_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCOFLOW_AMQP_QUEUE_TYPE", "quorum")
    monkeypatch.setenv("MCOFLOW_NATS_REPLICAS", "3")
    settings = load_settings()
    assert (settings.amqp_queue_type, settings.nats_replicas) == (QueueType.QUORUM, 3)
    assert ClusterOptions.from_settings(settings) == ClusterOptions(3, QueueType.QUORUM)
    monkeypatch.setenv("MCOFLOW_AMQP_QUEUE_TYPE", "mirrored")
    with pytest.raises(SettingsError, match="amqp_queue_type: Input should be 'classic' or"):
        load_settings()


def test_the_agent_takes_the_same_settings(tmp_path: Path) -> None:
    agent = AgentSettings(
        key_file=tmp_path / "k",
        trusted_keys=tmp_path,
        nats_replicas=3,
        amqp_queue_type="quorum",  # type: ignore[arg-type]  # as YAML gives it
    )
    assert ClusterOptions.from_settings(agent) == ClusterOptions(3, QueueType.QUORUM)
