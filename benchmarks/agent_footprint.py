"""The agent's footprint on a host, for ``benchmarks/rpc.py --agent-footprint``.

The agent runs on every host, so what it costs there is measured on the process a host
runs: ``mcoflow agent --config FILE`` (the command the service unit names), with a
host's configuration (its real package and service providers, a journal, the metrics
endpoint) on the real broker.

- import time: the median over fresh interpreters of importing the entry point alone
  (``python -m mcoflow.agent``), the CLI and the entry point (``mcoflow agent``), and
  both with the broker's client (what a running agent has imported); then the heaviest
  packages of that last import, by the time spent in their own modules
  (``python -X importtime``);
- start: from spawning ``mcoflow agent`` to its "agent ready" line (median of three),
  beside a bare interpreter's start and exit;
- memory: RSS, PSS and USS (private pages) of the idle agent from
  /proc/PID/smaps_rollup, and RSS and PSS again after the requests. PSS shares the
  pages of files mapped by other processes (libpython, shared libraries), so it is the
  agent's share of the host's memory, lower when other Python processes run;
- CPU: the agent's user + system CPU (/proc/PID/stat) while idle, and per request
  (``rpcutil.ping``: verify, authorize, run, sign and send the reply) sent by
  ``DirectClient`` one at a time and 100 in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from mcoflow.rpc import Signer, Transport, Verifier, transport_from_url
from mcoflow.testing.rpc import DirectClient

Figure = tuple[str, float, str, int]

TICKS = os.sysconf("SC_CLK_TCK")
KIB_PER_MIB = 1024
IMPORT_RUNS = 7  # fresh interpreters per import figure (the median)
TOP_PACKAGES = 6  # the heaviest packages of the import, by their own time
STARTS = 3  # agents started one after the other (the median start)
IDLE_SECONDS = 10
SEQUENTIAL = 2000  # pings one at a time (CPU is counted in ticks of 10 ms)
PARALLEL = 5000  # pings 100 in flight
COLLECTIVE = "footprint"


# -- import time --------------------------------------------------------------------


def import_seconds(modules: str) -> float:
    """Seconds to import ``modules`` in a fresh interpreter (its start not counted)."""
    probe = (
        f"import time\nt = time.perf_counter()\nimport {modules}\nprint(time.perf_counter() - t)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return float(done.stdout)


def import_by_package(modules: str) -> dict[str, float]:
    """Microseconds spent in each top-level package's own modules (``-X importtime``'s
    self time, summed), for one import of ``modules`` in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {modules}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    spent: dict[str, float] = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _, name = line.removeprefix("import time:").split("|")
        package = name.strip().partition(".")[0]
        spent[package] = spent.get(package, 0.0) + float(self_us)
    return spent


def python_start_seconds() -> float:
    """Seconds a fresh interpreter takes to start and exit, importing nothing: what
    the start below has on top of the imports."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True, timeout=60)
    return time.perf_counter() - started


def import_figures(broker_module: str) -> list[Figure]:
    cli = "mcoflow.cli, mcoflow.agent.__main__"
    everything = f"{cli}, {broker_module}"
    entries = {
        "python -m mcoflow.agent's entry": "mcoflow.agent.__main__",
        "mcoflow agent (the CLI and that entry)": cli,
        "mcoflow agent with its broker client": everything,
    }
    figures = []
    for label, modules in entries.items():
        runs = [import_seconds(modules) for _ in range(IMPORT_RUNS)]
        figures.append((f"agent import: {label}", statistics.median(runs) * 1000, "ms", 1))
    samples = [import_by_package(everything) for _ in range(3)]
    packages = {name for sample in samples for name in sample}
    spent = {name: statistics.median(s.get(name, 0.0) for s in samples) for name in packages}
    for name in sorted(spent, key=spent.__getitem__, reverse=True)[:TOP_PACKAGES]:
        figures.append((f"agent import, of which {name}", spent[name] / 1000, "ms", 1))
    bare = statistics.median(python_start_seconds() for _ in range(IMPORT_RUNS))
    figures.append(("python start and exit, nothing imported", bare * 1000, "ms", 1))
    return figures


# -- the agent process --------------------------------------------------------------


def write_config(url: str, keydir: Path, identity: str) -> Path:
    """A host's configuration file: real providers (auto), a journal, /metrics."""
    trusted = keydir / "footprint-trusted"
    trusted.mkdir(exist_ok=True)
    (trusted / "bench.pub").write_bytes((keydir / "bench.pub").read_bytes())
    config = keydir / "footprint-agent.yaml"
    config.write_text(
        f"identity: {identity}\ncollective: {COLLECTIVE}\nbroker_url: {url}\n"
        f"key_file: {keydir / 'hosts.key'}\nkey_name: hosts\ntrusted_keys: {trusted}\n"
        f"journal_file: {keydir / 'footprint-journal.sqlite'}\n"
        "metrics_listen: 127.0.0.1:0\n",
        encoding="utf-8",
    )
    return config


class AgentProcess:
    """``mcoflow agent --config FILE``, as a service unit starts it, and what /proc
    says about it."""

    def __init__(self, config: Path) -> None:
        script = Path(sys.executable).parent / "mcoflow"
        command = [str(script)] if script.exists() else [sys.executable, "-m", "mcoflow.cli"]
        self.spawned = time.perf_counter()
        self.process = subprocess.Popen(
            [*command, "agent", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.pid = self.process.pid
        self._drain: asyncio.Future[str] | None = None

    async def ready(self) -> float:
        """Seconds from the spawn to the agent's "agent ready" line."""
        stderr = self.process.stderr
        assert stderr is not None
        loop = asyncio.get_running_loop()
        while "agent ready" not in (line := await loop.run_in_executor(None, stderr.readline)):
            if not line:
                raise RuntimeError(f"mcoflow agent exited with status {self.process.wait()}")
        seconds = time.perf_counter() - self.spawned
        # it logs little once running, but never let it block on a full pipe
        self._drain = loop.run_in_executor(None, stderr.read)
        return seconds

    async def stop(self) -> None:
        self.process.terminate()
        await asyncio.get_running_loop().run_in_executor(None, self.process.wait, 60)
        if self._drain is not None:
            await self._drain

    def cpu_seconds(self) -> float:
        """User + system CPU seconds so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def memory_mib(self) -> dict[str, float]:
        """RSS, PSS and USS (private clean + dirty), from /proc/PID/smaps_rollup."""
        kib: dict[str, int] = {}
        for line in Path(f"/proc/{self.pid}/smaps_rollup").read_text().splitlines()[1:]:
            key, _, value = line.partition(":")
            kib[key] = int(value.split()[0])
        private = kib["Private_Clean"] + kib["Private_Dirty"]
        return {
            "RSS": kib["Rss"] / KIB_PER_MIB,
            "PSS": kib["Pss"] / KIB_PER_MIB,
            "USS": private / KIB_PER_MIB,
        }

    @contextlib.contextmanager
    def cpu_ms(self, used: list[float]) -> Iterator[None]:
        """Appends to ``used`` the CPU milliseconds the agent used while the block ran."""
        before = self.cpu_seconds()
        yield
        used.append((self.cpu_seconds() - before) * 1000)


async def started_agent(config: Path) -> tuple[AgentProcess, float]:
    """The last of STARTS agents started one after the other, and their median start."""
    starts: list[float] = []
    for _ in range(STARTS):
        agent = AgentProcess(config)
        try:
            starts.append(await agent.ready())
        except BaseException:
            await agent.stop()
            raise
        if len(starts) < STARTS:
            await agent.stop()
    return agent, statistics.median(starts)


async def bench_client(
    transport: Transport, keydir: Path, collective: str, name: str
) -> DirectClient:
    """The benchmarks' client, started: it signs with keydir's "bench" key, trusts
    replies signed with its "hosts" key, and has a transient reply queue of its own."""
    client = DirectClient(
        transport,
        Signer.from_file(keydir / "bench.key"),
        collective=collective,
        reply_to=f"mcoflow-bench.replies.{name}",
        transient_replies=True,
        verifier=Verifier({"hosts": Signer.from_file(keydir / "hosts.key").public_key}),
    )
    await client.start()
    return client


async def request_figures(
    agent: AgentProcess, transport: Transport, keydir: Path, identity: str
) -> list[Figure]:
    """The agent's CPU per ``rpcutil.ping``, one at a time and 100 in flight."""
    client = await bench_client(transport, keydir, COLLECTIVE, identity)
    semaphore = asyncio.Semaphore(100)

    async def ping() -> None:
        async with semaphore:
            result = await client.call("rpcutil", "ping", identities=[identity], timeout=30)
        if not result.ok:
            raise RuntimeError(result.results[0].statusmsg)

    used: list[float] = []
    try:
        for _ in range(50):  # warm up
            await ping()
        with agent.cpu_ms(used):
            for _ in range(SEQUENTIAL):
                await ping()
        with agent.cpu_ms(used):
            await asyncio.gather(*(ping() for _ in range(PARALLEL)))
    finally:
        await client.close()
    return [
        ("agent CPU per request, sequential", used[0] / SEQUENTIAL, "ms", SEQUENTIAL),
        ("agent CPU per request, 100 in flight", used[1] / PARALLEL, "ms", PARALLEL),
    ]


async def process_figures(url: str, keydir: Path) -> list[Figure]:
    identity = f"footprint-{uuid.uuid4().hex[:8]}.bench"
    config = write_config(url, keydir, identity)
    transport = transport_from_url(url)
    await transport.connect()
    agent: AgentProcess | None = None
    try:
        agent, start = await started_agent(config)
        figures: list[Figure] = [("agent start: spawned to ready", start * 1000, "ms", 1)]
        idle: list[float] = []
        with agent.cpu_ms(idle):
            await asyncio.sleep(IDLE_SECONDS)
        for name, value in agent.memory_mib().items():
            figures.append((f"agent idle {name}", value, "MiB", 1))
        figures.append(("agent CPU while idle, per n seconds", idle[0], "ms", IDLE_SECONDS))
        figures.extend(await request_figures(agent, transport, keydir, identity))
        after = agent.memory_mib()
        figures.extend(
            (f"agent {name} after the requests", after[name], "MiB", 1) for name in ("RSS", "PSS")
        )
        return figures
    finally:
        if agent is not None:
            await agent.stop()
        with contextlib.suppress(Exception):
            await transport.forget_host(identity=identity, collective=COLLECTIVE)
        await transport.close()


async def agent_footprint(transport: str, url: str, keydir: Path) -> list[Figure]:
    """Every figure above for an agent on ``url`` (``transport``: amqp or nats)."""
    figures = import_figures(f"mcoflow.rpc.transports.{transport}")
    figures.extend(await process_figures(url, keydir))
    return figures
