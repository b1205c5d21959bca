"""RabbitMQ goes away mid-run and comes back: the client reconnects, nothing is lost."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator

import pytest

from mcoflow.rpc import HostProfile, Outcome, Reply, Request
from tests.rpc_fixtures import Keys, Lab, assert_eventually, require_amqp

pytestmark = pytest.mark.rabbitmq


async def rabbitmqctl(*args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl",
        *args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await process.communicate()
    assert process.returncode == 0, f"rabbitmqctl {' '.join(args)}: {stderr.decode()}"


@pytest.fixture
async def amqp_lab(collective: str, keys: Keys) -> AsyncIterator[Lab]:
    url = require_amqp()
    if shutil.which("rabbitmqctl") is None or os.geteuid() != 0:
        message = "restarting RabbitMQ needs rabbitmqctl and root"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
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
