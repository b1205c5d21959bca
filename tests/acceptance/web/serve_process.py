"""`mcoflow serve` as a subprocess in a directory of its own, for the browser and
authentication tests: a SQLite file, the in-process broker, simulated hosts."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import pytest

MCOFLOW = Path(sys.executable).with_name("mcoflow")  # the console script of this venv
READY_LINE = "mcoflow serving:"
START_SECONDS = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def serve_env(directory: Path, config: dict[str, Any], **extra: str) -> dict[str, str]:
    """The environment of a server in ``directory``: its own keys, state and config
    file, and none of the caller's MCOFLOW_* settings."""
    config_file = directory / "mcoflow.yaml"
    config_file.write_text(json.dumps(config))  # JSON is YAML
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCOFLOW_")}
    env |= {
        "MCOFLOW_CONFIG": str(config_file),
        "MCOFLOW_STATE_DIR": str(directory / "state"),
        "MCOFLOW_KEYS_DIR": str(directory / "keys"),
        **extra,
    }
    return env


def run_mcoflow(
    args: list[str], directory: Path, env: dict[str, str], stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """``mcoflow ARGS`` to its end (a server that starts is killed by the timeout)."""
    return subprocess.run(
        [str(MCOFLOW), *args],
        cwd=directory,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=START_SECONDS,
        check=False,
    )


@dataclass
class Served:
    url: str
    process: subprocess.Popen[str]
    log: Path


class _Output:
    """Copies the server's output to a log file (so its pipe never fills) and tells
    when the ready line went by or the output ended."""

    def __init__(self, stream: TextIO, log: Path) -> None:
        self.changed = threading.Event()
        self.ready = False
        self._thread = threading.Thread(target=self._copy, args=(stream, log), daemon=True)
        self._thread.start()

    def _copy(self, stream: TextIO, log: Path) -> None:
        with stream, log.open("w") as out:
            for line in stream:
                out.write(line)
                out.flush()
                if line.startswith(READY_LINE):
                    self.ready = True
                    self.changed.set()
        self.changed.set()

    def join(self) -> None:
        self._thread.join(timeout=10)


@contextmanager
def mcoflow_serve(
    directory: Path, args: list[str], env: dict[str, str], port: int | None = None
) -> Iterator[Served]:
    """Start ``mcoflow serve ARGS`` on a free loopback port and wait until it says it
    serves (it does once its web console answers); SIGINT at the end."""
    port = port or free_port()
    db = directory / "mcoflow.db"
    log = directory / "serve.log"
    command = [str(MCOFLOW), "serve", "--db", f"sqlite:///{db}", "--listen", f"127.0.0.1:{port}"]
    process = subprocess.Popen(
        [*command, *args],
        cwd=directory,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    output = _Output(process.stdout, log)
    try:
        output.changed.wait(START_SECONDS)
        if not output.ready:
            process.kill()
            output.join()
            pytest.fail(f"`mcoflow serve` did not start:\n{log.read_text()}", pytrace=False)
        yield Served(f"http://127.0.0.1:{port}", process, log)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        output.join()
