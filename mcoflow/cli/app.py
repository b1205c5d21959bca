"""The ``mcoflow`` Typer application, its sub-commands' groups, and what every command
shares: settings, the console, logging, running until a signal."""

from __future__ import annotations

import asyncio
import importlib
import logging
import signal
from typing import Annotated, Any

import typer
from rich.console import Console

from mcoflow.cli.web import web_app
from mcoflow.config import Settings, SettingsError, load_settings

app = typer.Typer(
    help="Durable workflows that run commands on a fleet of hosts.",
    no_args_is_help=True,
    add_completion=False,
)
plans_app = typer.Typer(help="See and operate on plans.", no_args_is_help=True)
db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
app.add_typer(plans_app, name="plans")
app.add_typer(db_app, name="db")
keys_app = typer.Typer(help="Signing keys (Ed25519).", no_args_is_help=True)
app.add_typer(web_app, name="web")
app.add_typer(keys_app, name="keys")
console = Console()

DbOption = Annotated[str | None, typer.Option("--db", help="database URL (MCOFLOW_DATABASE_URL)")]
TransportOption = Annotated[
    str | None, typer.Option("--transport", help="broker URL (MCOFLOW_TRANSPORT_URL)")
]


def cli_settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def import_actions(settings: Settings, extra: list[str] | None = None) -> None:
    for module in (*settings.imports, *(extra or [])):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            console.print(f"[red]error:[/red] imports: cannot import {module!r}: {exc}")
            raise typer.Exit(2) from None


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


async def run_until_signal(start: Any, stop: Any) -> None:
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, done.set)
    await start()
    try:
        await done.wait()
    finally:
        await stop()


def open_world(db: str | None) -> Any:
    """The World on the configured database (or ``db``), with the configured actions."""
    from mcoflow.engine import World

    settings = cli_settings(database_url=db)
    import_actions(settings)
    return World.open(settings.database_url)
