"""What an MCollective transport changes for the operator, without a broker: filters
refused when a job is asked for, mcoflow's interfaces standing in for the nodes' agents,
the refused replies at /metrics, and `mcoflow executor --check`."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import CollectorRegistry

from mcoflow.actions.jobs import Jobs, configured_transport
from mcoflow.actions.undescribed import own_action, own_agents, undeclared_inputs
from mcoflow.checks import Problem, check_transport_url
from mcoflow.checks.executor import check_executor
from mcoflow.engine import World
from mcoflow.job_request import JobInputError
from mcoflow.rpc.filters import FilterError
from mcoflow.rpc.targeting import parse
from mcoflow.rpc.transport import Transport
from mcoflow.rpc.transports import transport_class
from mcoflow.rpc.transports.mcollective import McollectiveTransport
from mcoflow.settings import Settings
from mcoflow.web.metrics import mcollective_drops

URL = "stomp+mcollective://mcollective:secret@127.0.0.1:61613/%2Fmcollective?collective=x"
DDL = Path(__file__).resolve().parents[3] / "mcollective" / "plugins" / "mcollective" / "agent"


def test_the_url_says_which_filters_the_hosts_apply() -> None:
    assert transport_class(URL) is McollectiveTransport
    assert transport_class("amqp://guest:guest@localhost/") is Transport
    assert transport_class("memory://") is Transport
    compound = parse("role=web or not class:db")
    Transport.check_filter(compound)  # mcoflow's agents apply it
    with pytest.raises(FilterError, match="role=web or not class:db"):
        McollectiveTransport.check_filter(compound)
    McollectiveTransport.check_filter(parse("role=web class:db"))
    assert Transport.describes_agents and not McollectiveTransport.describes_agents


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    opened = await World.open(f"sqlite:///{tmp_path / 'engine.db'}")
    try:
        yield opened
    finally:
        await opened.close()


async def test_a_job_refuses_a_compound_filter_naming_it(world: World) -> None:
    jobs = Jobs(world, transport=McollectiveTransport)
    with pytest.raises(JobInputError) as refused:
        await jobs.target_filter("role=web or role=db")
    assert refused.value.field == "filter"
    assert "'role=web or role=db'" in refused.value.message
    assert "not supported on MCollective nodes" in refused.value.message
    assert await jobs.target_filter("role=web") is not None
    # the inventory's own matching is not the nodes': it takes any filter
    assert await jobs.hosts("role=web or role=db") == []
    assert await Jobs(world, transport=Transport).target_filter("role=web or role=db")


def test_the_configured_transport_comes_from_the_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MCOFLOW_CONFIG", raising=False)
    monkeypatch.setenv("MCOFLOW_TRANSPORT_URL", URL)
    assert configured_transport() is McollectiveTransport
    monkeypatch.setenv("MCOFLOW_TRANSPORT_URL", "memory://")
    assert configured_transport() is Transport


def _ddl(agent: str) -> tuple[set[str], set[str]]:
    """The actions and inputs an MCollective agent's DDL declares (the test fixtures,
    which have the widely used package and service agents' interfaces)."""
    text = (DDL / f"{agent}.ddl").read_text()
    match = re.search(r"%w\[([^\]]*)\]\.each", text)
    assert match is not None
    return set(match.group(1).split()), set(re.findall(r"input :(\w+)", text))


@pytest.mark.parametrize("agent", ["package", "service"])
def test_mcoflows_interfaces_match_the_mcollective_agents(agent: str) -> None:
    actions, inputs = _ddl(agent)
    own = own_agents()[agent]
    assert set(own.actions) == actions
    assert {spec.name for a in own.actions.values() for spec in a.inputs} == inputs
    status = own_action(agent, "status")
    assert status is not None and status.read_only
    assert own_action(agent, "frobnicate") is None
    assert own_action("echo", "run") is None


def test_undeclared_inputs_pass_as_given_with_plain_names() -> None:
    assert undeclared_inputs({"msg": "hi", "count": 3}) == {"msg": "hi", "count": 3}
    with pytest.raises(JobInputError) as bad:
        undeclared_inputs({"no good": "x"})
    assert bad.value.field == "inputs.no good"


def test_refused_replies_by_reason_at_metrics() -> None:
    registry = CollectorRegistry(auto_describe=False)

    class Snapshot:
        def collect(self) -> Iterator[Metric]:
            return iter([mcollective_drops({"bad digest": 2, "expired": 0})])

    registry.register(Snapshot())
    text = generate_latest(registry).decode()
    assert 'mcoflow_mcollective_replies_dropped_total{reason="bad digest"} 2.0' in text
    assert 'mcoflow_mcollective_replies_dropped_total{reason="expired"} 0.0' in text


def test_the_check_takes_an_mcollective_url_but_not_for_an_agent() -> None:
    assert "127.0.0.1:61613" in check_transport_url("transport_url", URL, Settings())
    with pytest.raises(Problem, match="broker_url: mcoflow's agent does not run"):
        check_transport_url("broker_url", URL, Settings(), agent=True)


def test_the_executor_check_names_a_missing_psk(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MCOFLOW_CONFIG", raising=False)
    monkeypatch.delenv("MCOFLOW_MCOLLECTIVE_PSK", raising=False)
    monkeypatch.setenv("MCOFLOW_TRANSPORT_URL", URL)
    assert check_executor({}, []) == 2
    lines = capsys.readouterr().out.splitlines()
    [psk] = [line for line in lines if line.startswith("mcollective_psk:")]
    assert "FAILED" in psk and "plugin.psk" in psk
    [url] = [line for line in lines if line.startswith("transport_url:")]
    assert " ok " in url

    monkeypatch.setenv("MCOFLOW_MCOLLECTIVE_PSK", "the-nodes-psk")
    check_executor({}, [])
    lines = capsys.readouterr().out.splitlines()
    [psk] = [line for line in lines if line.startswith("mcollective_psk:")]
    assert " ok " in psk and "the-nodes-psk" not in psk
    [hosts] = [line for line in lines if line.startswith("host keys:")]
    assert " ok " in hosts and "not used" in hosts
