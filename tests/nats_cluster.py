"""A three-node NATS cluster with JetStream for tests, on spare loopback ports (never the
shared server on 4222): each node its own store folder, server name and monitoring
port, routes to the others; a node can be killed (SIGKILL) and started again with its
store, as a machine that died and came back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import urllib.request
from asyncio.subprocess import Process
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats

from tests.tls_servers import NATS_SERVER, spare_port, wait_for_port

CLUSTER_NAME = "mcoflow-test"


@dataclass
class NatsNode:
    name: str
    port: int  # clients
    cluster_port: int  # routes
    monitor_port: int  # /varz, /connz, /jsz
    folder: Path
    process: Process | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.folder / "server.log"

    def config(self, routes: list[int]) -> str:
        route_urls = ", ".join(f"nats-route://127.0.0.1:{p}" for p in routes)
        return (
            f"server_name: {self.name}\n"
            f"listen: 127.0.0.1:{self.port}\n"
            f"http: 127.0.0.1:{self.monitor_port}\n"
            f'jetstream {{ store_dir: "{self.folder / "store"}" }}\n'
            f"cluster {{\n  name: {CLUSTER_NAME}\n  listen: 127.0.0.1:{self.cluster_port}\n"
            f"  routes: [{route_urls}]\n}}\n"
        )


@dataclass
class NatsCluster:
    folder: Path
    size: int = 3
    nodes: list[NatsNode] = field(default_factory=list)

    def __post_init__(self) -> None:
        for n in range(1, self.size + 1):
            folder = self.folder / f"n{n}"
            folder.mkdir(parents=True, exist_ok=True)
            self.nodes.append(
                NatsNode(f"n{n}", spare_port(), spare_port(), spare_port(), folder=folder)
            )

    @property
    def url(self) -> str:
        """Every node's URL, comma-separated (as mcoflow's settings take a cluster)."""
        return ",".join(node.url for node in self.nodes)

    def node(self, name: str) -> NatsNode:
        return next(node for node in self.nodes if node.name == name)

    def by_address(self, address: str) -> NatsNode:
        return next(node for node in self.nodes if node.address == address)

    async def start(self, timeout: float = 30.0) -> None:
        for node in self.nodes:
            await self._launch(node)
        for node in self.nodes:
            assert node.process is not None
            await wait_for_port(node.port, node.process, timeout=timeout)
        await self.wait_for_meta_leader(timeout=timeout)

    async def _launch(self, node: NatsNode) -> None:
        config = node.folder / "server.conf"
        config.write_text(node.config([other.cluster_port for other in self.nodes]))
        with node.log.open("ab") as sink:
            node.process = await asyncio.create_subprocess_exec(
                NATS_SERVER, "-c", str(config), stdout=sink, stderr=sink
            )

    async def kill(self, name: str) -> None:
        """SIGKILL the node: its clients lose their connection with no goodbye."""
        node = self.node(name)
        assert node.process is not None and node.process.returncode is None
        node.process.send_signal(signal.SIGKILL)
        await node.process.wait()

    async def restart(self, name: str, timeout: float = 30.0) -> None:
        """Start a killed node again on its ports, with what its store kept."""
        node = self.node(name)
        assert node.process is None or node.process.returncode is not None
        await self._launch(node)
        assert node.process is not None
        await wait_for_port(node.port, node.process, timeout=timeout)

    def running(self) -> list[NatsNode]:
        return [n for n in self.nodes if n.process is not None and n.process.returncode is None]

    async def monitor(self, name: str, endpoint: str) -> dict[str, Any]:
        """A node's monitoring endpoint (``connz``, ``jsz?…``, ``varz``) as JSON."""
        url = f"http://127.0.0.1:{self.node(name).monitor_port}/{endpoint}"

        def get() -> dict[str, Any]:
            with urllib.request.urlopen(url, timeout=5) as response:
                data: dict[str, Any] = json.loads(response.read())
                return data

        return await asyncio.to_thread(get)

    async def clients(self, name: str) -> int:
        """Client connections the node has now."""
        return int((await self.monitor(name, "connz"))["num_connections"])

    async def meta_leader(self, name: str) -> str | None:
        """The JetStream meta leader as the node sees it (None: being elected)."""
        meta = (await self.monitor(name, "jsz")).get("meta_cluster") or {}
        leader = meta.get("leader")
        return str(leader) if leader else None

    async def wait_for_meta_leader(self, timeout: float = 30.0) -> str:
        """Every running node knows the same JetStream meta leader, a running node (not
        one killed that the others have not missed yet)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            leaders: set[str | None] = set()
            for node in self.running():
                with contextlib.suppress(OSError):
                    leaders.add(await self.meta_leader(node.name))
                    continue
                leaders.add(None)
            alive = {node.name for node in self.running()}
            if len(leaders) == 1 and leaders <= alive:
                return str(leaders.pop())
            if loop.time() > deadline:
                raise TimeoutError(f"no JetStream meta leader after {timeout} s: {leaders}")
            await asyncio.sleep(0.2)

    async def stream_leader(self, stream: str) -> str | None:
        """The node that leads ``stream`` now (None: being elected)."""
        nc = await nats.connect([node.url for node in self.running()])
        try:
            info = await nc.jetstream().stream_info(stream)
        finally:
            await nc.close()
        return info.cluster.leader if info.cluster is not None else None

    async def lead_stream(self, stream: str, leader: str, attempts: int = 12) -> None:
        """Make ``leader`` lead ``stream``: its leader steps down until the election
        picks that node (a stream with one replica cannot move: AssertionError)."""
        for _ in range(attempts):
            current = await self.stream_leader(stream)
            if current == leader:
                return
            nc = await nats.connect([node.url for node in self.running()])
            try:
                await nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", b"", timeout=5)
            finally:
                await nc.close()
            for _ in range(100):  # the next election
                if await self.stream_leader(stream) not in (current, None):
                    break
                await asyncio.sleep(0.1)
        raise AssertionError(f"{stream} is still led by {await self.stream_leader(stream)}")

    async def stop(self) -> None:
        for node in self.nodes:
            process = node.process
            if process is None or process.returncode is not None:
                continue
            process.terminate()
            try:
                async with asyncio.timeout(20):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()


def nats_server_available() -> bool:
    return os.access(NATS_SERVER, os.X_OK)


@contextlib.asynccontextmanager
async def nats_cluster(folder: Path, size: int = 3) -> AsyncIterator[NatsCluster]:
    """A started cluster of ``size`` nodes with a JetStream meta leader; stopped after."""
    cluster = NatsCluster(folder, size)
    try:
        await cluster.start()
        yield cluster
    finally:
        await cluster.stop()
