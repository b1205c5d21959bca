"""Running OS commands: argv lists only, never a shell, always with a time limit."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

# Enough to report what a package manager said without letting a runaway command
# fill the agent's memory or the reply.
MAX_OUTPUT_CHARS = 16_000
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    @property
    def output(self) -> str:
        return _clip((self.stdout + self.stderr).strip())


CommandRunner = Callable[[Sequence[str], float, Mapping[str, str] | None], Awaitable[CommandResult]]


def _clip(text: str) -> str:
    if len(text) <= MAX_OUTPUT_CHARS:
        return text
    return "…" + text[-MAX_OUTPUT_CHARS:]


def command_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A small, predictable environment: the agent's own environment is not passed on."""
    env = {"PATH": SAFE_PATH, "LC_ALL": "C", "LANG": "C"}
    if extra:
        env.update(extra)
    return env


async def run_command(
    argv: Sequence[str], time_limit: float, extra_env: Mapping[str, str] | None = None
) -> CommandResult:
    """Run argv (no shell) with captured output; the whole process group dies on timeout."""
    args = tuple(argv)
    if not args or not all(isinstance(a, str) and "\x00" not in a for a in args):
        raise ValueError(f"invalid argv: {args!r}")
    try:
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=command_env(extra_env),
            start_new_session=True,
        )
    except (FileNotFoundError, PermissionError) as exc:
        return CommandResult(args, 127, "", f"cannot execute {args[0]}: {exc.strerror}")
    try:
        out, err = await asyncio.wait_for(proc.communicate(), time_limit)
    except TimeoutError:
        _kill_group(proc.pid)
        out, err = await proc.communicate()
        return CommandResult(
            args,
            -1,
            _clip(out.decode(errors="replace")),
            _clip(err.decode(errors="replace")) + f"\ntimed out after {time_limit:g} s",
            timed_out=True,
        )
    except asyncio.CancelledError:
        _kill_group(proc.pid)
        with contextlib.suppress(ProcessLookupError):
            await proc.wait()
        raise
    assert proc.returncode is not None
    return CommandResult(
        args,
        proc.returncode,
        _clip(out.decode(errors="replace")),
        _clip(err.decode(errors="replace")),
    )


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
