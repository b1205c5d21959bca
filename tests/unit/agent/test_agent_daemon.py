"""The daemon end to end over the memory transport: signed request in, signed reply out."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mcoflow.agent.providers import SimulationSettings
from mcoflow.rpc.filters import FactFilter, Filter
from mcoflow.rpc.messages import Request, StatusCode
from mcoflow.testing import assert_eventually

MakeRequest = Callable[..., Request]


async def test_ping_is_answered_with_a_signed_reply(
    harness: Any, make_request: MakeRequest
) -> None:
    before = time.time()
    [reply] = await harness.call(make_request("rpcutil", "ping"))
    assert reply.statuscode is StatusCode.OK
    assert reply.sender == "web1"
    assert reply.data["pong"] >= before


async def test_inventory_reports_agents_facts_and_classes(
    harness: Any, make_request: MakeRequest
) -> None:
    [reply] = await harness.call(make_request("rpcutil", "inventory"))
    assert reply.statuscode is StatusCode.OK
    assert reply.data["agents"] == ["rpcutil", "package", "service"]
    assert reply.data["classes"] == ["webserver"]
    assert reply.data["facts"]["role"] == "web"
    assert reply.data["facts"]["identity"] == "web1"
    assert {"os_family", "os_release", "architecture", "hostname"} <= set(reply.data["facts"])


async def test_get_fact(harness: Any, make_request: MakeRequest) -> None:
    [known] = await harness.call(make_request("rpcutil", "get_fact", {"fact": "role"}))
    [unknown] = await harness.call(make_request("rpcutil", "get_fact", {"fact": "nope"}))
    assert known.data == {"fact": "role", "value": "web"}
    assert unknown.statuscode is StatusCode.OK
    assert unknown.data["value"] is None


async def test_install_then_again_reports_changed_then_unchanged(
    harness: Any, make_request: MakeRequest
) -> None:
    [first] = await harness.call(make_request("package", "install", {"package": "hello"}))
    [second] = await harness.call(make_request("package", "install", {"package": "hello"}))
    assert first.statuscode is StatusCode.OK, first.statusmsg
    assert first.data["changed"] is True
    assert first.data["ensure"] == "installed"
    assert first.data["provider"] == "simulated"
    assert second.statuscode is StatusCode.OK
    assert second.data["changed"] is False
    assert harness.fleet.install_count("web1") == 1


async def test_uninstall_and_service_restart(harness: Any, make_request: MakeRequest) -> None:
    await harness.call(make_request("package", "install", {"package": "cron"}))
    [removed] = await harness.call(make_request("package", "uninstall", {"package": "cron"}))
    [again] = await harness.call(make_request("package", "uninstall", {"package": "cron"}))
    [restart] = await harness.call(make_request("service", "restart", {"service": "cron"}))
    [status] = await harness.call(make_request("service", "status", {"service": "cron"}))
    assert (removed.data["changed"], removed.data["ensure"]) == (True, "absent")
    assert again.data["changed"] is False
    assert (restart.statuscode, restart.data["status"]) == (StatusCode.OK, "running")
    assert status.data == {**status.data, "status": "running", "changed": False}


async def test_provider_failure_is_status_1_with_outputs(
    harness_factory: Any, make_request: MakeRequest
) -> None:
    harness = await harness_factory(simulation=SimulationSettings(failure_rate=1.0))
    [reply] = await harness.call(make_request("package", "install", {"package": "hello"}))
    assert reply.statuscode is StatusCode.ABORTED
    assert "simulated failure" in reply.statusmsg
    assert set(reply.data) == {"ensure", "version", "arch", "provider", "changed", "output"}


async def test_unknown_agent_and_action_are_status_2(
    harness: Any, make_request: MakeRequest
) -> None:
    [no_action] = await harness.call(make_request("package", "explode", {"package": "x"}))
    [no_agent] = await harness.call(make_request("puppet", "runonce"))
    assert no_action.statuscode is StatusCode.UNKNOWN_ACTION
    assert "package.explode" in no_action.statusmsg
    assert no_agent.statuscode is StatusCode.UNKNOWN_ACTION
    assert harness.fleet.calls == {}


@pytest.mark.parametrize(
    ("data", "code", "field"),
    [
        ({}, StatusCode.MISSING_DATA, "package"),
        ({"package": "Bad Name"}, StatusCode.INVALID_DATA, "package"),
        ({"package": "x" * 300}, StatusCode.INVALID_DATA, "package"),
        ({"package": 5}, StatusCode.INVALID_DATA, "package"),
        ({"package": "hello", "version": "1.0; rm -rf /"}, StatusCode.INVALID_DATA, "version"),
        ({"package": "hello", "extra": 1}, StatusCode.INVALID_DATA, "extra"),
    ],
)
async def test_bad_input_is_refused_naming_the_field(
    harness: Any, make_request: MakeRequest, data: dict[str, Any], code: StatusCode, field: str
) -> None:
    [reply] = await harness.call(make_request("package", "install", data))
    assert reply.statuscode is code
    assert reply.statusmsg.startswith(f"input {field} ")
    assert harness.fleet.calls == {}


async def test_broadcast_reaches_only_matching_hosts(
    harness_factory: Any, make_request: MakeRequest
) -> None:
    harness = await harness_factory(identities=["web1", "web2", "db1"], simulate_hosts=0)
    match_web = make_request(filter=Filter(identity=("/^web/",)))
    match_facts = make_request(
        filter=Filter(facts=(FactFilter(fact="cpus", operator=">=", value="4"),))
    )
    match_none = make_request(filter=Filter(classes=("dbserver",)))
    for request in (match_web, match_facts, match_none):
        await harness.broadcast(request)
    await assert_eventually(lambda: _senders(harness, match_web) == ["web1", "web2"])
    await assert_eventually(lambda: _senders(harness, match_facts) == ["db1", "web1", "web2"])
    # Sent after the others on the same queue: once its reply is in, the others were handled.
    last = make_request()
    await harness.broadcast(last)
    await assert_eventually(lambda: len(harness.replies_to(last)) == 3)
    assert harness.replies_to(match_none) == []


def _senders(harness: Any, request: Request) -> list[str]:
    senders = sorted(r.sender for r in harness.replies_to(request))
    assert senders, "no replies yet"
    return senders


async def test_one_host_ignores_requests_whose_filter_does_not_match(
    harness: Any, make_request: MakeRequest
) -> None:
    # One identity: direct requests and broadcasts share the host's queue; a miss is silent.
    missed = make_request(
        "package", "install", {"package": "hello"}, filter=Filter(classes=("db",))
    )
    hit = make_request("rpcutil", "ping", filter=Filter(classes=("webserver",)))
    await harness.broadcast(missed)
    await harness.send(missed.model_copy(update={"id": "direct-miss"}))
    await harness.broadcast(hit)
    await assert_eventually(lambda: len(harness.replies_to(hit)) == 1)
    later = make_request()
    await harness.call(later)
    assert harness.replies_to(missed) == []
    assert [r for r in harness.replies if r.request_id == "direct-miss"] == []
    assert harness.fleet.calls == {}


async def test_simulated_hosts_answer_one_broadcast(
    harness_factory: Any, make_request: MakeRequest
) -> None:
    harness = await harness_factory(simulate_hosts=300)
    request = make_request()
    await harness.broadcast(request)
    await assert_eventually(lambda: len(harness.replies_to(request)) == 300)
    assert {r.sender for r in harness.replies_to(request)} == {
        f"sim-{n:05d}" for n in range(1, 301)
    }
    direct = make_request("package", "install", {"package": "hello"})
    await harness.send(direct, identities=["sim-00007"])
    await assert_eventually(lambda: len(harness.replies_to(direct)) == 1)
    assert harness.replies_to(direct)[0].sender == "sim-00007"
    assert harness.fleet.install_count("sim-00007") == 1
    assert harness.fleet.total("install") == 1


async def test_simulated_hosts_batch_their_replies(
    harness_factory: Any, make_request: MakeRequest
) -> None:
    # 300 identities answering one broadcast: the replies ready together share signed
    # envelopes of at most reply_batch replies instead of one envelope each.
    harness = await harness_factory(simulate_hosts=300, reply_batch=128)
    batcher = harness.daemon.dispatcher.batcher
    assert batcher is not None and batcher.max_replies == 128
    request = make_request()
    await harness.broadcast(request)
    await assert_eventually(lambda: len(harness.replies_to(request)) == 300)
    assert 3 <= batcher.envelopes <= 10
    assert len({r.sender for r in harness.replies_to(request)}) == 300


async def test_reply_batch_one_sends_every_reply_alone(
    harness_factory: Any, make_request: MakeRequest
) -> None:
    harness = await harness_factory(simulate_hosts=20, reply_batch=1)
    assert harness.daemon.dispatcher.batcher is None
    request = make_request()
    await harness.broadcast(request)
    await assert_eventually(lambda: len(harness.replies_to(request)) == 20)


async def test_a_single_identity_does_not_batch(harness: Any) -> None:
    assert harness.daemon.dispatcher.batcher is None


async def test_a_host_syncs_its_journal_and_simulated_hosts_do_not(
    harness_factory: Any, tmp_path: Path
) -> None:
    # a real host's "running" record must survive a power loss before the command runs
    real = await harness_factory(
        package_provider="apt", service_provider="sysv", journal_file=tmp_path / "real.sqlite"
    )
    assert real.daemon.config.changes_the_host and real.daemon.journal.synced
    simulated = await harness_factory(journal_file=tmp_path / "sim.sqlite")
    assert not simulated.daemon.config.changes_the_host
    assert not simulated.daemon.journal.synced


async def test_refusals_are_logged(
    harness: Any, make_request: MakeRequest, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mcoflow.agent")
    await harness.call(make_request("package", "install", {}))
    assert any(
        "refused request" in r.message and "caller ops" in r.message and "package" in r.message
        for r in caplog.records
    )


async def test_stop_lets_a_running_action_finish(
    harness_factory: Any, make_request: MakeRequest
) -> None:
    harness = await harness_factory(simulation=SimulationSettings(delay=0.5))
    request = make_request("package", "install", {"package": "hello"})
    await harness.send(request)
    await assert_eventually(lambda: harness.fleet.install_count("web1") == 1)
    await harness.daemon.stop()
    await assert_eventually(lambda: len(harness.replies_to(request)) == 1)
    assert harness.replies_to(request)[0].data["changed"] is True


async def test_simulation_stats_file_counts_calls_per_identity(
    harness_factory: Any, make_request: MakeRequest, tmp_path: Path
) -> None:
    from mcoflow.agent.providers.simulated import read_stats

    stats = tmp_path / "stats" / "calls.json"
    harness = await harness_factory(
        simulation=SimulationSettings(stats_file=stats, stats_interval=0.02)
    )
    assert read_stats(stats)["calls"] == {}  # written at start: the agent is ready
    await harness.call(make_request("package", "install", {"package": "hello"}))
    await harness.call(make_request("service", "restart", {"service": "cron"}))
    await assert_eventually(
        lambda: read_stats(stats)["calls"] == {"web1": {"install": 1, "restart": 1}}
    )
    await harness.call(make_request("package", "install", {"package": "hello"}))  # no change
    await harness.call(make_request("package", "install", {"package": "curl"}))
    await harness.daemon.stop()  # the last counts are written at stop whatever the interval
    document = read_stats(stats)
    assert document["calls"] == {"web1": {"install": 2, "restart": 1}}
    assert document["pid"] == os.getpid()
    assert [p.name for p in stats.parent.iterdir()] == ["calls.json"]  # no partial files
