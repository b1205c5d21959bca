"""Acceptance (issue 20 item 2): a clustered broker. Three nats-server nodes with
JetStream (streams and consumers with 3 replicas) on spare loopback ports; a real
`mcoflow executor` on a fresh PostgreSQL database and one `mcoflow agent` process
simulating 1,000 hosts, both given the three nodes' URLs.

A first 1,000-host install runs undisturbed (its duration is the reference). During a
second one the node the executor is connected to, made to lead the stream of the
hosts' requests too, is killed (SIGKILL) once a fifth of the hosts installed, and
started again once the job has progressed on the other two: the job ends SUCCESS, the
simulated provider counted exactly one install per host and job, and both processes
reconnected to a surviving node by themselves (their logs say where; the survivors'
/connz counts their connections). The installs take up to 2 s each (jitter), so the
kill lands while the job runs. With one replica instead of three the job stalls while
the node is down (tried by hand: no progress in 60 s)."""

from __future__ import annotations

import datetime
import json
import os
import re
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from mcoflow.actions import Jobs
from mcoflow.engine import PlanResult, PlanState, World
from mcoflow.orchestrator import SIMULATED_KEY, ensure_caller_key, ensure_host_key
from mcoflow.rpc.transports.nats import NODES_STREAM
from mcoflow.testing import LoggedProcess, assert_eventually
from tests.conftest import unavailable
from tests.nats_cluster import NatsCluster, nats_cluster, nats_server_available
from tests.tls_servers import NATS_SERVER

pytestmark = [pytest.mark.postgresql, pytest.mark.nats]

MCOFLOW = Path(sys.executable).with_name("mcoflow")
HOSTS = 1000
REPLICAS = 3
STEP_TIMEOUT = 90.0  # a request lost for good ends its host as failed
JOB_LIMIT = 600.0
CONNECTED = re.compile(r"NATS: connected to (\S+)")
RECONNECTED = re.compile(r"NATS: reconnected to (\S+)")
RECONNECTED_AT = re.compile(r"^(\S+ \S+) INFO \S+ NATS: reconnected to", re.MULTILINE)


@dataclass
class Site:
    cluster: NatsCluster
    world: World
    agent: LoggedProcess
    executor: LoggedProcess
    stats: Path

    def installs(self) -> dict[str, int]:
        """Installs run per simulated host, as the agent last wrote them."""
        try:
            calls: dict[str, dict[str, int]] = json.loads(self.stats.read_text())["calls"]
        except (OSError, ValueError):  # not written yet
            return {}
        return {host: done.get("install", 0) for host, done in calls.items()}


def log_addresses(process: LoggedProcess, pattern: re.Pattern[str]) -> list[str]:
    return pattern.findall(process.output(tail=10**8))


def reconnected_after(process: LoggedProcess, killed: float) -> float:
    """Seconds from the kill (wall clock) to the reconnection its log records."""
    stamp = RECONNECTED_AT.findall(process.output(tail=10**8))[0]
    when = datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return when - killed


def assert_clean_log(process: LoggedProcess) -> None:
    problems = [
        line
        for line in process.output(tail=10**8).splitlines()
        if " ERROR " in line or " CRITICAL " in line or line.startswith("Traceback")
    ]
    assert not problems, "\n".join(problems[:5])


def start_processes(
    cluster: NatsCluster, pg_url: str, workdir: Path
) -> tuple[LoggedProcess, LoggedProcess, Path]:
    keys = workdir / "keys"
    ensure_caller_key(keys, "mcoflow")
    ensure_host_key(keys, SIMULATED_KEY)
    stats = workdir / "sim-stats.json"
    config = {
        "collective": "cluster",
        "broker_url": cluster.url,
        "nats_replicas": REPLICAS,
        "simulate_hosts": HOSTS,
        "key_file": str(keys / "host-keys" / f"{SIMULATED_KEY}.key"),
        "key_name": SIMULATED_KEY,
        "trusted_keys": str(keys / "callers"),
        "journal_file": str(workdir / "journal.sqlite"),
        "fanout_name": "cluster-fanout",
        "simulation": {"stats_file": str(stats), "stats_interval": 0.1, "jitter": 2.0},
    }
    (workdir / "agent.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCOFLOW_")}
    agent = LoggedProcess(
        [str(MCOFLOW), "agent", "--config", str(workdir / "agent.yaml"), "--log-level", "info"],
        log=workdir / "agent.log",
        env=env,
        cwd=workdir,
    )
    executor = LoggedProcess(
        [str(MCOFLOW), "executor", "--poll-interval", "0.1"],
        log=workdir / "executor.log",
        env=env
        | {
            "MCOFLOW_DATABASE_URL": pg_url,
            "MCOFLOW_TRANSPORT_URL": cluster.url,
            "MCOFLOW_NATS_REPLICAS": str(REPLICAS),
            "MCOFLOW_KEYS_DIR": str(keys),
            "MCOFLOW_COLLECTIVE": "cluster",
            "MCOFLOW_REPLY_TO": "cluster.replies",
        },
        cwd=workdir,
    )
    return agent, executor, stats


@pytest.fixture
async def site(pg_url: str, tmp_path: Path) -> AsyncIterator[Site]:
    if not nats_server_available():
        unavailable("nats-server", f"{NATS_SERVER} is not installed; the test starts a cluster")
    world = await World.open(pg_url)  # the schema, before the executor starts
    async with nats_cluster(tmp_path / "nats") as cluster:
        agent, executor, stats = start_processes(cluster, pg_url, tmp_path)
        try:

            def ready() -> None:
                if not agent.alive():  # not an AssertionError: no point in waiting
                    raise RuntimeError(f"the agent exited:\n{agent.output()}")
                assert "agent ready" in agent.output(tail=10**8), "subscribing"

            await assert_eventually(ready, timeout=300, interval=0.5)

            async def registered() -> None:
                if not executor.alive():
                    raise RuntimeError(f"the executor exited:\n{executor.output()}")
                assert any(e.pid == executor.pid for e in await world.executors())

            await assert_eventually(registered, timeout=120, interval=0.2)
            yield Site(cluster, world, agent, executor, stats)
        finally:
            executor.stop()
            agent.stop()
            await world.close()


async def install_everywhere(site: Site, package: str) -> str:
    hosts = [f"sim-{n:05d}" for n in range(1, HOSTS + 1)]
    plan = await Jobs(site.world, check_hosts=False).trigger(
        "install", hosts=hosts, parameter=package, timeout=STEP_TIMEOUT, by="test"
    )
    return plan.id


async def finished(site: Site, plan_id: str, started: float) -> float:
    done = await site.world.wait(plan_id, timeout=JOB_LIMIT, interval=0.2)
    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.SUCCESS), done.error
    assert done.ended_at is not None
    return done.ended_at - started


async def every_host_installed(site: Site, times: int) -> None:
    def counted() -> None:
        installs = site.installs()
        assert len(installs) == HOSTS, len(installs)
        wrong = {h: n for h, n in installs.items() if n != times}
        assert not wrong, f"{len(wrong)} hosts with other counts, e.g. {list(wrong.items())[:5]}"

    await assert_eventually(counted, timeout=10, interval=0.2)


async def test_a_fleet_job_survives_the_loss_of_the_executors_nats_node(site: Site) -> None:
    cluster = site.cluster
    started = time.time()
    baseline = await finished(site, await install_everywhere(site, "pkg-before"), started)
    await every_host_installed(site, 1)

    (executor_at,) = log_addresses(site.executor, CONNECTED)
    victim = cluster.by_address(executor_at)
    assert log_addresses(site.agent, CONNECTED) == [executor_at]  # the first URL, both
    # the worst moment to lose it: it also leads the stream of every host's requests
    await cluster.lead_stream(NODES_STREAM, victim.name)

    started = time.time()
    plan_id = await install_everywhere(site, "pkg-during")

    def installed_now() -> int:
        return sum(site.installs().values()) - HOSTS

    await assert_eventually(lambda: installed_now() >= HOSTS // 5, timeout=120, interval=0.05)
    at_kill = installed_now()
    assert at_kill < HOSTS, "the job ended before the kill; nothing was tested"
    killed_at = time.time()
    await cluster.kill(victim.name)
    killed = time.monotonic()
    leader = await cluster.wait_for_meta_leader()  # among the survivors
    elected = time.monotonic() - killed
    assert leader != victim.name

    def both_reconnected() -> None:
        for process in (site.executor, site.agent):
            assert log_addresses(process, RECONNECTED), "not yet"

    await assert_eventually(both_reconnected, timeout=30, interval=0.02)
    reconnected = {
        "executor": reconnected_after(site.executor, killed_at),
        "agent": reconnected_after(site.agent, killed_at),
    }
    survivors = [node.name for node in cluster.running()]
    for process in (site.executor, site.agent):
        for address in log_addresses(process, RECONNECTED):
            assert cluster.by_address(address).name in survivors, address
    connections = sum([await cluster.clients(name) for name in survivors])
    assert connections == 2, connections  # the executor's and the agent's

    # the job goes on with one node down, then the node comes back
    await assert_eventually(
        lambda: installed_now() >= at_kill + HOSTS // 5, timeout=120, interval=0.05
    )
    during_outage = installed_now() - at_kill
    down_for = time.monotonic() - killed
    await cluster.restart(victim.name)
    await cluster.wait_for_meta_leader()

    with_kill = await finished(site, plan_id, started)
    await every_host_installed(site, 2)  # once per job: nothing lost, nothing run twice
    assert site.executor.alive() and site.agent.alive()
    for process in (site.executor, site.agent):
        assert_clean_log(process)
    print(
        f"\n{HOSTS}-host install, {REPLICAS} replicas: {baseline:.1f} s undisturbed, "
        f"{with_kill:.1f} s with node {victim.name} killed after {at_kill} hosts "
        f"(down {down_for:.1f} s, {during_outage} hosts installed meanwhile, JetStream "
        f"meta leader {leader} after {elected:.2f} s); "
        f"reconnected after: executor {reconnected['executor']:.2f} s, "
        f"agent {reconnected['agent']:.2f} s"
    )
