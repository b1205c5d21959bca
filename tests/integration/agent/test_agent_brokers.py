"""The agent daemon over RabbitMQ and NATS, driven by the real RPC client."""

from __future__ import annotations

import json
import logging

import pytest
from agent_site import Site

from mcoflow.rpc.envelope import seal
from mcoflow.rpc.filters import FactFilter, Filter
from mcoflow.rpc.messages import Reply, StatusCode
from mcoflow.testing import assert_eventually
from mcoflow.testing.rpc import NO_RESPONSE


async def test_install_twice_and_restart_through_the_broker(site: Site) -> None:
    daemon = await site.daemon()
    [identity] = daemon.hosts
    client = await site.client()
    assert await client.discover(Filter(identity=(identity,)), timeout=30.0, expect=1) == [identity]
    first = await client.call(
        "package", "install", {"package": "hello"}, identities=[identity], timeout=30.0
    )
    second = await client.call(
        "package", "install", {"package": "hello"}, identities=[identity], timeout=30.0
    )
    restart = await client.call(
        "service", "restart", {"service": "cron"}, identities=[identity], timeout=30.0
    )
    assert first.result_for(identity).statuscode is StatusCode.OK
    assert first.result_for(identity).data["changed"] is True
    assert second.result_for(identity).data["changed"] is False
    assert restart.result_for(identity).data["status"] == "running"
    assert daemon.fleet.install_count(identity) == 1


async def test_many_simulated_hosts_behind_one_fanout(site: Site) -> None:
    daemon = await site.daemon(simulate_hosts=200, simulate_pattern="sim{n:04d}", facts={"rack": 3})
    client = await site.client()
    everyone = await client.discover(timeout=30.0, expect=200)
    assert len(everyone) == 200
    some = await client.discover(Filter(identity=("/^sim000[1-9]$/",)), timeout=10.0, expect=9)
    assert some == [f"sim{n:04d}" for n in range(1, 10)]
    by_fact = Filter(facts=(FactFilter(fact="rack", operator=">=", value="3"),))
    result = await client.call(
        "package",
        "install",
        {"package": "hello"},
        filter=by_fact,
        timeout=30.0,
        expect=200,
        discovery_timeout=30.0,
    )
    assert len(result.results) == 200
    assert all(r.ok and r.data["changed"] is True for r in result.results)
    assert daemon.fleet.total("install") == 200


async def test_untrusted_and_unauthorized_callers_run_nothing(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mcoflow.agent")
    policy = site.folder / "policy.yaml"
    policy.write_text("rules:\n  - allow: {caller: ops, agent: rpcutil}\n")
    daemon = await site.daemon(policy_file=policy)
    [identity] = daemon.hosts
    mallory = await site.client("mallory")
    forged = await mallory.call(
        "package", "install", {"package": "hello"}, identities=[identity], timeout=2.0
    )
    ops = await site.client()
    denied = await ops.call(
        "package", "install", {"package": "hello"}, identities=[identity], timeout=30.0
    )
    assert forged.result_for(identity).statuscode is NO_RESPONSE
    assert denied.result_for(identity).statuscode is StatusCode.ABORTED
    assert "not authorized" in denied.result_for(identity).statusmsg
    assert daemon.fleet.calls == {}
    messages = [r.getMessage() for r in caplog.records]
    assert any("unknown signer 'mallory'" in m for m in messages)
    assert any("not authorized" in m and "caller ops" in m for m in messages)


async def test_redelivered_request_after_restart_is_answered_from_the_journal(
    site: Site,
) -> None:
    first = await site.daemon(identity="journal-host")
    client = await site.client()
    replies: list[Reply] = []

    async def collect(reply: Reply) -> None:
        replies.append(reply)

    client.on_reply = collect
    request = client.build("package", "install", {"package": "hello"}, ttl=60.0)
    envelope = seal(request, client.signer)

    async def publish(body: bytes) -> None:
        await client.transport.publish_request(
            body, collective=site.collective, agent="package", identities=["journal-host"]
        )

    await publish(envelope)
    await assert_eventually(lambda: len(replies) == 1)
    await first.stop()
    site.daemons.remove(first)
    second = await site.daemon(identity="journal-host")
    # The same signed request, framed with other whitespace: NATS would drop a
    # byte-identical publish as a duplicate (Nats-Msg-Id) before the host saw it.
    await publish(json.dumps(json.loads(envelope)).encode())
    await assert_eventually(lambda: len(replies) == 2)
    assert [r.statuscode for r in replies] == [StatusCode.OK, StatusCode.OK]
    assert replies[0].data == replies[1].data
    assert replies[1].data["changed"] is True
    assert first.fleet.install_count("journal-host") == 1
    assert second.fleet.install_count("journal-host") == 0
