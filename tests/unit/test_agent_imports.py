"""The agent runs on every host: its process loads nothing of the web console or of the
engine's database layer, so a host needs none of their packages (the README's minimal
install). Checked in a fresh interpreter (this one has loaded everything already) that
runs the agent through each entry point until it is ready, then stops it as SIGTERM
does (or runs `mcoflow agent --check`), and lists what it loaded."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from mcoflow.rpc import generate_keypair, transport_from_url
from tests.rpc_fixtures import require_amqp, require_nats

# the web console, the engine and its database layer, and what only they use
NOT_IN_THE_AGENT = (
    "mcoflow.web", "mcoflow.engine", "mcoflow.actions", "mcoflow.orchestrator",
    "fastapi", "starlette", "jinja2", "uvicorn", "multipart", "python_multipart",
    "sqlalchemy", "alembic", "psycopg", "aiosqlite",
)  # fmt: skip

# The daemon is started as the entry point starts it; once it is ready, SIGTERM stops it
# through the agent's own handler. Then: the exit status and what was loaded.
PROBE = """
import json, os, runpy, signal, sys
import mcoflow.agent.daemon as daemon

started = daemon.AgentDaemon.start
async def start_then_stop(self):
    await started(self)
    print("ready", flush=True)
    os.kill(os.getpid(), signal.SIGTERM)
daemon.AgentDaemon.start = start_then_stop

entry, config = sys.argv[1:]
try:
    if entry in ("cli", "check"):
        sys.argv = ["mcoflow", "agent", "--config", config]
        if entry == "check":
            sys.argv.append("--check")
        from mcoflow.cli import main
        main()
    else:
        sys.argv = ["mcoflow.agent", "--config", config]
        runpy.run_module("mcoflow.agent", run_name="__main__", alter_sys=True)
    status = 0
except SystemExit as exc:
    status = exc.code
print(json.dumps({"status": status, "modules": sorted(sys.modules)}))
"""


def agent_config(folder: Path, broker_url: str, identity: str) -> Path:
    """A host's configuration: its real providers, a journal, the metrics endpoint."""
    trusted = folder / "trusted"
    trusted.mkdir()
    _, caller_pub = generate_keypair(folder, "ops")
    (trusted / "ops.pub").write_bytes(caller_pub.read_bytes())
    generate_keypair(folder, "host")
    config = folder / "agent.yaml"
    config.write_text(
        f"identity: {identity}\ncollective: imports\nbroker_url: {broker_url}\n"
        "key_file: host.key\ntrusted_keys: trusted\njournal_file: journal.sqlite\n"
        "metrics_listen: 127.0.0.1:0\n",
        encoding="utf-8",
    )
    return config


def run_agent_and_list_modules(entry: str, config: Path) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, entry, str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = done.stdout.splitlines()
    result = json.loads(lines[-1])
    assert entry == "check" or "ready" in lines, done.stderr
    assert result["status"] in (0, None), done.stdout + done.stderr
    return [
        name
        for name in result["modules"]
        if any(name == heavy or name.startswith(f"{heavy}.") for heavy in NOT_IN_THE_AGENT)
    ]


async def forget(broker_url: str, identity: str) -> None:
    transport = transport_from_url(broker_url)
    await transport.connect()
    try:
        await transport.forget_host(identity=identity, collective="imports")
    finally:
        await transport.close()


@pytest.mark.parametrize("entry", ["cli", "module"])
def test_the_agent_loads_no_web_engine_or_database(entry: str, tmp_path: Path) -> None:
    config = agent_config(tmp_path, "memory://imports", "host.imports")
    assert run_agent_and_list_modules(entry, config) == []


@pytest.mark.parametrize(
    "broker",
    [
        pytest.param("amqp", marks=pytest.mark.rabbitmq),
        pytest.param("nats", marks=pytest.mark.nats),
    ],
)
def test_mcoflow_agent_on_a_real_broker_loads_no_web_engine_or_database(
    broker: str, tmp_path: Path
) -> None:
    url = require_amqp() if broker == "amqp" else require_nats()
    identity = f"imports-{uuid.uuid4().hex[:8]}"
    try:
        config = agent_config(tmp_path, url, identity)
        assert run_agent_and_list_modules("cli", config) == []
        # what a service unit may run before it starts the agent
        assert run_agent_and_list_modules("check", config) == []
    finally:
        asyncio.run(forget(url, identity))


def test_a_server_command_on_a_host_install_names_the_install_it_needs() -> None:
    # a host's minimal install: the `server` extra's packages cannot be imported
    probe = (
        "import sys\nsys.modules['sqlalchemy'] = None\n"
        "sys.argv = ['mcoflow', 'plans', 'list']\nfrom mcoflow.cli import main\nmain()"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        "error: this command needs mcoflow's server packages (sqlalchemy is not installed): "
        "pip install 'mcoflow[server]'"
    )
