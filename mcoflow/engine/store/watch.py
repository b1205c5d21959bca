"""Commits made elsewhere to a SQLite database: SQLite's stand-in for PostgreSQL's
LISTEN/NOTIFY, so that an executor sees a plan another process (the command line)
triggered within milliseconds instead of at its next poll."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable

from sqlalchemy.engine import URL

_DATA_VERSION = "PRAGMA data_version"


class CommitWatcher:
    """A thread that looks at ``PRAGMA data_version`` every ``interval`` seconds on a
    connection of its own and calls ``on_commit`` (in that thread) when it changed: it
    changes exactly when another connection, in any process, has committed. The look
    reads no table, takes no lock and leaves no transaction open; a thread of its own
    keeps it off the event loop (a look there would cost two thread hops)."""

    def __init__(self, url: URL, interval: float, on_commit: Callable[[], object]) -> None:
        self.database = url.database or ""
        self.interval = interval
        self.on_commit = on_commit
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-commit-watcher")
        self._thread.daemon = True

    @property
    def shared(self) -> bool:
        """False for an in-memory database: no other process can commit to it."""
        return self.database not in ("", ":memory:") and "mode=memory" not in self.database

    def start(self) -> None:
        if self.shared:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        conn = sqlite3.connect(self.database, isolation_level=None, check_same_thread=True)
        try:
            last = conn.execute(_DATA_VERSION).fetchone()[0]
            while not self._stop.wait(self.interval):
                version = conn.execute(_DATA_VERSION).fetchone()[0]
                if version != last:
                    last = version
                    self.on_commit()
        except (sqlite3.Error, RuntimeError):  # RuntimeError: the event loop closed
            return
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
