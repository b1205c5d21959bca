"""The broker side of real MCollective nodes: settings, availability, exchanges.

Re-exported by tests.mco_nodes; see contrib/mcollective/setup-rabbitmq.sh for the set-up.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import quote

import aio_pika
import aiormq

from tests.conftest import unavailable


@dataclass(frozen=True)
class BrokerSettings:
    host: str = os.environ.get("MCOFLOW_TEST_STOMP_HOST", "127.0.0.1")
    stomp_port: int = int(os.environ.get("MCOFLOW_TEST_STOMP_PORT", "61613"))
    amqp_port: int = int(os.environ.get("MCOFLOW_TEST_AMQP_PORT", "5672"))
    vhost: str = "/mcollective"
    user: str = "mcollective"
    password: str = "marionette"
    collective: str = "mcollective"

    @property
    def amqp_url(self) -> str:
        credentials = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}"
        return f"amqp://{credentials}@{self.host}:{self.amqp_port}/{quote(self.vhost, safe='')}"

    @property
    def mcoflow_url(self) -> str:
        """mcoflow's transport URL for this collective."""
        credentials = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}"
        return (
            f"stomp+mcollective://{credentials}@{self.host}:{self.stomp_port}/"
            f"{quote(self.vhost, safe='')}?collective={self.collective}"
        )

    @property
    def exchanges(self) -> tuple[str, str]:
        return f"{self.collective}_broadcast", f"{self.collective}_directed"

    def connector_config(self) -> dict[str, object]:
        """The rabbitmq connector's lines of a server.cfg or client.cfg."""
        return {
            "main_collective": self.collective,
            "collectives": self.collective,
            "connector": "rabbitmq",
            "plugin.rabbitmq.vhost": self.vhost,
            "plugin.rabbitmq.pool.size": 1,
            "plugin.rabbitmq.pool.1.host": self.host,
            "plugin.rabbitmq.pool.1.port": self.stomp_port,
            "plugin.rabbitmq.pool.1.user": self.user,
            "plugin.rabbitmq.pool.1.password": self.password,
            # reconnect within a second or two after a broker restart (default: up to 30 s)
            "plugin.rabbitmq.initial_reconnect_delay": 0.1,
            "plugin.rabbitmq.max_reconnect_delay": 2.0,
        }


@cache
def _missing(broker: BrokerSettings) -> str | None:
    """Why real nodes cannot run here, or None."""
    for program in ("mcollectived", "mco", "ruby"):
        if shutil.which(program) is None:
            return f"{program} is not installed (Debian: mcollective mcollective-client)"
    probe = subprocess.run(["ruby", "-e", 'require "stomp"'], capture_output=True, check=False)
    if probe.returncode != 0:
        return "the Ruby STOMP gem is missing (Debian: ruby-stomp)"
    # A STOMP CONNECT with the nodes' credentials checks the plugin, the vhost and the user.
    frame = (
        f"CONNECT\naccept-version:1.0\nhost:{broker.vhost}\n"
        f"login:{broker.user}\npasscode:{broker.password}\n\n\0"
    )
    try:
        with socket.create_connection((broker.host, broker.stomp_port), timeout=3) as sock:
            sock.settimeout(5)
            sock.sendall(frame.encode())
            answer = sock.recv(4096).decode(errors="replace")
    except OSError as exc:
        return f"RabbitMQ STOMP at {broker.host}:{broker.stomp_port}: {exc}"
    if not answer.startswith("CONNECTED"):
        body = answer.partition("\n\n")[2].strip("\0\n ") or answer.strip("\0\n ")
        return f"STOMP login to vhost {broker.vhost} as {broker.user} refused: {body[:200]}"
    return None


def require_mcollective(broker: BrokerSettings | None = None) -> None:
    """Skip (fail under CI) unless real nodes can run: mcollectived, the Ruby STOMP gem,
    and RabbitMQ's STOMP plugin taking the nodes' vhost and user."""
    why = _missing(broker or BrokerSettings())
    if why is not None:
        unavailable("MCollective (mcollectived + RabbitMQ STOMP)", why)


async def ensure_exchanges(broker: BrokerSettings) -> None:
    """Declare the collective's two topic exchanges, which STOMP does not create.

    Without them a node's SUBSCRIBE gets a NOT_FOUND error frame and the broker closes its
    connection. Durable, so they outlive a broker restart; an existing non-durable one (an
    older set-up script made those) is left as it is: publishing and binding work on both.
    """
    connection = await aio_pika.connect(broker.amqp_url, timeout=10)
    async with connection:
        for name in broker.exchanges:
            channel = await connection.channel()
            try:
                await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)
            except aiormq.exceptions.ChannelPreconditionFailed:
                channel = await connection.channel()
                await channel.declare_exchange(name, passive=True)
            await channel.close()


async def delete_exchanges(broker: BrokerSettings) -> None:
    connection = await aio_pika.connect(broker.amqp_url, timeout=10)
    async with connection:
        channel = await connection.channel()
        for name in broker.exchanges:
            await channel.exchange_delete(name)


def run_async(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine to completion from sync code, even under a running event loop."""
    failure: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(coroutine)
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
