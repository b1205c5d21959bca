"""The ``mcoflow`` Typer application, its sub-commands' groups, and what every command
shares: settings, the console, logging, running until a signal."""

from __future__ import annotations

from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console

from mcoflow.cli.web import web_app

if TYPE_CHECKING:  # the commands import what they use: `mcoflow --help` stays quick
    from rich.table import Table

    from mcoflow.settings import Settings

app = typer.Typer(
    help="Durable workflows that run commands on a fleet of hosts.",
    no_args_is_help=True,
    add_completion=False,
    # click's plain help: Typer's rich help imports Markdown and syntax highlighting,
    # which is most of `mcoflow --help`'s time
    rich_markup_mode=None,
)
plans_app = typer.Typer(help="See and operate on plans.", no_args_is_help=True)
db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
app.add_typer(plans_app, name="plans")
app.add_typer(db_app, name="db")
keys_app = typer.Typer(help="Signing keys (Ed25519).", no_args_is_help=True)
app.add_typer(web_app, name="web")
app.add_typer(keys_app, name="keys")
console = Console()

DbOption = Annotated[
    str | None,
    typer.Option("--db", metavar="URL", help="database URL (MCOFLOW_DATABASE_URL)"),
]
PlanIdArgument = Annotated[
    str, typer.Argument(metavar="PLAN", help="plan id, or its first characters (4 or more)")
]
TransportOption = Annotated[
    str | None,
    typer.Option("--transport", metavar="URL", help="broker URL (MCOFLOW_TRANSPORT_URL)"),
]


def add_id_column(table: Table, header: str = "id") -> None:
    """A column of plan ids, never cut: it keeps its 32 characters on one line and the
    other columns wrap (beside four short ones it still fits 80 columns)."""
    table.add_column(header, min_width=32, no_wrap=True, overflow="fold")


def clip(text: str, limit: int = 400) -> str:
    """``text``, or when longer than ``limit`` its start up to a space, then " …": a table
    cell wraps, but a step's whole output is for ``--json``."""
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit)
    return text[: cut if cut > limit // 2 else limit] + " …"


def cli_settings(**overrides: Any) -> Settings:
    from mcoflow.settings import SettingsError, load_settings

    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def import_actions(settings: Settings, extra: list[str] | None = None) -> None:
    import importlib

    for module in (*settings.imports, *(extra or [])):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            console.print(f"[red]error:[/red] imports: cannot import {module!r}: {exc}")
            raise typer.Exit(2) from None


def setup_logging(level: str) -> None:
    import logging

    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


T = TypeVar("T")


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``: asyncio is imported by the commands that run, not by
    `mcoflow --help`."""
    import asyncio

    return asyncio.run(main)


async def run_until_signal(start: Any, stop: Any, failed: Any = None) -> bool:
    """Run until SIGTERM or SIGINT, or until the ``failed`` event is set (an
    asyncio.Event): then True, for the command to exit non-zero."""
    import asyncio
    import signal

    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, done.set)
    waits = [asyncio.ensure_future(done.wait())]
    if failed is not None:
        waits.append(asyncio.ensure_future(failed.wait()))
    await start()
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
        await stop()
    return failed is not None and bool(failed.is_set())


async def wait_showing_progress(world: Any, plan_id: str) -> Any:
    """Wait until the plan stops or pauses, with a progress bar on the console (gone once
    done); the plan as it ended."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from mcoflow.actions.jobs import wait_with_progress

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("running", total=1.0)

        def update(plan: Any) -> None:
            progress.update(task, completed=plan.progress, description=plan.state.value)

        return await wait_with_progress(world, plan_id, update)


@contextmanager
def plain_unreachable() -> Iterator[None]:
    """A database or broker that does not answer at start-up ends the command with one
    line (URL, reason, what to do) instead of a traceback."""
    from mcoflow.engine.store.unavailable import StoreUnavailable
    from mcoflow.rpc.transport import TransportError

    try:
        yield
    except (StoreUnavailable, TransportError) as exc:
        exit_unreachable(str(exc))


def exit_unreachable(message: str) -> NoReturn:
    """A database or broker that cannot be used: one line on stderr (never wrapped to the
    terminal's width), exit status 1."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


async def open_world(db: str | None) -> Any:
    """The World on the configured database (or ``db``), with the configured actions;
    a database that cannot be opened ends the command with one line saying why."""
    from mcoflow.engine import World
    from mcoflow.engine.store.unavailable import StoreUnavailable

    settings = cli_settings(database_url=db)
    import_actions(settings)
    try:
        return await World.open(settings.database_url)
    except StoreUnavailable as exc:
        exit_unreachable(str(exc))
