"""The store's connection to the database: engines for SQLite and PostgreSQL,
write and read transactions, retries, and the dialect's ways of passing lists.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.elements import ColumnElement, TextClause

from mcoflow.engine.store.reconnect import DatabaseLink, is_unreachable
from mcoflow.engine.store.statements import among, columns, pairs_among
from mcoflow.engine.store.unavailable import unavailable

WAKE_CHANNEL = "mcoflow_wake"
_NOTIFY = text("SELECT pg_notify(:channel, :origin)")
_SCHEMA_REVISION = text("SELECT version_num FROM alembic_version")
log = logging.getLogger("mcoflow.store")


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def loads(value: str | None) -> Any:
    return None if value is None else json.loads(value)


def normalize_url(url: str) -> URL:
    """Accept plain ``sqlite:///file`` / ``postgresql://`` URLs; pick the async drivers."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg")
    raise ValueError(f"database url: unsupported database {backend!r} (use sqlite or postgresql)")


class StoreBase:
    """Engine, transactions and dialect helpers shared by the store's query groups."""

    def __init__(self, url: str, *, pool_size: int = 5) -> None:
        self.url = normalize_url(url)
        self.dialect = self.url.get_backend_name()
        self.notify_origin = uuid.uuid4().hex
        self.link = DatabaseLink(self.url)
        kwargs: dict[str, Any] = {}
        if self.dialect == "postgresql":
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        self._write_lock: asyncio.Lock | None = None
        if self.dialect == "postgresql":
            _configure_postgresql(self.engine)
        if self.dialect == "sqlite":
            _configure_sqlite(self.engine)
            self._write_lock = asyncio.Lock()

    @property
    def is_postgresql(self) -> bool:
        return self.dialect == "postgresql"

    def _among(self, column: ColumnElement[Any], values: Iterable[Any]) -> Any:
        return among(column, values, self.is_postgresql)

    def _pairs_among(
        self, first: ColumnElement[Any], second: ColumnElement[Any], pairs: Iterable[Any]
    ) -> Any:
        return pairs_among(first, second, pairs, self.is_postgresql)

    async def _update_rows(
        self,
        conn: AsyncConnection,
        rows: list[dict[str, Any]],
        postgresql: TextClause,
        portable: Executable,
    ) -> None:
        """Per-row UPDATEs of ``rows``: on PostgreSQL one ``UPDATE … FROM unnest(…)`` with
        a list per column, elsewhere an executemany of the same bound names."""
        if self.is_postgresql:
            await conn.execute(postgresql, columns(rows))
        else:
            await conn.execute(portable, rows)

    async def close(self) -> None:
        await self.engine.dispose()

    async def upgrade(self) -> None:
        """Create or upgrade the schema with Alembic (in a thread: Alembic is sync)."""
        from mcoflow.engine.migrate import head_revision, upgrade

        head = head_revision()
        if head is not None and await self.schema_revision() == head:
            return  # current: loading Alembic and its scripts would take most of a second

        try:
            await asyncio.to_thread(upgrade, self.url)
        except (OperationalError, InterfaceError, OSError) as exc:
            # the first use of the database: a wrong URL or a stopped server shows here
            raise unavailable(self.url, exc) from exc

    async def schema_revision(self) -> str | None:
        """The schema's Alembic revision; None without one (or without a database)."""
        try:
            async with self._read() as conn:
                row = (await conn.execute(_SCHEMA_REVISION)).first()
        except (DBAPIError, OSError):
            return None
        return None if row is None else str(row[0])

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction. SQLite has one writer at a time: queue this process's
        writers here rather than in SQLite's sleeping busy handler."""
        with self._watching_link():
            if self._write_lock is None:
                async with self.engine.begin() as conn:
                    yield conn
                return
            async with self._write_lock, self.engine.begin() as conn:
                yield conn

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        with self._watching_link():
            async with self.engine.connect() as conn:
                await conn.execution_options(sqlite_begin="DEFERRED")
                yield conn

    @contextmanager
    def _watching_link(self) -> Iterator[None]:
        """Tell the link whether the transaction reached the database (reconnect)."""
        began = time.monotonic()
        try:
            yield
        except Exception as exc:
            if is_unreachable(exc):
                self.link.lost(exc)
            raise
        self.link.found(began)

    async def _notify(self, conn: AsyncConnection) -> None:
        """Wake idle executors elsewhere when this transaction commits (PostgreSQL). The
        payload names this store, so that its own executor, already woken in-process,
        ignores it (else every commit here also costs a round of queries there)."""
        if self.is_postgresql:
            await conn.execute(_NOTIFY, {"channel": WAKE_CHANNEL, "origin": self.notify_origin})

    def listen_conninfo(self) -> str:
        return self.url.set(drivername="postgresql").render_as_string(hide_password=False)

    @asynccontextmanager
    async def listen(self) -> AsyncIterator[AsyncIterator[None]]:
        """LISTEN on a connection of its own (PostgreSQL) for the commits of other
        processes that made work due (``_notify``); yields an iterator with one item per
        such commit. Raises ``ListenLost`` when the connection fails or is lost."""
        import psycopg  # PostgreSQL only

        try:
            conn = await psycopg.AsyncConnection.connect(self.listen_conninfo(), autocommit=True)
            async with conn:
                await conn.execute(f"LISTEN {WAKE_CHANNEL}")
                yield self._wakeups(conn)
        except psycopg.OperationalError as exc:
            raise ListenLost(str(exc)) from exc

    async def _wakeups(self, conn: Any) -> AsyncIterator[None]:
        async for notify in conn.notifies():
            if notify.payload != self.notify_origin:  # else already woken in-process
                yield None

    async def _retrying(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(conn, *args)`` in a write transaction, retrying deadlocks."""
        for attempt in range(8):
            try:
                async with self._write() as conn:
                    return await fn(conn, *args)
            except DBAPIError as exc:
                if not _is_retryable(exc) or attempt == 7:
                    raise
                await asyncio.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")


def is_transient_error(exc: BaseException) -> bool:
    """True when ``exc`` says the database could not be reached or the transaction lost a
    race: trying the same write again later may work. Anything else will fail again."""
    if isinstance(exc, (OSError, TimeoutError)):
        return True
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    return isinstance(exc, DBAPIError) and (exc.connection_invalidated or _is_retryable(exc))


def _is_retryable(exc: DBAPIError) -> bool:
    if isinstance(exc, IntegrityError):
        return False
    code = getattr(exc.orig, "sqlstate", None)
    if code in {"40P01", "40001"}:  # deadlock detected, serialization failure
        return True
    return "database is locked" in str(exc.orig)


def _configure_postgresql(engine: AsyncEngine) -> None:
    from mcoflow.engine.store.pgarrays import use_fast_arrays  # psycopg: PostgreSQL only

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        use_fast_arrays(dbapi_connection.driver_connection)


def _configure_sqlite(engine: AsyncEngine) -> None:
    """WAL, a busy timeout, and explicit BEGIN IMMEDIATE for writes: pysqlite's implicit
    transactions would otherwise upgrade read locks mid-transaction and deadlock."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")


class InvalidOperation(RuntimeError):
    """An operator action that does not apply to the plan's current state."""


class ListenLost(ConnectionError):
    """The connection that listened for other processes' commits failed."""


class PlanNotFound(LookupError):
    pass
