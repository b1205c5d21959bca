"""run_agent and `python -m mcoflow.agent`: start, serve, stop on request or SIGTERM."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from mcoflow.agent.__main__ import main
from mcoflow.agent.daemon import run_agent
from mcoflow.agent.settings import AgentSettings
from mcoflow.rpc.filters import Filter
from mcoflow.rpc.transports.memory import MemoryBroker, MemoryTransport
from mcoflow.testing import LoggedProcess, assert_eventually
from mcoflow.testing.rpc import DirectClient

REPO = Path(__file__).resolve().parents[3]


def _config(keys: Any, tmp_path: Path, **extra: Any) -> AgentSettings:
    return AgentSettings(
        identity="solo",
        key_file=keys.folder / "host.key",
        trusted_keys=keys.trusted,
        journal_file=tmp_path / "journal.sqlite",
        package_provider="simulated",
        service_provider="simulated",
        **extra,
    )


async def test_run_agent_serves_until_stopped(keys: Any, tmp_path: Path) -> None:
    broker = MemoryBroker()
    agent_transport, client_transport = MemoryTransport(broker), MemoryTransport(broker)
    await agent_transport.connect()
    await client_transport.connect()
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_agent(_config(keys, tmp_path), transport=agent_transport, stop=stop)
    )
    client = DirectClient(
        client_transport,
        keys.caller,
        collective="mcoflow",
        reply_to="entry-replies",
        verifier=keys.reply_verifier,
    )
    await client.start()
    found: list[str] = []
    for _ in range(100):
        found = await client.discover(Filter(identity=("solo",)), timeout=0.2, expect=1)
        if found:
            break
    assert found == ["solo"]
    stop.set()
    await asyncio.wait_for(task, 5)
    assert task.done()
    assert task.exception() is None
    await client.close()
    await client_transport.close()
    await agent_transport.close()


def test_main_refuses_a_bad_config_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text("identity: x\nsurprise: true\n")
    assert main(["--config", str(config)]) == 2
    assert "invalid agent config" in capsys.readouterr().err


def test_main_reports_a_missing_key_file(
    keys: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(f"key_file: {tmp_path}/nope.key\ntrusted_keys: {keys.trusted}\n")
    assert main(["--config", str(config), "--log-level", "ERROR"]) == 2
    assert "cannot start" in capsys.readouterr().err


async def test_agent_process_stops_cleanly_on_sigterm(keys: Any, tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(
        f"identity: solo\nkey_file: {keys.folder}/host.key\ntrusted_keys: {keys.trusted}\n"
        f"journal_file: {tmp_path}/journal.sqlite\nbroker_url: memory://\n"
        "package_provider: simulated\nservice_provider: simulated\n"
    )
    process = LoggedProcess(
        [sys.executable, "-m", "mcoflow.agent", "--config", str(config)],
        log=tmp_path / "agent.log",
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
    )
    try:
        await assert_eventually(lambda: "agent ready" in process.log.read_text(), timeout=30)
        assert process.stop(timeout=30) == 0  # SIGTERM
        assert "agent stopped" in process.log.read_text()
    finally:
        if process.alive():
            process.kill()
