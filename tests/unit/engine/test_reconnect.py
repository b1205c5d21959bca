"""The policy for a database that goes away (store.reconnect): which errors mean it is
unreachable, the backoff, and a log that says so once per outage."""

from __future__ import annotations

import logging
import sqlite3
import time

import psycopg
import pytest
from psycopg import errors
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError

from mcoflow.engine.store.liveness import LivenessLost
from mcoflow.engine.store.reconnect import Backoff, DatabaseLink, is_unreachable, reason
from mcoflow.engine.store.unavailable import StoreUnavailable

URL = make_url("postgresql+psycopg://mcoflow:secret@db.example:5433/mcoflow")


def wrapped(orig: Exception) -> OperationalError:
    return OperationalError("SELECT 1", {}, orig)


@pytest.mark.parametrize(
    "exc",
    [
        wrapped(psycopg.OperationalError("connection failed: Connection refused")),
        wrapped(errors.AdminShutdown("terminating connection due to administrator command")),
        wrapped(errors.CannotConnectNow("the database system is starting up")),
        psycopg.OperationalError("server closed the connection unexpectedly"),
        LivenessLost("connection lost"),
        StoreUnavailable("cannot open the database"),
        ConnectionRefusedError(111, "refused"),
        OperationalError("BEGIN", {}, sqlite3.OperationalError("unable to open database file")),
    ],
)
def test_a_lost_or_refused_connection_is_unreachable(exc: Exception) -> None:
    assert is_unreachable(exc)


@pytest.mark.parametrize(
    "exc",
    [
        wrapped(errors.DeadlockDetected("deadlock detected")),
        IntegrityError("INSERT", {}, errors.UniqueViolation("duplicate key")),
        OperationalError("BEGIN", {}, sqlite3.OperationalError("database is locked")),
        OperationalError("SELECT", {}, sqlite3.OperationalError("no such table: steps")),
        wrapped(errors.UndefinedTable('relation "steps" does not exist')),
        ValueError("not the database"),
        PermissionError("a file, not the database"),
    ],
)
def test_other_errors_are_not(exc: Exception) -> None:
    assert not is_unreachable(exc)


def test_backoff_doubles_from_half_a_second_up_to_five() -> None:
    backoff = Backoff()
    assert [backoff.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_an_outage_is_logged_once_and_its_end_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "mcoflow.store")
    link = DatabaseLink(URL)
    link.name = "executor e1"
    link.found(time.monotonic())  # it answered at start
    refused = wrapped(psycopg.OperationalError("connection failed: Connection refused"))
    before = time.monotonic()
    for _ in range(5):
        link.lost(refused)
    link.found(before)  # began before the failures: proves nothing
    assert not link.reachable
    link.found(time.monotonic())
    link.found(time.monotonic())
    assert link.reachable and link.outages == 1
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == (
        "executor e1: database unreachable: postgresql://mcoflow:***@db.example:5433/mcoflow: "
        "connection refused; is PostgreSQL running and listening on db.example:5433?; retrying"
    )
    assert len(lines) == 2 and lines[1].startswith("executor e1: database reachable again after ")
    assert "secret" not in caplog.text
    assert link.since_back() < 5.0


async def test_retry_waits_for_the_database_and_gives_up_on_other_errors() -> None:
    link = DatabaseLink(URL, first=0.001, cap=0.002)
    link.found(time.monotonic())
    attempts = []

    async def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 4:
            raise wrapped(psycopg.OperationalError("connection failed: Connection refused"))
        return "stored"

    assert await link.retry(flaky) == "stored"
    assert len(attempts) == 4 and link.outages == 1

    async def broken() -> None:
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        await link.retry(broken)


@pytest.mark.parametrize(
    ("driver_says", "reason_ends"),
    [
        (
            "consuming input failed: server closed the connection unexpectedly\n\tThis "
            "probably means the server terminated abnormally",
            "the server closed the connection (stopped or restarting?)",
        ),
        ("terminating connection due to administrator command", "(stopped or restarting?)"),
        ("the database system is starting up", "the server is starting up"),
    ],
)
def test_a_restart_is_said_in_plain_words(driver_says: str, reason_ends: str) -> None:
    said = reason(URL, wrapped(psycopg.OperationalError(driver_says)))
    assert said == f"postgresql://mcoflow:***@db.example:5433/mcoflow: {said.split(': ', 1)[1]}"
    assert said.endswith(reason_ends)


def test_a_database_never_reached_is_no_outage(caplog: pytest.LogCaptureFixture) -> None:
    """At start the caller says why (StoreUnavailable): no "retrying" line before it."""
    link = DatabaseLink(URL)
    link.lost(wrapped(psycopg.OperationalError("connection failed: Connection refused")))
    assert (link.reachable, link.outages, caplog.records) == (True, 0, [])
