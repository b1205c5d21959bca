"""`mcoflow ...`: the command line. Synchronous at the edge, asyncio inside."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import signal
import sys
import time
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

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
console = Console()

DbOption = Annotated[str | None, typer.Option("--db", help="database URL (MCOFLOW_DATABASE_URL)")]


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def _import_actions(settings: Settings, extra: list[str] | None = None) -> None:
    for module in (*settings.imports, *(extra or [])):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            console.print(f"[red]error:[/red] imports: cannot import {module!r}: {exc}")
            raise typer.Exit(2) from None


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


async def _run_until_signal(start: Any, stop: Any) -> None:
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, done.set)
    await start()
    try:
        await done.wait()
    finally:
        await stop()


@app.command()
def executor(
    db: DbOption = None,
    imports: Annotated[
        list[str] | None, typer.Option("--import", help="module with actions")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="steps claimed per query")] = None,
    poll_interval: Annotated[float | None, typer.Option(help="seconds between polls")] = None,
    heartbeat_interval: Annotated[float | None, typer.Option()] = None,
    dead_after: Annotated[float | None, typer.Option(help="seconds without heartbeat")] = None,
    log_level: str = "info",
) -> None:
    """Run an executor: claim runnable steps and run them until SIGTERM."""
    from mcoflow.engine import Executor, Store

    settings = _settings(
        database_url=db,
        batch_size=batch_size,
        poll_interval=poll_interval,
        heartbeat_interval=heartbeat_interval,
        dead_after=dead_after,
    )
    _import_actions(settings, imports)
    _logging(log_level)

    async def main() -> None:
        store = Store(settings.database_url)
        await store.upgrade()
        ex = Executor(
            store,
            batch_size=settings.batch_size,
            poll_interval=settings.poll_interval,
            heartbeat_interval=settings.heartbeat_interval,
            dead_after=settings.dead_after,
        )

        async def stop() -> None:
            await ex.stop()
            await store.close()

        await _run_until_signal(ex.start, stop)

    asyncio.run(main())


@app.command()
def serve(
    db: DbOption = None,
    imports: Annotated[
        list[str] | None, typer.Option("--import", help="module with actions")
    ] = None,
    log_level: str = "info",
) -> None:
    """Run the orchestrator: an executor on the configured database (embedded default:
    ./mcoflow.db and the in-process broker)."""
    from mcoflow.engine import Executor, Store

    settings = _settings(database_url=db)
    _import_actions(settings, imports)
    _logging(log_level)

    async def main() -> None:
        store = Store(settings.database_url)
        await store.upgrade()
        ex = Executor(
            store,
            batch_size=settings.batch_size,
            poll_interval=settings.poll_interval,
            heartbeat_interval=settings.heartbeat_interval,
            dead_after=settings.dead_after,
        )

        async def start() -> None:
            await ex.start()
            console.print(
                f"mcoflow serving on {settings.database_url} (executor {ex.id}); Ctrl-C stops it"
            )

        async def stop() -> None:
            await ex.stop()
            await store.close()

        await _run_until_signal(start, stop)

    asyncio.run(main())


@app.command()
def agent(
    config: Annotated[str | None, typer.Option(help="agent YAML file")] = None,
    log_level: str = "info",
) -> None:
    """Run the agent daemon on this host."""
    from mcoflow.agent.__main__ import main as agent_main

    argv = ["--log-level", log_level.upper()]
    if config:
        argv += ["--config", config]
    raise typer.Exit(agent_main(argv))


@db_app.command("upgrade")
def db_upgrade(db: DbOption = None) -> None:
    """Create or upgrade the schema to the latest revision."""
    from mcoflow.engine import Store
    from mcoflow.engine.migrate import current

    settings = _settings(database_url=db)

    async def main() -> None:
        store = Store(settings.database_url)
        try:
            await store.upgrade()
            revision = await asyncio.to_thread(current, store.url)
        finally:
            await store.close()
        console.print(f"database at revision {revision}")

    asyncio.run(main())


@app.command("config")
def show_config() -> None:
    """Show the effective settings and where they come from."""
    from mcoflow.config import config_file

    settings = _settings()
    console.print(f"config file: {config_file() or '(none)'}")
    for key, value in settings.model_dump(mode="json").items():
        console.print(f"{key} = {value}")


def _world(db: str | None) -> Any:
    from mcoflow.engine import World

    settings = _settings(database_url=db)
    _import_actions(settings)
    return World.open(settings.database_url)


def _when(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


@plans_app.command("list")
def plans_list(
    db: DbOption = None,
    state: Annotated[
        str | None, typer.Option(help="pending|scheduled|running|paused|stopped")
    ] = None,
    result: Annotated[str | None, typer.Option(help="success|warning|error|cancelled")] = None,
    label: Annotated[str | None, typer.Option(help="text in the label")] = None,
    limit: int = 20,
    offset: int = 0,
) -> None:
    """List plans, newest first."""
    from mcoflow.engine import PlanFilter, PlanResult, PlanState

    try:
        filters = PlanFilter(
            state=PlanState(state) if state else None,
            result=PlanResult(result) if result else None,
            label=label,
        )
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None

    async def main() -> None:
        world = await _world(db)
        try:
            page = await world.list_plans(filters, offset=offset, limit=limit)
        finally:
            await world.close()
        table = Table(title=f"plans {offset + 1}-{offset + len(page.items)} of {page.total}")
        for col in ("id", "label", "state", "result", "progress", "started"):
            table.add_column(col)
        for p in page.items:
            table.add_row(
                p.id,
                p.label,
                p.state.value,
                p.result.value,
                f"{p.progress:.0%}",
                _when(p.started_at),
            )
        console.print(table)

    asyncio.run(main())


@plans_app.command("show")
def plans_show(
    plan_id: str, db: DbOption = None, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """Show a plan with its steps and history."""
    from mcoflow.engine import PlanNotFound

    async def main() -> None:
        world = await _world(db)
        try:
            plan = await world.get_plan(plan_id)
            steps = await world.steps(plan_id)
            history = await world.history(plan_id)
        except PlanNotFound as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from None
        finally:
            await world.close()
        if as_json:
            sys.stdout.write(
                json.dumps(
                    {
                        "id": plan.id,
                        "label": plan.label,
                        "state": plan.state.value,
                        "result": plan.result.value,
                        "progress": plan.progress,
                        "flow": plan.flow,
                        "error": plan.error,
                        "steps": [
                            {
                                "idx": s.idx,
                                "action": s.action,
                                "state": s.state.value,
                                "input": s.input,
                                "output": s.output,
                                "error": s.error,
                            }
                            for s in steps
                        ],
                    }
                )
                + "\n"
            )
            return
        console.print(f"[bold]{plan.label}[/bold]  {plan.id}")
        console.print(
            f"state {plan.state.value}, result {plan.result.value}, "
            f"progress {plan.progress:.0%}, flow {plan.flow}"
        )
        if plan.error:
            console.print(f"[red]{plan.error}[/red]")
        table = Table()
        for col in ("step", "action", "state", "output / error"):
            table.add_column(col)
        for s in steps:
            detail = s.error["message"] if s.error else json.dumps(s.output or {})
            table.add_row(str(s.idx), s.action, s.state.value, detail[:120])
        console.print(table)
        for h in history:
            console.print(f"{_when(h.at)}  {h.what}  {h.detail or ''}  by {h.by}")

    asyncio.run(main())


def _operate(plan_id: str, db: str | None, op: str, step: int | None = None) -> None:
    from mcoflow.engine import InvalidOperation, PlanNotFound

    async def main() -> None:
        world = await _world(db)
        try:
            if op == "resume":
                plan = await world.resume(plan_id, by="cli")
            elif op == "skip":
                assert step is not None
                plan = await world.skip(plan_id, step, by="cli")
            else:
                plan = await world.cancel(plan_id, by="cli")
        except (InvalidOperation, PlanNotFound) as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from None
        finally:
            await world.close()
        console.print(f"plan {plan.id}: {plan.state.value}, result {plan.result.value}")

    asyncio.run(main())


@plans_app.command("resume")
def plans_resume(plan_id: str, db: DbOption = None) -> None:
    """Run a paused plan's failed steps again."""
    _operate(plan_id, db, "resume")


@plans_app.command("skip")
def plans_skip(plan_id: str, step: int, db: DbOption = None) -> None:
    """Skip a failed step (and the steps that need its output); the rest goes on."""
    _operate(plan_id, db, "skip", step)


@plans_app.command("cancel")
def plans_cancel(plan_id: str, db: DbOption = None) -> None:
    """Cancel a plan."""
    _operate(plan_id, db, "cancel")


@app.command()
def clean(
    db: DbOption = None,
    days: Annotated[float | None, typer.Option(help="retention in days")] = None,
) -> None:
    """Delete finished plans older than the retention period."""
    from mcoflow.engine import Store

    settings = _settings(database_url=db, retention_days=days)

    async def main() -> None:
        store = Store(settings.database_url)
        try:
            n = await store.delete_finished_plans(time.time() - settings.retention_days * 86400)
        finally:
            await store.close()
        console.print(f"deleted {n} finished plans")

    asyncio.run(main())


def main() -> None:
    with contextlib.suppress(KeyboardInterrupt):
        app()
