"""Shared fixtures: the stores every engine test runs on.

A test that needs a server finds it from an environment variable with a loopback
default. Where the server is unreachable it is skipped with the reason, except when
CI is set: there it fails, so a green CI run means every store really was exercised.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import NoReturn

import pytest

PG_URL = os.environ.get("MCOFLOW_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def missing(message: str) -> NoReturn:
    """Skip on a laptop without what the test needs (``message`` says what); fail in CI,
    which must have it."""
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must have it", pytrace=False)
    pytest.skip(message)


def unavailable(what: str, why: str) -> NoReturn:
    """Skip on a laptop without the server; fail in CI."""
    missing(f"{what} is not reachable ({why})")


def _pg_admin_url() -> str:
    return PG_URL


@pytest.fixture(scope="session")
def pg_server() -> str:
    import psycopg

    url = _pg_admin_url().replace("postgresql://", "postgresql://", 1)
    try:
        with psycopg.connect(
            url.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=3
        ):
            pass
    except psycopg.OperationalError as exc:
        unavailable("PostgreSQL", str(exc).strip().splitlines()[0])
    return url


def fresh_pg_database(admin_url: str) -> Iterator[str]:
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"mcoflow_t_{uuid.uuid4().hex[:10]}"
    plain = admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield make_url(plain).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL on each store."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'engine.db'}"
        return
    admin = request.getfixturevalue("pg_server")
    yield from fresh_pg_database(admin)


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database URL (for tests about PostgreSQL alone)."""
    yield from fresh_pg_database(pg_server)


@pytest.fixture
async def harness(db_url: str) -> AsyncIterator[object]:
    from mcoflow.testing import engine_harness

    async with engine_harness(db_url) as h:
        yield h
