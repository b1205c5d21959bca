"""A database that cannot be opened, said in one line: which (password hidden), why,
and what to do, instead of the driver's traceback."""

from __future__ import annotations

import re

from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError


class StoreUnavailable(RuntimeError):
    """The database cannot be reached or opened; the message is meant for the operator."""


def shown_url(url: URL) -> str:
    """The URL as the operator would write it (no async driver name), password hidden."""
    return url.set(drivername=url.get_backend_name()).render_as_string(hide_password=True)


# (pattern in the driver's message, what it means and what to do); first match wins
_POSTGRESQL = (
    (
        r'database "([^"]+)" does not exist',
        "database does not exist; create it (createdb {0}) or point --db / "
        "MCOFLOW_DATABASE_URL at one that does; mcoflow creates its tables itself",
    ),
    (
        r"connection refused",
        "connection refused; is PostgreSQL running and listening on {host}:{port}?",
    ),
    (
        r'password authentication failed for user "([^"]+)"',
        'password authentication failed for user "{0}"; check the user and password',
    ),
    (r'role "([^"]+)" does not exist', 'no such user (role) "{0}" on the server'),
    (
        r"could not translate host name|name or service not known|nodename nor servname",
        "unknown host {host}; check the host name in the URL",
    ),
    (r"timeout expired|timed out", "no answer from {host}:{port}; is the server reachable?"),
    (
        r"server closed the connection unexpectedly|terminating connection due to "
        r"administrator command|the database system is shutting down",
        "the server closed the connection (stopped or restarting?)",
    ),
    (r"the database system is starting up", "the server is starting up"),
    (r"no such file or directory", "no server socket there; is PostgreSQL running?"),
)
_SQLITE = (
    (
        r"unable to open database file",
        "cannot create or open the file; does its folder exist, and may this user write there?",
    ),
    (r"file is not a database", "the file is not an SQLite database"),
    (r"readonly database|read-only", "the file is read-only for this user"),
)


def describe(url: URL, exc: BaseException) -> str:
    """One line for ``exc`` raised while opening ``url``."""
    original = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = " ".join(str(original).split())
    rules = _POSTGRESQL if url.get_backend_name() == "postgresql" else _SQLITE
    for pattern, advice in rules:
        found = re.search(pattern, text, re.IGNORECASE)
        if found:
            reason = advice.format(
                *found.groups(), host=url.host or "localhost", port=url.port or 5432
            )
            break
    else:
        reason = text.removeprefix("connection failed: ") or type(original).__name__
    return f"cannot open the database {shown_url(url)}: {reason}"


def unavailable(url: URL, exc: BaseException) -> StoreUnavailable:
    return StoreUnavailable(describe(url, exc))
