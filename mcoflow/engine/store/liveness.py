"""Executor liveness on PostgreSQL: each executor holds a session-level advisory lock,
keyed by its id, on a connection of its own for as long as it lives. PostgreSQL drops
the lock when that session ends: at once when the process dies (the kernel closes its
socket), within seconds when its machine vanishes (TCP keepalives on both ends). Another
executor that can take the lock knows the holder's session is gone.

A stalled process (SIGSTOP, a long pause) keeps its socket open and its kernel answers
keepalives, so its lock stays held: this path never declares it dead.
"""

from __future__ import annotations

import contextlib
from typing import Any

from mcoflow.engine.store.base import StoreBase

# the lock key of an executor id, a bigint from its md5 (computed by the server alone)
_KEY = "('x' || substr(md5({id}), 1, 16))::bit(64)::bigint"
_HOLD = f"SELECT pg_try_advisory_lock({_KEY.format(id='%(me)s')})"
# CASE: the server must not try (and so take again, re-entrantly) this session's own key
_TAKE_FREE = (
    "SELECT id FROM executors WHERE CASE WHEN id <> %(me)s "
    f"THEN pg_try_advisory_lock({_KEY.format(id='id')}) ELSE false END"
)
_LET_GO = f"SELECT pg_advisory_unlock({_KEY.format(id='k')}) FROM unnest(%(ids)s::text[]) AS k"
_PING = "SELECT 1"

# A vanished machine: the server stops waiting for its session after 2 s idle + 2 probes
# 1 s apart, and gives up on unacknowledged data after 5 s; the client side likewise, for
# a vanished server. Loopback and Unix sockets ignore these (a dead process closes them).
KEEPALIVE_IDLE = 2
KEEPALIVE_INTERVAL = 1
KEEPALIVE_COUNT = 2
USER_TIMEOUT_MS = 5000
CONNECT_TIMEOUT = 5


class LivenessLost(ConnectionError):
    """The liveness connection failed or was lost (with it, this executor's lock)."""


def keepalive_options() -> dict[str, Any]:
    """libpq keepalives (this end) and the server's keepalives for this session."""
    server = {
        "tcp_keepalives_idle": KEEPALIVE_IDLE,
        "tcp_keepalives_interval": KEEPALIVE_INTERVAL,
        "tcp_keepalives_count": KEEPALIVE_COUNT,
        "tcp_user_timeout": USER_TIMEOUT_MS,
    }
    return {
        "keepalives": 1,
        "keepalives_idle": KEEPALIVE_IDLE,
        "keepalives_interval": KEEPALIVE_INTERVAL,
        "keepalives_count": KEEPALIVE_COUNT,
        "tcp_user_timeout": USER_TIMEOUT_MS,
        "connect_timeout": CONNECT_TIMEOUT,
        "options": " ".join(f"-c {name}={value}" for name, value in server.items()),
        "application_name": "mcoflow executor liveness",
    }


class LivenessSession:
    """One executor's liveness connection (autocommit: the locks are session-level)."""

    def __init__(self, conn: Any, executor_id: str) -> None:
        self._conn = conn
        self.executor_id = executor_id

    async def hold(self) -> bool:
        """Take this executor's own lock; False while another session holds it (its
        previous session, not yet dropped by the server, or another executor taking it
        for a moment to look)."""
        return bool(await self._one(_HOLD, {"me": self.executor_id}))

    async def take_free(self) -> list[str]:
        """The other registered executors whose lock is free: their sessions are gone.
        Their locks are now held by this session, until ``let_go``."""
        rows = await self._all(_TAKE_FREE, {"me": self.executor_id})
        return [str(r[0]) for r in rows]

    async def let_go(self, ids: list[str]) -> None:
        if ids:
            await self._all(_LET_GO, {"ids": ids})

    async def ping(self) -> None:
        await self._one(_PING, {})

    async def close(self) -> None:
        import psycopg

        with contextlib.suppress(psycopg.Error, OSError):
            await self._conn.close()

    async def _all(self, query: str, params: dict[str, Any]) -> list[Any]:
        import psycopg

        try:
            cursor = await self._conn.execute(query, params)
            return list(await cursor.fetchall())
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise LivenessLost(str(exc)) from exc

    async def _one(self, query: str, params: dict[str, Any]) -> Any:
        rows = await self._all(query, params)
        return rows[0][0] if rows else None


class LivenessQueries(StoreBase):
    async def liveness_session(self, executor_id: str) -> LivenessSession:
        """A new liveness connection (PostgreSQL only); ``LivenessLost`` if it fails."""
        import psycopg  # PostgreSQL only

        if not self.is_postgresql:
            raise RuntimeError("executor liveness locks need PostgreSQL")
        try:
            conn = await psycopg.AsyncConnection.connect(
                self.listen_conninfo(), autocommit=True, **keepalive_options()
            )
        except psycopg.OperationalError as exc:
            raise LivenessLost(str(exc)) from exc
        return LivenessSession(conn, executor_id)
