"""`mcoflow ...`: the command line. Synchronous at the edge, asyncio inside."""

from __future__ import annotations

import contextlib

# isort: off
# They register their commands; `--help` lists them in this order.
from mcoflow.cli import jobs, hosts, plans, fleets, processes, keys  # noqa: F401

# isort: on
from mcoflow.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    with contextlib.suppress(KeyboardInterrupt):
        app()
