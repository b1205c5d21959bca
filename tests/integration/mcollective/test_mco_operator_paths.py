"""The operator's paths on MCollective nodes, through the engine: `mcoflow rpc` (the nodes
cannot describe their agents), compound filters refused before anything starts, and the
replies the transport refused at ``/metrics``."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mcoflow.actions.agent_calls import AgentCalls, CallResult
from mcoflow.actions.agent_interfaces import parse_assignments
from mcoflow.actions.jobs import Jobs
from mcoflow.job_request import JobInputError
from mcoflow.orchestrator import Orchestrator, build_orchestrator
from mcoflow.rpc.transport import Transport
from mcoflow.rpc.transports.mcollective import McollectiveTransport
from mcoflow.settings import Settings
from mcoflow.web.server import WebServer
from tests.embedded import MCOFLOW, orchestrator_settings
from tests.mco_nodes import McoCollective, NodeSpec, require_mcollective
from tests.mco_rogue import rogue_node

COMPOUND = "role=web or role=db"


@pytest.fixture(scope="module")
def nodes() -> Iterator[McoCollective]:
    require_mcollective()
    specs = [
        NodeSpec("web1", {"osfamily": "Debian", "role": "web"}),
        NodeSpec("db1", {"osfamily": "RedHat", "role": "db"}),
    ]
    with McoCollective(specs) as collective:
        yield collective


def _settings(nodes: McoCollective, tmp_path: Path) -> Settings:
    return orchestrator_settings(
        f"sqlite:///{tmp_path / 'mcoflow.db'}",
        tmp_path,
        transport_url=nodes.broker.mcoflow_url,
        mcollective_psk=nodes.psk,
        reply_to=f"mcoflow-paths-{uuid.uuid4().hex[:8]}",
        listen="127.0.0.1:0",
    )


@pytest.fixture
async def orchestrator(nodes: McoCollective, tmp_path: Path) -> AsyncIterator[Orchestrator]:
    built = await build_orchestrator(_settings(nodes, tmp_path))
    await built.start()
    try:
        yield built
    finally:
        await built.stop()


def _jobs(orchestrator: Orchestrator, *, check_hosts: bool = True) -> Jobs:
    # as the web server builds its job service
    return Jobs(orchestrator.world, check_hosts=check_hosts, transport=type(orchestrator.transport))


async def _rpc(
    calls: AgentCalls,
    agent: str,
    action: str,
    *assignments: str,
    hosts: Sequence[str] = (),
    filter: str | None = None,
    timeout: float | None = None,
) -> list[CallResult]:
    """`mcoflow rpc AGENT ACTION key=value…` as the command line starts it, waited for."""
    inputs = parse_assignments(assignments)
    plan = await calls.start(
        agent, action, inputs, as_text=True, hosts=hosts, filter=filter, timeout=timeout
    )
    await calls.world.wait(plan.id, timeout=60)
    return await calls.results(plan.id)


async def test_rpc_of_any_agent_runs_on_the_nodes(
    orchestrator: Orchestrator, nodes: McoCollective
) -> None:
    jobs = _jobs(orchestrator)
    assert sorted(await jobs.discover(timeout=2)) == ["db1", "web1"]
    calls = AgentCalls(jobs)

    # echo: no interface known anywhere; the node's DDL checks the inputs
    [echo] = await _rpc(calls, "echo", "run", "msg=hi", hosts=["web1"])
    assert (echo.host, echo.status, echo.data["msg"]) == ("web1", "success", "hi")

    with nodes["db1"].edit_state() as state:
        state["packages"]["nginx"] = "1.22.1-9"
    rows = await _rpc(calls, "package", "status", "package=nginx", filter="role=db")
    assert [(r.host, r.status, r.data["ensure"]) for r in rows] == [("db1", "success", "1.22.1-9")]
    [absent] = await _rpc(calls, "package", "status", "package=nothere", hosts=["web1"])
    assert (absent.status, absent.data["ensure"]) == ("success", "absent")


async def test_a_bad_input_gets_the_nodes_refusal(orchestrator: Orchestrator) -> None:
    jobs = _jobs(orchestrator)
    await jobs.discover(timeout=2)
    calls = AgentCalls(jobs)

    # nothing known of echo here: the node refuses (statuscode 4) and says why
    [refused] = await _rpc(calls, "echo", "run", "message=hi", hosts=["web1"])
    assert refused.failed
    assert "status 4" in refused.message and "msg" in refused.message, refused.message

    # package: mcoflow's own interface checks it before anything is sent
    with pytest.raises(JobInputError) as bad:
        await calls.start(
            "package", "status", {"package": "no such!"}, as_text=True, hosts=["web1"]
        )
    assert bad.value.field == "inputs.package"


async def _cli(orchestrator: Orchestrator, cwd: Path, *args: str) -> tuple[int, str]:
    """`mcoflow ARGS` as a real process, configured as the orchestrator is."""
    settings = orchestrator.settings
    psk = settings.mcollective_psk
    env = {
        **os.environ,
        "MCOFLOW_TRANSPORT_URL": settings.transport_url,
        "MCOFLOW_MCOLLECTIVE_PSK": psk.get_secret_value() if psk else "",
        "MCOFLOW_DATABASE_URL": settings.database_url,
    }
    env.pop("MCOFLOW_CONFIG", None)
    proc = await asyncio.create_subprocess_exec(
        str(MCOFLOW), *args, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=90)
    return proc.returncode or 0, out.decode()


async def test_the_cli_runs_rpc_on_the_nodes(orchestrator: Orchestrator, tmp_path: Path) -> None:
    await _jobs(orchestrator).discover(timeout=2)
    code, out = await _cli(orchestrator, tmp_path, "rpc", "echo", "run", "msg=hi", "web1", "--json")
    assert code == 0, out
    [host] = json.loads(out)["hosts"]
    assert (host["host"], host["status"], host["data"]["msg"]) == ("web1", "success", "hi")

    # what the operator can look up: mcoflow's interfaces of the agents they share
    code, out = await _cli(orchestrator, tmp_path, "agents", "--json")
    assert code == 0, out
    assert sorted(agent["name"] for agent in json.loads(out)) == ["package", "rpcutil", "service"]
    code, out = await _cli(orchestrator, tmp_path, "agents", "--refresh")
    assert code == 3 and "cannot describe their agents" in out, out

    code, out = await _cli(
        orchestrator, tmp_path, "rpc", "echo", "run", "msg=x", "--filter", COMPOUND
    )
    assert code == 2, out
    assert "filter:" in out and "not supported on MCollective nodes" in out


async def test_a_host_that_cannot_describe_its_agents_is_found_out(
    orchestrator: Orchestrator,
) -> None:
    # a job service that does not know its transport asks the node, which refuses
    # rpcutil.agent_interfaces (not in its DDL): mcoflow's interfaces, or none, as above
    jobs = Jobs(orchestrator.world, transport=Transport)
    assert jobs.transport.describes_agents
    await jobs.discover(timeout=2)
    calls = AgentCalls(jobs, fetch_timeout=5)
    [echo] = await _rpc(calls, "echo", "run", "msg=hi", hosts=["db1"])
    assert (echo.status, echo.data["msg"]) == ("success", "hi")


async def test_a_compound_filter_is_refused_before_anything_starts(
    orchestrator: Orchestrator,
) -> None:
    jobs = _jobs(orchestrator)
    calls = AgentCalls(jobs)
    before = (await orchestrator.world.list_plans()).total
    attempts = (
        calls.start("echo", "run", {"msg": "x"}, as_text=True, filter=COMPOUND),
        jobs.discover(COMPOUND),
        jobs.trigger("install", parameter="nginx", filter=f"not ({COMPOUND})"),
    )
    for attempt in attempts:
        with pytest.raises(JobInputError) as refused:
            await attempt
        assert refused.value.field == "filter"
        assert "not supported on MCollective nodes" in refused.value.message
        assert "role=web or role=db" in refused.value.message
    assert (await orchestrator.world.list_plans()).total == before
    # words side by side (ANDed) are fine
    assert await jobs.discover("role=web osfamily=Debian", timeout=2) == ["web1"]


async def test_refused_replies_are_counted_at_metrics(
    orchestrator: Orchestrator, nodes: McoCollective
) -> None:
    transport = orchestrator.transport
    assert isinstance(transport, McollectiveTransport)
    web = WebServer(orchestrator, orchestrator.settings, embedded=True)
    await web.start()
    try:
        async with httpx.AsyncClient(base_url=web.url) as client:
            assert _dropped((await client.get("/metrics")).text) == {
                "bad digest": 0,
                "expired": 0,
                "malformed": 0,
            }
            calls = AgentCalls(_jobs(orchestrator, check_hosts=False))
            async with rogue_node(nodes, "rogue1", psk="forger") as rogue:
                [row] = await _rpc(calls, "echo", "run", "msg=x", hosts=["rogue1"], timeout=2)
            assert rogue.answered == 1 and row.failed
            assert _dropped((await client.get("/metrics")).text)["bad digest"] == 1
    finally:
        await web.stop()


def _dropped(text: str) -> dict[str, float]:
    return {
        s.labels["reason"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "mcoflow_mcollective_replies_dropped_total"
    }
