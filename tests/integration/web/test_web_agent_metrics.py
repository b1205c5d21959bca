"""Refused agent messages are counted by reason at ``/metrics`` (in-process agents of
`mcoflow serve`) and at the metrics_listen address of a standalone agent (issue 16)."""

from __future__ import annotations

import base64
import json
import socket
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from web_client import Web

from mcoflow.agent.dispatcher import Dispatcher
from mcoflow.agent.plugins.base import HostContext
from mcoflow.agent.refusals import serve_agent_metrics
from mcoflow.rpc.security import Signer, Verifier, generate_keypair

# well-formed, signed by a key no agent trusts
FORGED = json.dumps(
    {"v": 1, "signer": "nobody", "body": "e30=", "sig": base64.b64encode(bytes(64)).decode()}
).encode()


def _refused(text: str) -> dict[str, float]:
    return {
        s.labels["reason"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "mcoflow_agent_refused_total"
    }


async def _flood(tmp_path: Path, count: int) -> None:
    key, _ = generate_keypair(tmp_path / "keys", "host")

    async def publish(body: bytes, destination: str) -> None:
        raise AssertionError("a refused message gets no reply")

    dispatcher = Dispatcher(
        verifier=Verifier({}), signer=Signer.from_file(key), agents={}, publish=publish
    )
    host = HostContext(identity="web-01", collective="mcoflow", facts={}, classes=(), agents=())
    for _ in range(count):
        await dispatcher.handle(host, FORGED)


async def test_refusals_of_in_process_agents_show_at_metrics(web: Web, tmp_path: Path) -> None:
    before = _refused((await web.client.get("/metrics")).text).get("unknown_signer", 0.0)
    await _flood(tmp_path, 50)
    after = _refused((await web.client.get("/metrics")).text)
    assert after["unknown_signer"] - before == 50


async def test_a_standalone_agent_serves_its_counts_on_metrics_listen(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = serve_agent_metrics(f"127.0.0.1:{port}")
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        async with httpx.AsyncClient(timeout=5) as client:
            before = _refused((await client.get(url)).text)
            await _flood(tmp_path, 3)
            after = _refused((await client.get(url)).text)
        assert after["unknown_signer"] - before.get("unknown_signer", 0.0) == 3
    finally:
        server.shutdown()
        server.server_close()
