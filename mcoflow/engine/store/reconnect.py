"""Riding out a database that goes away for a while (a restart, a network cut): the
one policy every loop that touches the database follows.

- Which errors mean "unreachable" (``is_unreachable``): the connection failed or was
  lost, or the server is shutting down or starting up. Anything else is a real error.
- How long to wait between attempts (``Backoff``): from 0.5 s, doubling, capped at 5 s.
- What the log says (``DatabaseLink``, one per store, so one per process): one warning
  when the database becomes unreachable, one line when it answers again, whichever of
  the process's loops notices; never a line per attempt. The store reports every
  transaction's outcome to it.

The pools drop dead connections by themselves: ``pool_pre_ping`` (store.base) checks
a connection before handing it out, and SQLAlchemy invalidates the whole pool when a
query fails on a lost connection.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from mcoflow.engine.store.unavailable import StoreUnavailable, describe

FIRST_DELAY = 0.5
MAX_DELAY = 5.0
# SQLSTATE classes and codes of a server going away or not there yet: 08 connection
# exception; 57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now
_GONE_CODES = ("57P01", "57P02", "57P03")
# SQLite (a file, no server): only a file it cannot open is "unreachable"; a locked
# database or a missing table is not
_SQLITE_UNREACHABLE = "unable to open database file"

T = TypeVar("T")
log = logging.getLogger("mcoflow.store")


def is_unreachable(exc: BaseException) -> bool:
    """True when ``exc`` says the database could not be reached or the connection was
    lost: the same work may succeed once it is back."""
    if isinstance(exc, StoreUnavailable | ConnectionError | TimeoutError | socket.gaierror):
        return True  # ListenLost and LivenessLost are ConnectionErrors
    orig: BaseException | None = exc
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        orig = exc.orig
    code = getattr(orig, "sqlstate", None)
    if code is not None:
        return str(code).startswith("08") or code in _GONE_CODES
    if isinstance(orig, sqlite3.Error):
        return _SQLITE_UNREACHABLE in str(orig)
    # psycopg raises a plain OperationalError (no SQLSTATE) when it cannot connect or
    # the server closed the connection
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    try:
        import psycopg
    except ImportError:  # a host install without the server packages
        return False
    return isinstance(orig, psycopg.OperationalError | psycopg.InterfaceError)


class Backoff:
    """Delays between attempts: ``first``, doubling, at most ``cap`` seconds."""

    def __init__(self, first: float = FIRST_DELAY, cap: float = MAX_DELAY) -> None:
        self.first = first
        self.cap = cap
        self.attempts = 0

    def next(self) -> float:
        delay = min(self.cap, self.first * 2.0**self.attempts)
        self.attempts += 1
        return delay

    async def sleep(self) -> None:
        await asyncio.sleep(self.next())


class DatabaseLink:
    """Whether this process's database answers, as its transactions find it."""

    def __init__(self, url: URL, *, first: float = FIRST_DELAY, cap: float = MAX_DELAY) -> None:
        self.url = url
        self.first = first
        self.cap = cap
        # who speaks in the log (an executor sets its id)
        self.name = "mcoflow"
        self.reachable = True
        self.outages = 0
        self.reason = ""
        self._lost_at = 0.0
        self._failed_at = 0.0
        # it answered once in this process: before, a failure is the caller's to report
        # (StoreUnavailable at start), not an outage
        self._reached = False
        # monotonic time it last answered again after an outage (0: never lost)
        self.back_at = 0.0

    def lost(self, exc: BaseException) -> None:
        """A transaction failed with ``exc``, which ``is_unreachable``."""
        self._failed_at = time.monotonic()
        if not (self.reachable and self._reached):
            return
        self.reachable = False
        self.outages += 1
        self._lost_at = time.monotonic()
        self.reason = reason(self.url, exc)
        log.warning("%s: database unreachable: %s; retrying", self.name, self.reason)

    def found(self, began: float) -> None:
        """A transaction that began at ``began`` (monotonic) succeeded. One that began
        before the last failure proves nothing: while a server shuts down, a session it
        has not ended yet still answers for a moment after others failed."""
        self._reached = True
        if self.reachable or began <= self._failed_at:
            return
        self.reachable = True
        self.back_at = time.monotonic()
        log.info(
            "%s: database reachable again after %.1f s", self.name, self.back_at - self._lost_at
        )

    def since_back(self) -> float:
        """Seconds since the database answered again after its last outage (infinite if
        it never went away)."""
        return float("inf") if self.back_at == 0.0 else time.monotonic() - self.back_at

    def backoff(self) -> Backoff:
        return Backoff(self.first, self.cap)

    async def retry(self, call: Callable[[], Awaitable[T]]) -> T:
        """``await call()`` until it does not fail for want of the database. For a write
        that must not be lost once work was done on its behalf (an outcome, a publish)."""
        backoff = self.backoff()
        while True:
            try:
                return await call()  # the store tells the link when it succeeds
            except Exception as exc:
                if not is_unreachable(exc):
                    raise
                self.lost(exc)
            await backoff.sleep()


def reason(url: URL, exc: BaseException) -> str:
    """What went wrong, in one line (the URL with its password hidden)."""
    if isinstance(exc, StoreUnavailable):
        return str(exc)
    return describe(url, exc).replace("cannot open the database ", "", 1)
