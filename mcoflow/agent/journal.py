"""Idempotency journal: which request ids a host has handled, and what it answered.

A request is recorded as *running* (committed) before it runs and as *done* with its
reply after; ``runs`` counts the executions started. A repeat of a done request is
answered from the journal. An id found *running* after a restart was interrupted: an
action declared idempotent in effect is run once more (``rerun``: ``runs`` becomes 2),
any other is reported as interrupted instead of being run a second time. So a request
completes at most once per host (one *done* row), and ``runs`` tells a re-run apart.

The file is tiny and local; stdlib sqlite3 in WAL mode, called from the event loop.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

DEFAULT_RETENTION = 8 * 24 * 3600.0  # longer than the longest ttl a request may carry

_SCHEMA = """
CREATE TABLE IF NOT EXISTS handled (
    identity   TEXT NOT NULL,
    request_id TEXT NOT NULL,
    agent      TEXT NOT NULL,
    action     TEXT NOT NULL,
    state      TEXT NOT NULL,
    statuscode INTEGER,
    statusmsg  TEXT,
    data       TEXT,
    started_at REAL NOT NULL,
    runs       INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (identity, request_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS handled_started ON handled (started_at);
"""


class EntryState(StrEnum):
    RUNNING = "running"
    DONE = "done"


@dataclass(frozen=True)
class JournalEntry:
    identity: str
    request_id: str
    agent: str
    action: str
    state: EntryState
    statuscode: int | None
    statusmsg: str
    data: dict[str, Any]
    started_at: float
    runs: int = 1


class Journal:
    def __init__(
        self,
        path: Path | None = None,
        *,
        retention: float = DEFAULT_RETENTION,
        synced: bool = True,
    ) -> None:
        """``synced``: every commit reaches the disk before the command runs, so "at most
        once" holds across a power loss too (an fsync per record; a package install takes
        far longer). Without it a crash of the agent is safe, an OS crash may forget the
        last records: for simulated hosts, which have nothing to lose."""
        self.path = path
        self.retention = retention
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path) if path is not None else ":memory:")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if synced else 'NORMAL'}")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(handled)")}
        if "runs" not in columns:  # a journal written before re-runs existed
            with self._db:
                self._db.execute("ALTER TABLE handled ADD COLUMN runs INTEGER NOT NULL DEFAULT 1")

    @property
    def synced(self) -> bool:
        (level,) = self._db.execute("PRAGMA synchronous").fetchone()
        return int(level) >= 2

    def close(self) -> None:
        self._db.close()

    def begin(
        self, identity: str, request_id: str, agent: str, action: str, now: float | None = None
    ) -> JournalEntry | None:
        """Record the request as running; return the earlier entry if it was seen before."""
        with self._db:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO handled (identity, request_id, agent, action, state,"
                " started_at) VALUES (?, ?, ?, ?, ?, ?)",
                (identity, request_id, agent, action, EntryState.RUNNING.value, _now(now)),
            )
        if cursor.rowcount == 1:
            return None
        return self.lookup(identity, request_id)

    def rerun(self, identity: str, request_id: str, max_runs: int = 2) -> bool:
        """Record one more execution of an interrupted (*running*) request, unless it
        already started ``max_runs`` times; True if it may run now."""
        with self._db:
            cursor = self._db.execute(
                "UPDATE handled SET runs = runs + 1 WHERE identity = ? AND request_id = ?"
                " AND state = ? AND runs < ?",
                (identity, request_id, EntryState.RUNNING.value, max_runs),
            )
        return cursor.rowcount == 1

    def finish(
        self,
        identity: str,
        request_id: str,
        statuscode: int,
        statusmsg: str,
        data: dict[str, Any],
    ) -> None:
        with self._db:
            self._db.execute(
                "UPDATE handled SET state = ?, statuscode = ?, statusmsg = ?, data = ?"
                " WHERE identity = ? AND request_id = ?",
                (
                    EntryState.DONE.value,
                    int(statuscode),
                    statusmsg,
                    json.dumps(data, separators=(",", ":")),
                    identity,
                    request_id,
                ),
            )

    def lookup(self, identity: str, request_id: str) -> JournalEntry | None:
        row = self._db.execute(
            "SELECT identity, request_id, agent, action, state, statuscode, statusmsg, data,"
            " started_at, runs FROM handled WHERE identity = ? AND request_id = ?",
            (identity, request_id),
        ).fetchone()
        if row is None:
            return None
        data = json.loads(row[7]) if row[7] else {}
        return JournalEntry(
            identity=row[0],
            request_id=row[1],
            agent=row[2],
            action=row[3],
            state=EntryState(row[4]),
            statuscode=row[5],
            statusmsg=row[6] or "",
            data=data if isinstance(data, dict) else {},
            started_at=row[8],
            runs=row[9],
        )

    def prune(self, now: float | None = None) -> int:
        """Forget entries older than the retention period; return how many."""
        with self._db:
            cursor = self._db.execute(
                "DELETE FROM handled WHERE started_at < ?", (_now(now) - self.retention,)
            )
        return cursor.rowcount

    def __len__(self) -> int:
        (count,) = self._db.execute("SELECT COUNT(*) FROM handled").fetchone()
        return int(count)


def _now(now: float | None) -> float:
    return time.time() if now is None else now
