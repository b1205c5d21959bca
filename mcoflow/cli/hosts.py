"""`mcoflow hosts`: the host inventory (every host a discovery or a reply has shown)."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from mcoflow.cli.app import DbOption, app, console, open_world, run_async


def _ago(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.1f} days ago"


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def host_json(host: Any) -> dict[str, Any]:
    return {
        "identity": host.identity,
        "facts": dict(host.facts),
        "classes": list(host.classes),
        "agents": list(host.agents),
        "first_seen": host.first_seen,
        "last_seen": host.last_seen,
        "inventory_at": host.inventory_at,
    }


@app.command()
def hosts(
    filter_: Annotated[
        str | None,
        typer.Option("--filter", help="only hosts it selects: 'os_family=debian class:web'"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    db: DbOption = None,
) -> None:
    """List the known hosts. Every host a discovery found or that answered a request."""
    from mcoflow.actions import JobInputError, Jobs
    from mcoflow.actions.inventory import facts_summary

    async def main() -> int:
        world = await open_world(db)
        try:
            try:
                found = await Jobs(world).hosts(filter_)
            except JobInputError as exc:
                console.print(f"[red]error:[/red] {exc.field}: {exc.message}")
                return 2
        finally:
            await world.close()
        if as_json:
            sys.stdout.write(json.dumps([host_json(h) for h in found], indent=2) + "\n")
            return 0
        now = time.time()
        table = Table(title=f"{len(found)} host{'' if len(found) == 1 else 's'}")
        for col in ("identity", "last seen", "facts", "classes", "agents"):
            table.add_column(col, overflow="fold")
        for h in found:
            table.add_row(
                h.identity,
                f"{_when(h.last_seen)} ({_ago(max(0.0, now - h.last_seen))})",
                facts_summary(h.facts),
                ",".join(h.classes),
                ",".join(h.agents),
            )
        console.print(table)
        if not found and not filter_:
            console.print("no host seen yet: `mcoflow discover` asks every host to answer")
        return 0

    raise typer.Exit(run_async(main()))
