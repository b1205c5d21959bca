"""A broker that is a cluster: the URLs of its nodes, and how much of mcoflow's state it
replicates.

``transport_url`` / ``broker_url`` may list several nodes separated by commas
(``nats://n1:4222,nats://n2:4222``; a comma inside a password is written ``%2C``). A
client connects to one of them and, when it is lost, to the next that answers.

- NATS: ``nats_replicas`` is the number of servers that store each JetStream stream
  mcoflow creates (and its consumers): 3 on a three-node cluster survives the loss of
  one node. A stream made with fewer replicas is raised to the setting on connect.
- RabbitMQ: ``amqp_queue_type: quorum`` declares the durable queues (one per host, the
  shared reply queue) as quorum queues, replicated over the cluster's nodes; a classic
  queue lives on one node and is unreachable while that node is down. A queue keeps the
  type it was declared with: switching an existing deployment means deleting its
  queues while nothing runs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

__all__ = [
    "BrokerClusterSettings",
    "ClusterOptions",
    "QueueType",
    "server_urls",
]


class QueueType(enum.StrEnum):
    CLASSIC = "classic"
    QUORUM = "quorum"


class BrokerClusterSettings(Protocol):
    """The cluster settings, of the orchestrator's and the agent's settings."""

    @property
    def nats_replicas(self) -> int: ...
    @property
    def amqp_queue_type(self) -> QueueType: ...


@dataclass(frozen=True)
class ClusterOptions:
    nats_replicas: int = 1
    amqp_queue_type: QueueType = QueueType.CLASSIC

    def __post_init__(self) -> None:
        if not 1 <= self.nats_replicas <= 5:
            raise ValueError(
                f"nats_replicas: {self.nats_replicas} is not between 1 and 5 (JetStream's limit)"
            )

    @classmethod
    def from_settings(cls, settings: BrokerClusterSettings) -> ClusterOptions:
        return cls(nats_replicas=settings.nats_replicas, amqp_queue_type=settings.amqp_queue_type)


def server_urls(url: str) -> list[str]:
    """The node URLs of a comma-separated list (one URL: itself); ValueError when an
    entry is empty or the entries mix schemes."""
    urls = [part.strip() for part in url.split(",")]
    if any(not part for part in urls):
        raise ValueError(
            "the list of broker URLs has an empty entry (two commas in a row, or one at an end)"
        )
    schemes = {urlsplit(part).scheme.lower() for part in urls}
    if len(schemes) > 1:
        raise ValueError(
            "the broker URLs mix schemes ("
            + ", ".join(sorted(f"{s}://" for s in schemes))
            + "): every node of a cluster is reached the same way"
        )
    return urls
