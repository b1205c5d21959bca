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

from mcoflow.cli_web import web_app
from mcoflow.config import Settings, SettingsError, load_settings, validation_problems
from mcoflow.runtime import tune_gc

app = typer.Typer(
    help="Durable workflows that run commands on a fleet of hosts.",
    no_args_is_help=True,
    add_completion=False,
)
plans_app = typer.Typer(help="See and operate on plans.", no_args_is_help=True)
db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
app.add_typer(plans_app, name="plans")
app.add_typer(db_app, name="db")
app.add_typer(web_app, name="web")
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
    transport: Annotated[
        str | None, typer.Option(help="broker URL (MCOFLOW_TRANSPORT_URL)")
    ] = None,
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
    from mcoflow.server import build_orchestrator

    settings = _settings(
        database_url=db,
        transport_url=transport,
        batch_size=batch_size,
        poll_interval=poll_interval,
        heartbeat_interval=heartbeat_interval,
        dead_after=dead_after,
    )
    _import_actions(settings, imports)
    _logging(log_level)

    async def main() -> None:
        orchestrator = await build_orchestrator(settings)
        await _run_until_signal(orchestrator.start, orchestrator.stop)

    tune_gc()
    asyncio.run(main())


@app.command()
def serve(
    db: DbOption = None,
    transport: Annotated[
        str | None, typer.Option(help="broker URL (MCOFLOW_TRANSPORT_URL)")
    ] = None,
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
    """Run the orchestrator: executor, web console and (embedded default) an agent for
    this machine, on ./mcoflow.db and the in-process broker unless configured."""
    from mcoflow.server import build_orchestrator
    from mcoflow.web.auth_config import WebConfigError, web_auth
    from mcoflow.web.server import WebServer, WebServerError

    settings = _settings(database_url=db, transport_url=transport, listen=listen)
    embedded = settings.transport_url.startswith("memory:")
    with_agent = embedded if local_agent is None else local_agent
    simulation = _simulation(settings, simulate_broken_package or [], simulate_delay)
    try:  # before anything is created: a refusal leaves no trace
        auth = web_auth(settings, embedded=embedded)
    except WebConfigError as exc:
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(2) from None
    _import_actions(settings, imports)
    _logging(log_level)

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
                f"mcoflow serving: database {settings.database_url}, broker "
                f"{settings.transport_url}, executor {orchestrator.executor.id}, "
                f"web {web.url}{'' if auth.enabled else ' (no login: loopback only)'}; "
                f"{hosts} hosts answered discovery. Ctrl-C stops it.",
                soft_wrap=True,
            )

        async def stop() -> None:
            await web.stop()
            await orchestrator.stop()

        try:
            await _run_until_signal(start, stop)
        except WebServerError as exc:
            console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
            return 1
        return 0

    tune_gc()
    raise typer.Exit(asyncio.run(main()))


def _simulation(settings: Settings, broken: list[str], delay: float | None) -> dict[str, Any]:
    """The simulated hosts' settings: the `simulation` setting, then the options."""
    from pydantic import ValidationError

    from mcoflow.agent.providers import SimulationSettings

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


# ---- the operator's jobs ------------------------------------------------------------

FilterOption = Annotated[
    str | None,
    typer.Option("--filter", help="select hosts by discovery: 'os_family=debian class:web'"),
]
ConcurrencyOption = Annotated[int | None, typer.Option(help="hosts at a time")]
BatchOption = Annotated[str | None, typer.Option("--batch", help="batch size: n or n%")]
MaxFailuresOption = Annotated[str | None, typer.Option(help="stop after n (or n%) failed hosts")]
NoWaitOption = Annotated[bool, typer.Option("--no-wait", help="trigger and return")]
TimeoutOption = Annotated[float | None, typer.Option(help="seconds a host may take")]


def _split_targets(args: list[str], filter_: str | None, what: str) -> tuple[str, list[str]]:
    """With --filter every argument is a package/service; else the first is HOSTS."""
    if filter_:
        return "", args
    if len(args) < 2:
        console.print(f"[red]error:[/red] give HOSTS (comma-separated) and at least one {what}")
        raise typer.Exit(2)
    return args[0], args[1:]


def _job(
    kind: str,
    hosts: str,
    filter_: str | None,
    parameter: str,
    *,
    db: str | None,
    concurrency: int | None,
    batch: str | None,
    max_failures: str | None,
    timeout: float | None,
    no_wait: bool,
) -> None:
    from mcoflow.actions import JobInputError, Jobs

    async def main() -> int:
        world = await _world(db)
        try:
            try:
                plan = await Jobs(world).trigger(
                    kind,
                    hosts=hosts,
                    filter=filter_,
                    parameter=parameter,
                    concurrency=concurrency,
                    batch_size=batch,
                    max_failures=max_failures,
                    timeout=timeout,
                    by="cli",
                )
            except JobInputError as exc:
                console.print(f"[red]error:[/red] {exc.field}: {exc.message}")
                return 2
            console.print(f"plan {plan.id}: {plan.label}")
            if no_wait:
                return 0
            if not await world.executors():
                console.print(
                    "[yellow]no executor is running: the plan starts when one does "
                    "(`mcoflow serve`)[/yellow]"
                )
                return 3
            return await _follow(world, plan.id)
        finally:
            await world.close()

    raise typer.Exit(asyncio.run(main()))


async def _follow(world: Any, plan_id: str) -> int:
    """Show progress until the plan stops or pauses, then a per-host result table."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from mcoflow.actions import host_results
    from mcoflow.actions.jobs import wait_with_progress
    from mcoflow.engine import PlanResult

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

        plan = await wait_with_progress(world, plan_id, update)
    rows = await host_results(world, plan_id)
    table = Table(title=f"{plan.label}: {plan.state.value}, result {plan.result.value}")
    if rows:
        for col in ("host", "state", "result", "seconds", "message"):
            table.add_column(col)
        for r in rows:
            table.add_row(
                r.host,
                r.state.value,
                r.result.value,
                "" if r.duration is None else f"{r.duration:.1f}",
                r.message[:100],
            )
    else:
        for col in ("step", "action", "state", "output / error"):
            table.add_column(col)
        for s in await world.steps(plan_id):
            if not s.has_run:
                continue
            detail = s.error["message"] if s.error else json.dumps(s.output or {})
            table.add_row(str(s.idx), s.action, s.state.value, detail[:100])
    console.print(table)
    if plan.result is not PlanResult.SUCCESS:
        console.print(
            f"plan {plan.id} {plan.state.value} with result {plan.result.value}"
            + (f": {plan.error}" if plan.error else "")
            + (
                "; `mcoflow plans resume|skip|cancel` to go on"
                if plan.state.value == "paused"
                else ""
            )
        )
        return 1
    return 0


@app.command()
def install(
    args: Annotated[list[str], typer.Argument(help="HOSTS PACKAGE... (HOSTS comma-separated)")],
    filter_: FilterOption = None,
    concurrency: ConcurrencyOption = None,
    batch: BatchOption = None,
    max_failures: MaxFailuresOption = None,
    timeout: TimeoutOption = None,
    no_wait: NoWaitOption = False,
    db: DbOption = None,
) -> None:
    """Install packages on hosts."""
    hosts, names = _split_targets(args, filter_, "package")
    _job(
        "install",
        hosts,
        filter_,
        ",".join(names),
        db=db,
        concurrency=concurrency,
        batch=batch,
        max_failures=max_failures,
        timeout=timeout,
        no_wait=no_wait,
    )


@app.command()
def uninstall(
    args: Annotated[list[str], typer.Argument(help="HOSTS PACKAGE... (HOSTS comma-separated)")],
    filter_: FilterOption = None,
    concurrency: ConcurrencyOption = None,
    batch: BatchOption = None,
    max_failures: MaxFailuresOption = None,
    timeout: TimeoutOption = None,
    no_wait: NoWaitOption = False,
    db: DbOption = None,
) -> None:
    """Remove packages from hosts."""
    hosts, names = _split_targets(args, filter_, "package")
    _job(
        "uninstall",
        hosts,
        filter_,
        ",".join(names),
        db=db,
        concurrency=concurrency,
        batch=batch,
        max_failures=max_failures,
        timeout=timeout,
        no_wait=no_wait,
    )


@app.command()
def restart(
    args: Annotated[list[str], typer.Argument(help="HOSTS SERVICE... (HOSTS comma-separated)")],
    filter_: FilterOption = None,
    concurrency: ConcurrencyOption = None,
    batch: BatchOption = None,
    max_failures: MaxFailuresOption = None,
    timeout: TimeoutOption = None,
    no_wait: NoWaitOption = False,
    db: DbOption = None,
) -> None:
    """Restart services on hosts."""
    hosts, names = _split_targets(args, filter_, "service")
    _job(
        "restart",
        hosts,
        filter_,
        ",".join(names),
        db=db,
        concurrency=concurrency,
        batch=batch,
        max_failures=max_failures,
        timeout=timeout,
        no_wait=no_wait,
    )


@app.command("install-and-restart")
def install_and_restart(
    args: Annotated[list[str], typer.Argument(help="HOSTS 'pkg1,pkg2;svc1,svc2'")],
    filter_: FilterOption = None,
    concurrency: ConcurrencyOption = None,
    batch: BatchOption = None,
    max_failures: MaxFailuresOption = None,
    timeout: TimeoutOption = None,
    no_wait: NoWaitOption = False,
    db: DbOption = None,
) -> None:
    """Install packages, then restart services if an install changed the host."""
    hosts, names = _split_targets(args, filter_, "parameter")
    if len(names) != 1:
        console.print("[red]error:[/red] parameter: give one 'pkg1,pkg2;svc1,svc2' argument")
        raise typer.Exit(2)
    _job(
        "install-and-restart",
        hosts,
        filter_,
        names[0],
        db=db,
        concurrency=concurrency,
        batch=batch,
        max_failures=max_failures,
        timeout=timeout,
        no_wait=no_wait,
    )


@app.command()
def discover(
    filter_: FilterOption = None,
    db: DbOption = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for replies")] = 2.0,
) -> None:
    """List the hosts that answer (through the running executor's broker)."""
    from mcoflow.actions import JobInputError, Jobs

    async def main() -> int:
        world = await _world(db)
        try:
            if not await world.executors():
                console.print("[red]error:[/red] no executor is running: start `mcoflow serve`")
                return 3
            try:
                hosts = await Jobs(world).discover(filter_, timeout=timeout)
            except JobInputError as exc:
                console.print(f"[red]error:[/red] {exc.field}: {exc.message}")
                return 2
        finally:
            await world.close()
        for host in hosts:
            console.print(host)
        console.print(f"{len(hosts)} hosts")
        return 0

    raise typer.Exit(asyncio.run(main()))


keys_app = typer.Typer(help="Signing keys (Ed25519).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("init")
def keys_init() -> None:
    """Create the orchestrator's signing key (keys_dir/orchestrator, callers/)."""
    from mcoflow.server import ensure_caller_key

    settings = _settings()
    key = ensure_caller_key(settings.keys_dir, settings.caller)
    console.print(f"orchestrator key {key}; give agents {settings.keys_dir}/callers/ to trust")


@keys_app.command("host")
def keys_host(name: str) -> None:
    """Create a host key pair: the host gets host-keys/NAME.key, the orchestrator
    trusts hosts/NAME.pub."""
    from mcoflow.server import ensure_host_key

    settings = _settings()
    try:
        key = ensure_host_key(settings.keys_dir, name)
    except ValueError as exc:
        console.print(f"[red]error:[/red] name: {exc}")
        raise typer.Exit(2) from None
    console.print(f"host key {key}")
