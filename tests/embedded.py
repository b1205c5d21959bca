"""An orchestrator as `mcoflow serve` wires it (in-process broker, simulated hosts) on a
test's database, for the tests that drive jobs through the actions or the CLI."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from mcoflow.orchestrator import Orchestrator, build_orchestrator
from mcoflow.settings import Settings

MCOFLOW = Path(sys.executable).parent / "mcoflow"


def orchestrator_settings(db_url: str, state_dir: Path, **values: Any) -> Settings:
    """A test's orchestrator settings: its database, its state and keys under
    ``state_dir``, an in-process broker of its own (unless ``values`` name another
    ``transport_url``) and fast polling; ``values`` set any other field."""
    defaults: dict[str, Any] = {
        "transport_url": f"memory://{uuid.uuid4().hex}",
        "keys_dir": state_dir / "keys",
        "poll_interval": 0.05,
        "heartbeat_interval": 0.5,
    }
    return Settings(database_url=db_url, state_dir=state_dir, **(defaults | values))


@asynccontextmanager
async def embedded_orchestrator(
    db_url: str, state_dir: Path, *, hosts: int, simulation: dict[str, Any] | None = None
) -> AsyncIterator[Orchestrator]:
    """Started on ``db_url`` with ``hosts`` simulated hosts (sim-00001…), fast polling."""
    orchestrator = await build_orchestrator(
        orchestrator_settings(db_url, state_dir), simulate_hosts=hosts, simulation=simulation or {}
    )
    await orchestrator.start()
    try:
        yield orchestrator
    finally:
        await orchestrator.stop()


async def plans_cli(db_url: str, cwd: Path, *args: str) -> tuple[int, str]:
    """`mcoflow plans ARGS --db URL` as a real process: its exit code and output."""
    proc = await asyncio.create_subprocess_exec(
        str(MCOFLOW),
        "plans",
        *args,
        "--db",
        db_url,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "HOME": str(cwd)},
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")
