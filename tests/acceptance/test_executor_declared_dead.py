"""Acceptance (issue 16): an executor declared dead by another one (its heartbeat came
too late, after a stall) does not live on doing nothing: `mcoflow executor` and
`mcoflow serve` exit with status 3 and say why, for their supervisor to restart them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from mcoflow.cli.processes import EXIT_EXECUTOR_FAILED
from mcoflow.engine import Store
from mcoflow.testing import LoggedProcess, assert_eventually

MCOFLOW = Path(sys.executable).with_name("mcoflow")
FAST_HEARTBEAT = {"MCOFLOW_HEARTBEAT_INTERVAL": "0.2", "MCOFLOW_DEAD_AFTER": "60"}


def _env(directory: Path) -> dict[str, str]:
    config = directory / "mcoflow.yaml"
    config.write_text("{}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCOFLOW_")}
    return (
        env
        | FAST_HEARTBEAT
        | {
            "MCOFLOW_CONFIG": str(config),
            "MCOFLOW_STATE_DIR": str(directory / "state"),
            "MCOFLOW_KEYS_DIR": str(directory / "keys"),
        }
    )


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.parametrize("command", ["executor", "serve"])
async def test_an_executor_declared_dead_exits_non_zero_and_says_why(
    tmp_path: Path, command: str
) -> None:
    url = f"sqlite:///{tmp_path / 'mcoflow.db'}"
    argv = [str(MCOFLOW), command, "--db", url, "--transport", "memory://"]
    if command == "serve":
        argv += ["--listen", f"127.0.0.1:{_free_port()}", "--no-local-agent"]
    process = LoggedProcess(argv, log=tmp_path / f"{command}.log", env=_env(tmp_path), cwd=tmp_path)
    store = Store(url)
    try:

        async def registered() -> str:
            assert process.alive(), process.output()
            try:  # the process creates the schema
                rows = await store.list_executors()
            except Exception as exc:
                raise AssertionError(f"no schema yet: {exc}") from None
            assert len(rows) == 1, rows
            # serve: once started (its discovery at start needs the executor)
            assert command == "executor" or "mcoflow serving:" in process.output()
            return rows[0].id

        executor_id = await assert_eventually(registered, timeout=60)
        # another executor finds its heartbeat too old (as after a stall of the loop)
        released = await store.release_dead_executors(0.0, by="another-executor")
        assert released == [executor_id]

        def exited() -> tuple[int]:
            code = process.proc.poll()
            assert code is not None, "still running"
            return (code,)

        (code,) = await assert_eventually(exited, timeout=15)
        log = process.output(20_000)
        assert code == EXIT_EXECUTOR_FAILED, log
        assert f"executor {executor_id} was declared dead by another executor" in log
        assert f"with status {EXIT_EXECUTOR_FAILED} for its supervisor to start it again" in log
        if command == "serve":
            assert "with its web console and in-process agents" in log
    finally:
        await store.close()
        if process.alive():
            process.stop()
        else:
            process.proc.wait()
