"""Key rotation and revocation on real processes (issue 20 item 7).

A real `mcoflow agent` process over the real RabbitMQ trusts the caller keys in
keys/callers/; a caller (DirectClient, signing with a FileSigner on the orchestrator's
key file as `mcoflow serve` does) sends requests without a pause while `mcoflow keys
rotate` and `mcoflow keys retire` run: no request is refused or left unanswered. Then
`mcoflow keys revoke` the old key: a request signed with it (a stolen copy) is refused
within the agent's reload interval, nothing is run, and /metrics counts it as
``revoked_key``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mcoflow.rpc.key_files import FileSigner
from mcoflow.rpc.messages import StatusCode
from mcoflow.rpc.security import Signer, Verifier
from mcoflow.rpc.transports import transport_from_url
from mcoflow.testing import LoggedProcess, assert_eventually
from mcoflow.testing.rpc import DirectClient
from tests.acceptance.web.serve_process import MCOFLOW, free_port
from tests.rpc_fixtures import drop_reply_queues, require_amqp

pytestmark = pytest.mark.rabbitmq

RELOAD = 1.0  # the agent's trusted_keys_reload
LOOPS = 3  # callers sending at once


@dataclass
class Fleet:
    folder: Path
    url: str
    identity: str
    collective: str
    metrics: str
    env: dict[str, str]
    agent: LoggedProcess | None = None
    clients: list[DirectClient] = field(default_factory=list)
    reply_queues: list[str] = field(default_factory=list)

    @property
    def keys(self) -> Path:
        return self.folder / "keys"

    async def keys_command(self, *args: str) -> str:
        """`mcoflow keys ARGS` in its own process; its output."""
        process = await asyncio.create_subprocess_exec(
            str(MCOFLOW),
            "keys",
            *args,
            env=self.env,
            cwd=self.folder,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        text = output.decode()
        assert process.returncode == 0, f"mcoflow keys {' '.join(args)}: {text}"
        return text

    async def key_states(self) -> dict[str, tuple[str, str]]:
        """name -> (fingerprint, state) of the caller keys, from `mcoflow keys list`."""
        rows = [
            json.loads(line) for line in (await self.keys_command("list", "--json")).splitlines()
        ]
        return {r["name"]: (r["fingerprint"], r["state"]) for r in rows if r["kind"] == "caller"}

    async def client(self, signer: Signer) -> DirectClient:
        transport = transport_from_url(self.url)
        await transport.connect()
        reply_to = f"mcoflow-test.rotation.{uuid.uuid4().hex[:10]}"
        self.reply_queues.append(reply_to)
        client = DirectClient(
            transport,
            signer,
            collective=self.collective,
            reply_to=reply_to,
            verifier=Verifier.from_directory(self.keys / "hosts"),
        )
        await client.start()
        self.clients.append(client)
        return client

    def refusals(self) -> dict[str, float]:
        """The agent's mcoflow_agent_refused_total by reason, from its /metrics."""
        with urllib.request.urlopen(f"http://{self.metrics}/metrics", timeout=5) as response:
            text = response.read().decode()
        found = re.findall(r'^mcoflow_agent_refused_total\{reason="(\w+)"\} (\S+)$', text, re.M)
        return {reason: float(value) for reason, value in found}


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    url = require_amqp()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCOFLOW_")}
    env.update(MCOFLOW_KEYS_DIR=str(tmp_path / "keys"), MCOFLOW_CALLER="mcoflow")
    fleet = Fleet(
        tmp_path,
        url,
        identity=f"rot-{uuid.uuid4().hex[:8]}",
        collective=f"rot{uuid.uuid4().hex[:8]}",
        metrics=f"127.0.0.1:{free_port()}",
        env=env,
    )
    await fleet.keys_command("init")
    await fleet.keys_command("host", fleet.identity)
    config = tmp_path / "agent.yaml"
    config.write_text(
        f"identity: {fleet.identity}\ncollective: {fleet.collective}\nbroker_url: '{url}'\n"
        f"key_file: keys/host-keys/{fleet.identity}.key\ntrusted_keys: keys/callers\n"
        f"trusted_keys_reload: {RELOAD}\njournal_file: journal.sqlite\n"
        f"package_provider: simulated\nservice_provider: simulated\n"
        f"metrics_listen: '{fleet.metrics}'\n"
    )
    fleet.agent = LoggedProcess(
        [str(MCOFLOW), "agent", "--config", str(config)],
        log=tmp_path / "agent.log",
        env=env,
        cwd=tmp_path,
    )
    try:
        yield fleet
    finally:
        for client in fleet.clients:
            await client.close()
        fleet.agent.stop(timeout=30)
        if fleet.clients:
            transport = fleet.clients[0].transport
            await transport.forget_host(identity=fleet.identity, collective=fleet.collective)
        for client in fleet.clients:
            await client.transport.close()
        await drop_reply_queues(url, fleet.reply_queues)


@dataclass
class Traffic:
    """Requests sent one after the other by LOOPS callers, until stopped."""

    client: DirectClient
    identity: str
    answered_by_key: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def loop(self) -> None:
        while not self.stop.is_set():
            result = await self.client.call(
                "rpcutil", "ping", identities=[self.identity], timeout=5.0
            )
            outcome = result.result_for(self.identity)
            if outcome.statuscode is StatusCode.OK:
                # the key the request was signed with (a key change during the call can
                # only make this the newer one)
                self.answered_by_key[self.client.signer.fingerprint] += 1
            else:
                self.failures.append(f"{outcome.statuscode}: {outcome.statusmsg}")

    def answered(self, fingerprint: str) -> int:
        return self.answered_by_key[fingerprint]


async def test_a_rotation_refuses_nothing_and_a_revoked_key_is_refused_and_counted(
    fleet: Fleet,
) -> None:
    assert fleet.agent is not None
    key_file = fleet.keys / "orchestrator" / "mcoflow.key"
    signer = FileSigner(key_file, "mcoflow", check_interval=0.2)
    client = await fleet.client(signer)
    deadline = time.monotonic() + 60
    while not await client.discover(timeout=1.0, expect=1):
        assert fleet.agent.alive(), f"agent exited:\n{fleet.agent.output()}"
        assert time.monotonic() < deadline, f"agent never answered:\n{fleet.agent.output()}"
    # what a thief of the old key holds
    stolen_file = fleet.folder / "stolen.key"
    shutil.copyfile(key_file, stolen_file)
    old = signer.fingerprint

    traffic = Traffic(client, fleet.identity)
    loops = [asyncio.create_task(traffic.loop()) for _ in range(LOOPS)]
    try:
        await assert_eventually(lambda: _answered(traffic, old, 30), timeout=20.0)
        # (a discovery ping that reached the agent as it started may have expired)
        refused_before = fleet.refusals()
        await fleet.keys_command("rotate")
        states = await fleet.key_states()
        assert states["mcoflow"] == (old, "trusted"), states
        (new,) = [fp for fp, state in states.values() if state == "signing"]
        # the caller switches to the new key by itself, and the agent accepts it
        await assert_eventually(lambda: _answered(traffic, new, 30), timeout=20.0)
        # every request signed with the old key has been answered (each loop waits for
        # its answer), so the old key can go
        await fleet.keys_command("retire", "mcoflow")
        seen = traffic.answered(new)
        await asyncio.sleep(3 * RELOAD)  # the agent has seen the old key go
        await assert_eventually(lambda: _answered(traffic, new, seen + 30), timeout=20.0)
    finally:
        traffic.stop.set()
        await asyncio.gather(*loops)
    assert traffic.failures == [], traffic.failures[:5]
    assert traffic.answered(old) > 0 and traffic.answered(new) > 0
    refused = fleet.refusals()
    assert refused == refused_before, f"refused during the rotation: {refused}"
    log = fleet.agent.output(20000)
    assert "added mcoflow+" in log and "no longer trusted mcoflow (" in log, log

    # revocation: the old key, retired, is now revoked
    await fleet.keys_command("revoke", "mcoflow")
    assert (await fleet.key_states())["mcoflow"] == (old, "revoked")
    # the bound: one reload interval after the change (the first request after it is
    # refused as revoked; before it, as signed by a key no longer trusted)
    await asyncio.sleep(RELOAD + 0.5)
    thief = await fleet.client(Signer.from_file(stolen_file, "mcoflow"))
    result = await thief.call(
        "package", "install", {"package": "stolen"}, identities=[fleet.identity], timeout=3.0
    )
    assert not result.result_for(fleet.identity).responded, "a refused request gets no reply"
    assert fleet.refusals().get("revoked_key") == 1.0
    status = await client.call(
        "package", "status", {"package": "stolen"}, identities=[fleet.identity], timeout=5.0
    )
    outcome = status.result_for(fleet.identity)
    assert outcome.statuscode is StatusCode.OK and outcome.data["ensure"] == "absent", outcome
    assert "signed with revoked key" in fleet.agent.output(20000)


def _answered(traffic: Traffic, fingerprint: str, count: int) -> None:
    assert not traffic.failures, traffic.failures[:5]
    assert traffic.answered(fingerprint) >= count, dict(traffic.answered_by_key)
