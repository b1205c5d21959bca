"""`mcoflow ...`: the command line. Synchronous at the edge, asyncio inside."""

from __future__ import annotations

import contextlib

from mcoflow.cli import jobs, keys, plans, processes  # noqa: F401  (they register commands)
from mcoflow.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    with contextlib.suppress(KeyboardInterrupt):
        app()
