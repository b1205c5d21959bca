"""The agent side of the RPC benchmark: the real agent daemon serving simulated hosts,
in this process (memory transport) or as ``rpc.py --serve`` in a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from pathlib import Path

from mcoflow.agent.daemon import AgentDaemon
from mcoflow.agent.settings import AgentSettings
from mcoflow.rpc import Transport, transport_from_url

HOST_PATTERN = "sim{n:05d}.bench"


def host_names(count: int) -> list[str]:
    return [HOST_PATTERN.format(n=n) for n in range(1, count + 1)]


def agent_config(
    url: str, keydir: Path, collective: str, count: int, reply_batch: int | None
) -> AgentSettings:
    trusted = keydir / "trusted"
    trusted.mkdir(exist_ok=True)
    (trusted / "bench.pub").write_bytes((keydir / "bench.pub").read_bytes())
    return AgentSettings(
        simulate_hosts=count,
        simulate_pattern=HOST_PATTERN,
        collective=collective,
        broker_url=url,
        key_file=keydir / "hosts.key",
        key_name="hosts",
        trusted_keys=trusted,
        journal_file=keydir / f"journal-{collective}-{count}-{uuid.uuid4().hex[:6]}.sqlite",
        agents=("rpcutil", "package", "service"),
        fanout_name=f"bench-fanout-{uuid.uuid4().hex[:8]}",
        reply_batch=reply_batch,
    )


async def start_agent(
    config: AgentSettings, transport: Transport | None = None
) -> tuple[AgentDaemon, float]:
    daemon = AgentDaemon(config, transport=transport)
    started = time.perf_counter()
    await daemon.start()
    return daemon, time.perf_counter() - started


async def forget_hosts(transport: Transport, collective: str, names: list[str]) -> None:
    """Delete the simulated hosts' queues / durable consumers (they are durable)."""
    semaphore = asyncio.Semaphore(64)

    async def one(identity: str) -> None:
        async with semaphore:
            with contextlib.suppress(Exception):
                await transport.forget_host(identity=identity, collective=collective)

    await asyncio.gather(*(one(i) for i in names))


async def serve_agent(
    url: str, keydir: Path, collective: str, count: int, reply_batch: int | None
) -> None:
    config = agent_config(url, keydir, collective, count, reply_batch)
    transport = transport_from_url(url)
    await transport.connect()
    daemon, startup = await start_agent(config, transport)
    print(f"ready {startup:.3f}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await daemon.stop(grace=5)
    names = list(daemon.hosts)
    if len(names) > 1:
        names.append(config.fanout_name)
    await forget_hosts(transport, collective, names)
    await transport.close()
