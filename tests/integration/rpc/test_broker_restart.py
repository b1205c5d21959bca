"""RabbitMQ goes away mid-run and comes back: the client reconnects, nothing is lost."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from mcoflow.rpc import Reply, Request
from mcoflow.testing import assert_eventually
from tests.rpc_fixtures import (
    Keys,
    Lab,
    queue_depth,
    rabbitmqctl,
    require_broker_restarts,
    wait_for_depth,
)
from tests.rpc_responder import HostProfile, Outcome

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
async def amqp_lab(collective: str, keys: Keys) -> AsyncIterator[Lab]:
    url = require_broker_restarts()
    lab = Lab(url, collective, keys)
    try:
        yield lab
    finally:
        await rabbitmqctl("start_app")  # whatever happened, leave the broker running
        await lab.cleanup()


async def test_broker_restart_loses_no_request_and_no_reply(amqp_lab: Lab) -> None:
    gate = asyncio.Event()
    started: list[str] = []
    runs: list[str] = []

    async def waits_for_gate(request: Request, host: HostProfile) -> Outcome:
        started.append(request.id)
        await gate.wait()
        runs.append(request.id)
        return Outcome(data={"done": request.id})

    await amqp_lab.fleet(["web1"], actions={"echo": {"run": waits_for_gate}})
    replies: dict[str, Reply] = {}

    async def on_reply(reply: Reply) -> None:
        replies[reply.request_id] = reply

    client = await amqp_lab.client(on_reply=on_reply)
    before = [client.build("echo", "run", {"n": n}, ttl=120) for n in range(5)]
    for request in before:
        await client.send(request, ["web1"])
    await assert_eventually(lambda: len(started) == 5, timeout=10)

    await rabbitmqctl("stop_app")
    assert not client.transport.connected
    gate.set()  # the host finishes its work and replies while the broker is down
    await assert_eventually(lambda: len(runs) == 5, timeout=5)
    after = [client.build("echo", "run", {"n": n}, ttl=120) for n in range(5, 8)]
    # sent while down: these publishes wait for the reconnection
    sending = asyncio.gather(*(client.send(request, ["web1"]) for request in after))
    await asyncio.sleep(0.5)
    assert not sending.done()
    await rabbitmqctl("start_app")
    await asyncio.wait_for(sending, 30)

    expected = {request.id for request in before + after}
    await assert_eventually(lambda: set(replies) == expected, timeout=30)
    assert all(reply.data == {"done": reply.request_id} for reply in replies.values())
    # redelivered requests are answered from the journal, not run again
    assert sorted(runs) == sorted(expected)
    assert client.transport.connected
    # and the connection works normally again
    result = await client.call("echo", "run", identities=["web1"], timeout=10)
    assert result.result_for("web1").ok
    assert uuid.UUID(result.result_for("web1").request_id)


async def test_a_call_in_progress_is_sent_again_when_the_broker_lost_it(amqp_lab: Lab) -> None:
    # The host's queue exists but nobody consumes it: the request waits in the broker,
    # which then restarts and loses it (requests are transient).
    away = await amqp_lab.fleet(["db1", "db2"])
    await away.stop()
    client = await amqp_lab.client()
    call = asyncio.create_task(client.call("echo", "run", {"n": 1}, identities=["db1"], timeout=60))
    db1, db2 = (f"mcoflow.{amqp_lab.collective}.node.{h}" for h in ("db1", "db2"))
    await wait_for_depth(amqp_lab.url, db1, 1)

    await rabbitmqctl("stop_app")
    await rabbitmqctl("start_app")
    # once reconnected, the client publishes it again; the host comes back and answers
    await wait_for_depth(amqp_lab.url, db1, 1)
    assert await queue_depth(amqp_lab.url, db2) == 0  # only where it was due
    await amqp_lab.fleet(["db1", "db2"])
    result = await asyncio.wait_for(call, 30)
    assert result.result_for("db1").ok
    assert result.result_for("db1").data["echo"] == {"n": 1}
