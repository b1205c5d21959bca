"""`mcoflow ...`: the command line. Synchronous at the edge, asyncio inside."""

from __future__ import annotations

import contextlib
import sys

# isort: off
# They register their commands; `--help` lists them in this order.
from mcoflow.cli import jobs, rpc, templates, schedules, hosts, groups  # noqa: F401
from mcoflow.cli import plans, fleets, processes, keys  # noqa: F401

# isort: on
from mcoflow.cli.app import app

__all__ = ["app", "main"]

# the `server` extra's packages: a host's minimal install has none of them, and a command
# that needs them says which install it takes instead of printing a traceback
SERVER_PACKAGES = frozenset(
    {"sqlalchemy", "alembic", "psycopg", "aiosqlite", "fastapi", "starlette", "jinja2",
     "uvicorn", "multipart", "python_multipart"}
)  # fmt: skip


def main() -> None:
    try:
        with contextlib.suppress(KeyboardInterrupt):
            app()
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in SERVER_PACKAGES:
            raise
        print(
            f"error: this command needs mcoflow's server packages ({exc.name} is not "
            "installed): pip install 'mcoflow[server]'",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
