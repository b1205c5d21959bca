"""`mcoflow executor | serve | agent`, the database schema, the settings and the cleaner."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mcoflow.cli.app import (
    DbOption,
    TransportOption,
    app,
    cli_settings,
    console,
    db_app,
    import_actions,
    plain_unreachable,
    run_async,
    run_until_signal,
    setup_logging,
)
from mcoflow.runtime import tune_gc

if TYPE_CHECKING:
    from mcoflow.engine import Executor
    from mcoflow.settings import Settings

# the exit status of `mcoflow executor` and `serve` when their executor stopped by itself
# (declared dead after a stall longer than dead_after, or one of its loops failed): a
# supervisor starts the process again, and the new executor registers under a new id
EXIT_EXECUTOR_FAILED = 3


@app.command()
def executor(
    db: DbOption = None,
    transport: TransportOption = None,
    imports: Annotated[
        list[str] | None, typer.Option("--import", help="module with actions")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="steps claimed per query")] = None,
    poll_interval: Annotated[float | None, typer.Option(help="seconds between polls")] = None,
    heartbeat_interval: Annotated[float | None, typer.Option()] = None,
    dead_after: Annotated[float | None, typer.Option(help="seconds without heartbeat")] = None,
    log_level: str = "info",
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="only check the settings, the keys, the broker and the database, a "
            "line each; the exit status says whether all passed",
        ),
    ] = False,
) -> None:
    """Run an executor until SIGTERM. It claims runnable steps and runs them."""
    overrides: dict[str, Any] = {
        "database_url": db,
        "transport_url": transport,
        "batch_size": batch_size,
        "poll_interval": poll_interval,
        "heartbeat_interval": heartbeat_interval,
        "dead_after": dead_after,
    }
    if check:
        from mcoflow.checks.executor import check_executor

        raise typer.Exit(check_executor(overrides, imports or []))
    from mcoflow.orchestrator import build_orchestrator

    settings = cli_settings(**overrides)
    import_actions(settings, imports)
    setup_logging(log_level)

    async def main() -> int:
        orchestrator = await build_orchestrator(settings)
        executor = orchestrator.executor
        if await run_until_signal(orchestrator.start, orchestrator.stop, executor.failed):
            return _executor_failed(executor)
        return 0

    tune_gc()
    with plain_unreachable():
        code = run_async(main())
    raise typer.Exit(code)


def _executor_failed(executor: Executor, serve: bool = False) -> int:
    also = " (with its web console and in-process agents)" if serve else ""
    typer.echo(
        f"error: executor {executor.id} stopped: {executor.failure}; this process exits"
        f"{also} with status {EXIT_EXECUTOR_FAILED} for its supervisor to start it again",
        err=True,
    )
    return EXIT_EXECUTOR_FAILED


@app.command()
def serve(
    db: DbOption = None,
    transport: TransportOption = None,
    listen: Annotated[
        str | None,
        typer.Option(
            help="HOST:PORT of the web console (MCOFLOW_LISTEN, default 127.0.0.1:9292); "
            "without login only on loopback with the in-process broker: see `mcoflow web`"
        ),
    ] = None,
    simulate_hosts: Annotated[int, typer.Option(help="add N simulated hosts (sim-00001…)")] = 0,
    simulate_broken_package: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME[@HOST]",
            help="installing NAME on a simulated host always fails (NAME@sim-00003: on "
            "that host only); repeatable. The `simulation` setting (mcoflow.yaml) has "
            "more: flaky_packages (fail once, to try Resume), packages, delay…",
        ),
    ] = None,
    simulate_delay: Annotated[
        float | None,
        typer.Option(min=0, help="seconds each change takes on a simulated host"),
    ] = None,
    local_agent: Annotated[
        bool | None,
        typer.Option(help="serve this machine in-process (default: with the memory broker)"),
    ] = None,
    imports: Annotated[
        list[str] | None, typer.Option("--import", help="module with actions")
    ] = None,
    log_level: str = "info",
) -> None:
    """Run the orchestrator: executor and web console. With the embedded default also
    an agent for this machine, on ./mcoflow.db and the in-process broker unless
    configured."""
    from mcoflow.orchestrator import build_orchestrator
    from mcoflow.rpc.unreachable import safe_url
    from mcoflow.web.auth_settings import WebConfigError, web_auth
    from mcoflow.web.server import WebServer, WebServerError

    settings = cli_settings(database_url=db, transport_url=transport, listen=listen)
    embedded = settings.transport_url.startswith("memory:")
    with_agent = embedded if local_agent is None else local_agent
    simulation = _simulation(settings, simulate_broken_package or [], simulate_delay)
    try:  # before anything is created: a refusal leaves no trace
        auth = web_auth(settings, embedded=embedded)
    except WebConfigError as exc:
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(2) from None
    import_actions(settings, imports)
    setup_logging(log_level)

    async def main() -> int:
        orchestrator = await build_orchestrator(
            settings, local_agent=with_agent, simulate_hosts=simulate_hosts, simulation=simulation
        )
        web = WebServer(orchestrator, settings, embedded=embedded, auth=auth, log_level=log_level)

        async def start() -> None:
            await orchestrator.start()
            try:
                hosts = await _discover_at_start(orchestrator)
                await web.start()  # last: once it answers, the hosts are known
            except BaseException:
                await orchestrator.stop()
                raise
            console.print(
                f"mcoflow serving: database {safe_url(settings.database_url)}, broker "
                f"{safe_url(settings.transport_url)}, executor {orchestrator.executor.id}, "
                f"web {web.url}{'' if auth.enabled else ' (no login: loopback only)'}; "
                f"{hosts} hosts answered discovery. Ctrl-C stops it.",
                soft_wrap=True,
            )

        async def stop() -> None:
            await web.stop()
            await orchestrator.stop()

        executor = orchestrator.executor
        try:
            if await run_until_signal(start, stop, executor.failed):
                # jobs accepted with no executor would wait for one: the whole server goes
                return _executor_failed(executor, serve=True)
        except WebServerError as exc:
            console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
            return 1
        return 0

    tune_gc()
    with plain_unreachable():
        code = run_async(main())
    raise typer.Exit(code)


def _simulation(settings: Settings, broken: list[str], delay: float | None) -> dict[str, Any]:
    """The simulated hosts' settings: the `simulation` setting, then the options."""
    from pydantic import ValidationError

    from mcoflow.agent.providers import SimulationSettings
    from mcoflow.settings import validation_problems

    values = dict(settings.simulation)
    if broken:
        values["broken_packages"] = [*values.get("broken_packages", ()), *broken]
    if delay is not None:
        values["delay"] = delay
    try:
        return SimulationSettings.model_validate(values).model_dump(mode="json")
    except ValidationError as exc:
        console.print(f"[red]error:[/red] simulation: {validation_problems(exc)}", soft_wrap=True)
        raise typer.Exit(2) from None


async def _discover_at_start(orchestrator: Any) -> int:
    """Record which hosts exist, so jobs can refuse unknown ones."""
    from mcoflow.actions import Jobs

    try:
        return len(await Jobs(orchestrator.world).discover(timeout=2.0))
    except Exception as exc:  # the server still serves; jobs then skip the host check
        console.print(f"[yellow]discovery at start failed: {exc}[/yellow]")
        return 0


@app.command()
def agent(
    config: Annotated[str | None, typer.Option(help="agent YAML file")] = None,
    log_level: str = "info",
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="only check the config, the keys and the broker, a line each; the exit "
            "status says whether all passed",
        ),
    ] = False,
) -> None:
    """Run the agent daemon on this host."""
    from mcoflow.agent.__main__ import main as agent_main

    argv = ["--log-level", log_level.upper()]
    if config:
        argv += ["--config", config]
    if check:
        argv.append("--check")
    raise typer.Exit(agent_main(argv))


@db_app.command("upgrade")
def db_upgrade(db: DbOption = None) -> None:
    """Create or upgrade the schema to the latest revision."""
    from mcoflow.engine import Store
    from mcoflow.engine.migrate import current

    settings = cli_settings(database_url=db)

    async def main() -> None:
        import asyncio

        store = Store(settings.database_url)
        try:
            await store.upgrade()
            revision = await asyncio.to_thread(current, store.url)
        finally:
            await store.close()
        console.print(f"database at revision {revision}")

    with plain_unreachable():
        run_async(main())


@app.command("config")
def show_config() -> None:
    """Show the effective settings and where they come from."""
    import os

    from mcoflow.rpc.unreachable import safe_url
    from mcoflow.settings import _from_file, config_file

    settings = cli_settings()
    path = config_file()
    in_file = _from_file(path)
    console.print(f"config file: {path or '(none)'}", soft_wrap=True)
    for key, value in settings.model_dump(mode="json").items():
        if key in ("database_url", "transport_url"):  # the output may be pasted anywhere
            value = safe_url(value)
        if f"MCOFLOW_{key.upper()}" in {name.upper() for name in os.environ}:
            source = f"MCOFLOW_{key.upper()}"
        else:
            source = "file" if key in in_file else "default"
        console.print(f"{key} = {value}  ({source})", soft_wrap=True, markup=False)


@app.command()
def clean(
    db: DbOption = None,
    days: Annotated[float | None, typer.Option(help="retention in days")] = None,
) -> None:
    """Delete finished plans past the retention period."""
    from mcoflow.engine import Store

    settings = cli_settings(database_url=db, retention_days=days)

    async def main() -> None:
        store = Store(settings.database_url)
        try:
            n = await store.delete_finished_plans(time.time() - settings.retention_days * 86400)
        finally:
            await store.close()
        console.print(f"deleted {n} finished plans")

    run_async(main())
