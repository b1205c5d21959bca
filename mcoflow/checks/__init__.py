"""`mcoflow agent --check` and `mcoflow executor --check`: is this process ready to run?

Each check is one line (``ok`` and what it found, or ``FAILED`` and what is wrong, naming
the setting and what to do). Checks run area by area (settings, keys, broker, database);
the first area with a failure ends the run, and the command exits with that area's status:
2 for settings and keys (what a start would also refuse with 2, and what a supervisor
should not retry), 1 for a broker or database that does not answer or is not ready. A
check never writes a file nor starts serving; reaching the broker makes the declarations
the process itself makes at start.

This package's modules import what they check only inside the checks: the agent's
(``mcoflow.checks.agent``) load nothing of the engine or the web console.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, TypeVar

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from pydantic import ValidationError

    from mcoflow.rpc.tls import BrokerTlsSettings

__all__ = ["Area", "Check", "Checklist", "Problem", "Probe"]

T = TypeVar("T")
# a check: what it found, or Problem
Probe = Callable[[], str | Awaitable[str]]
# seconds a broker or database gets to answer: a host that drops packets must not hang
# the check (NATS bounds its first connection itself, 10 s)
ANSWER_TIMEOUT = 20.0
NAME_WIDTH = 20


class Area(Enum):
    """What a check is about, in the order they run."""

    SETTINGS = "settings"
    KEYS = "keys"
    BROKER = "broker"
    DATABASE = "database"

    @property
    def exit_status(self) -> int:
        return 2 if self in (Area.SETTINGS, Area.KEYS) else 1


class Problem(Exception):
    """What a check found wrong; the message names the setting and what to do."""


@dataclass(frozen=True)
class Check:
    area: Area
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{self.name + ':':<{NAME_WIDTH}} {'ok' if self.ok else 'FAILED':<6}  {self.detail}"


class Checklist:
    """Runs checks one by one, prints each line as it is known, and remembers them."""

    def __init__(self, command: str, out: TextIO | None = None) -> None:
        self.command = command
        self.checks: list[Check] = []
        self._out = out if out is not None else sys.stdout

    @property
    def failure(self) -> Check | None:
        return next((check for check in self.checks if not check.ok), None)

    def _add(self, check: Check) -> None:
        self.checks.append(check)
        print(check.line(), file=self._out, flush=True)

    def value(self, area: Area, name: str, probe: Callable[[], tuple[T, str]]) -> T | None:
        """Run ``probe`` (a value and what was found, or Problem): the value, or None."""
        try:
            found, detail = probe()
        except Problem as exc:
            self._add(Check(area, name, False, str(exc)))
            return None
        self._add(Check(area, name, True, detail))
        return found

    async def run(self, area: Area, name: str, probe: Probe) -> bool:
        """Run ``probe`` (what was found, or Problem; awaited when it gives an awaitable)."""
        try:
            found = probe()
            detail = await found if inspect.isawaitable(found) else found
        except Problem as exc:
            self._add(Check(area, name, False, str(exc)))
            return False
        self._add(Check(area, name, True, detail))
        return True

    async def areas(self, plan: Sequence[tuple[Area, Sequence[tuple[str, Probe]]]]) -> int:
        """Run each area's checks; the first area with a failure ends the run. The exit
        status (see ``finish``). The libraries' log lines are silenced: a check's own line
        says what went wrong, once."""
        silenced = logging.root.manager.disable
        logging.disable(logging.CRITICAL)
        try:
            for index, (area, probes) in enumerate(plan):
                for name, probe in probes:
                    await self.run(area, name, probe)
                if self.failure is not None:
                    return self.finish(tuple(later for later, _ in plan[index + 1 :]))
            return self.finish()
        finally:
            logging.disable(silenced)  # as it was: the caller may not be a one-off command

    def finish(self, not_reached: tuple[Area, ...] = ()) -> int:
        """The exit status; a failure is repeated on stderr with what was not checked."""
        failure = self.failure
        if failure is None:
            print(f"{self.command}: all {len(self.checks)} checks passed", file=self._out)
            return 0
        skipped = [a.value for a in not_reached if a not in {c.area for c in self.checks}]
        also = f" (not checked: {', '.join(skipped)})" if skipped else ""
        said = failure.detail
        if not said.startswith(f"{failure.name}:"):
            said = f"{failure.name}: {said}"
        print(f"error: {said}{also}", file=sys.stderr, flush=True)
        return failure.area.exit_status


def validation_message(exc: ValidationError) -> str:
    """Each refused setting and why, on one line (a rule across settings names none)."""
    said = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        said.append(f"{where}: {message}" if where else message)
    return "; ".join(said)


def check_transport_url(
    setting: str, url: str, tls: BrokerTlsSettings, *, agent: bool = False
) -> str:
    """The broker URL names a transport a separate process can use (not ``memory://``;
    for mcoflow's ``agent`` not an MCollective collective, whose hosts run mcollectived),
    and its TLS settings load."""
    from mcoflow.rpc.tls import TlsError, TlsOptions, uses_tls
    from mcoflow.rpc.transports import transport_from_url
    from mcoflow.rpc.unreachable import safe_url

    if url.lower().startswith("memory:"):
        raise Problem(
            f"{setting}: {url} is the in-process broker of `mcoflow serve`; a separate "
            "process needs amqp(s):// (RabbitMQ) or nats:// / tls:// (NATS)"
            + ("" if agent else ", or stomp+mcollective:// (existing MCollective nodes)")
        )
    if agent and is_mcollective_url(url):
        raise Problem(
            f"{setting}: mcoflow's agent does not run on an MCollective collective (its "
            "hosts run mcollectived): use amqp(s):// or nats://"
        )
    try:
        options = TlsOptions.from_settings(tls)
        transport_from_url(url, tls=options)
        if uses_tls(url):
            options.context()
    except TlsError as exc:
        raise Problem(f"broker_tls_*: {exc}") from None
    except ValueError as exc:
        raise Problem(f"{setting}: {exc}") from None
    return safe_url(url) + (" (TLS)" if uses_tls(url) else "")


def private_key(setting: str, path: Path, what_to_do: str) -> Ed25519PrivateKey:
    """The Ed25519 private key in ``path``, or Problem naming ``setting``."""
    from mcoflow.rpc.security import load_private_key

    if not path.exists():
        raise Problem(f"{setting}: {path} does not exist; {what_to_do}")
    try:
        return load_private_key(path)
    except PermissionError:
        raise Problem(f"{setting}: {path}: permission denied for this user") from None
    except (OSError, ValueError) as exc:
        raise Problem(f"{setting}: {path}: not a usable Ed25519 private key ({exc})") from None


def trusted_keys(setting: str, directory: Path, missing: str) -> frozenset[str]:
    """The names of the public keys ``directory`` trusts; Problem when it has none."""
    from mcoflow.rpc.security import Verifier

    if not directory.is_dir():
        raise Problem(f"{setting}: {directory} is not a directory; {missing}")
    try:
        names = Verifier.from_directory(directory).names
    except PermissionError as exc:
        raise Problem(f"{setting}: {exc.filename}: permission denied for this user") from None
    except (OSError, ValueError) as exc:
        raise Problem(f"{setting}: a key in {directory} is not usable: {exc}") from None
    if not names:
        raise Problem(f"{setting}: no *.pub in {directory}; {missing}")
    return names


def is_mcollective_url(url: str) -> bool:
    """``stomp+mcollective://…``: existing MCollective nodes, not mcoflow's agents."""
    from urllib.parse import urlsplit

    from mcoflow.rpc.cluster import server_urls
    from mcoflow.rpc.transports.mcollective import MCOLLECTIVE_SCHEMES

    return urlsplit(server_urls(url)[0]).scheme.lower() in MCOLLECTIVE_SCHEMES


async def broker_answers(setting: str, url: str, tls: BrokerTlsSettings) -> str:
    """Connect to the broker as the process would, then close."""
    import asyncio

    from mcoflow.rpc.tls import TlsOptions
    from mcoflow.rpc.transport import TransportError
    from mcoflow.rpc.transports import transport_from_url
    from mcoflow.rpc.unreachable import broker_unreachable, safe_url

    transport = transport_from_url(url, tls=TlsOptions.from_settings(tls))
    server = "RabbitMQ" if url.lower().startswith(("amqp", "stomp")) else "the NATS server"
    try:
        async with asyncio.timeout(ANSWER_TIMEOUT):
            await transport.connect()
    except TransportError as exc:
        raise Problem(f"{setting}: {exc}") from None
    except Exception as exc:  # a timeout, a refused login, a TLS failure …
        raise Problem(f"{setting}: {broker_unreachable(server, url, exc)}") from None
    finally:
        with contextlib.suppress(Exception):  # one that never connected: nothing to undo
            await transport.close()
    return f"{safe_url(url)} answered"
