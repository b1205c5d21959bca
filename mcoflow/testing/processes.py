"""Running mcoflow's own commands as real processes, for tests and benchmarks."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

__all__ = ["LoggedProcess"]


class LoggedProcess:
    """A subprocess writing stdout and stderr to its own log file; stopped with SIGTERM,
    then SIGKILL if it does not exit in time."""

    def __init__(self, argv: Sequence[str], *, log: Path, env: dict[str, str], cwd: Path) -> None:
        self.log = log
        with log.open("ab") as sink:
            self.proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self, tail: int = 3000) -> str:
        """The last ``tail`` characters of its log."""
        return self.log.read_text(errors="replace")[-tail:] if self.log.exists() else ""

    def peak_rss_mib(self) -> float:
        """Its peak resident memory so far (VmHWM), while it runs (Linux)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def kill(self) -> None:
        """SIGKILL and reap."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL; the exit code."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode
