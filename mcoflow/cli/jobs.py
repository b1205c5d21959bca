"""The operator's jobs: `mcoflow install | uninstall | restart | install-and-restart`
(trigger, then follow with a live progress display) and `mcoflow discover`."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from mcoflow.cli.app import (
    DbOption,
    app,
    clip,
    console,
    open_world,
    run_async,
    wait_showing_progress,
)

# ---- the operator's jobs ------------------------------------------------------------

FilterOption = Annotated[
    str | None,
    typer.Option("--filter", metavar="FILTER", help="select hosts: 'os_family=debian class:web'"),
]
ConcurrencyOption = Annotated[int | None, typer.Option(help="hosts at a time")]
BatchOption = Annotated[str | None, typer.Option("--batch", help="batch size: n or n%")]
MaxFailuresOption = Annotated[str | None, typer.Option(help="stop after n (or n%) failed hosts")]
NoWaitOption = Annotated[bool, typer.Option("--no-wait", help="trigger and return")]
TimeoutOption = Annotated[float | None, typer.Option(help="seconds a host may take")]
AtOption = Annotated[
    str | None,
    typer.Option(
        "--at",
        metavar="TIME",
        help="start later, at TIME: +30s, +10m, +2h, +1d, +1h30m, or ISO 8601 "
        "(2030-06-01T14:30, local time unless it ends in +02:00 or Z); "
        "the command returns once the job is scheduled",
    ),
]
BeforeOption = Annotated[
    str | None,
    typer.Option(
        "--before",
        metavar="TIME",
        help="give the job up (result error) if it has not started by TIME (as --at)",
    ),
]
# where Jobs' field names are options here
_OPTION_OF = {"start_at": "--at", "start_before": "--before"}


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
    at: str | None = None,
    before: str | None = None,
) -> None:
    from mcoflow.actions import Jobs
    from mcoflow.actions.schedule import parse_time, show_time
    from mcoflow.job_request import JobInputError, JobRequest, parse_hosts

    try:
        start_at = None if at is None else parse_time(at, field="--at")
        start_before = None if before is None else parse_time(before, field="--before")
    except JobInputError as exc:
        _input_error(exc)
        raise typer.Exit(2) from None

    async def main() -> int:
        world = await open_world(db)
        try:
            try:
                request = JobRequest.parse(
                    kind=kind,
                    hosts=parse_hosts(hosts),
                    filter=filter_,
                    parameter=parameter,
                    concurrency=concurrency,
                    batch_size=batch,
                    max_failures=max_failures,
                    start_at=start_at,
                    start_before=start_before,
                )
                jobs = Jobs(world, check_hosts=not _allow_unknown(db))
                plan = await jobs.start(request, timeout=timeout, by="cli")
            except JobInputError as exc:
                _input_error(exc)
                return 2
            console.print(f"plan {plan.id}: {escape(plan.label)}", soft_wrap=True)
            if plan.start_at is not None and at is not None:
                console.print(
                    f"scheduled: starts at {show_time(plan.start_at)}"
                    + (
                        f", given up if not started by {show_time(plan.start_before)}"
                        if plan.start_before is not None
                        else ""
                    )
                    + f"; follow it with `mcoflow plans show {plan.id}`",
                    soft_wrap=True,
                )
                return 0
            return await follow_started(world, plan.id, no_wait=no_wait)
        finally:
            await world.close()

    raise typer.Exit(run_async(main()))


def _input_error(exc: Any) -> None:
    """A JobInputError, naming the option where the request's field is one."""
    field = _OPTION_OF.get(exc.field, exc.field)
    console.print(f"[red]error:[/red] {field}: {escape(exc.message)}", soft_wrap=True)


async def follow_started(world: Any, plan_id: str, *, no_wait: bool) -> int:
    """Follow a plan just started: 0 at once with ``--no-wait``, 3 when no executor runs
    (the plan waits for one), else the plan's outcome."""
    if no_wait:
        return 0
    if not await world.executors():
        console.print(
            "[yellow]no executor is running: the plan starts when one does "
            "(`mcoflow serve`)[/yellow]"
        )
        return 3
    return await _follow(world, plan_id)


def _allow_unknown(db: str | None) -> bool:
    from mcoflow.cli.app import cli_settings

    return cli_settings(database_url=db).allow_unknown_hosts


async def _follow(world: Any, plan_id: str) -> int:
    """Show progress until the plan stops or pauses, then a per-host result table."""
    from mcoflow.actions import host_results
    from mcoflow.engine import PlanResult

    plan = await wait_showing_progress(world, plan_id)
    rows = await host_results(world, plan_id)
    title = f"{plan.label}: {plan.state.value}, result {plan.result.value}"
    table = Table(title=escape(title))
    if rows:
        for col in ("host", "state", "result", "seconds", "message"):
            table.add_column(col, overflow="fold")
        for r in rows:
            table.add_row(
                r.host,
                r.state.value,
                r.result.value,
                "" if r.duration is None else f"{r.duration:.1f}",
                escape(r.message),
            )
    else:
        for col in ("step", "action", "state", "output / error"):
            table.add_column(col, overflow="fold")
        for s in await world.steps(plan_id):
            if not s.has_run:
                continue
            detail = s.error["message"] if s.error else json.dumps(s.output or {})
            table.add_row(str(s.idx), s.action, s.state.value, escape(clip(detail)))
    console.print(table)
    if plan.result is not PlanResult.SUCCESS:
        console.print(
            f"plan {plan.id} {plan.state.value} with result {plan.result.value}"
            + (f": {escape(plan.error)}" if plan.error else "")
            + (
                "; `mcoflow plans resume|skip|cancel` to go on"
                if plan.state.value == "paused"
                else ""
            )
        )
        return 1
    return 0


def _one_parameter(names: list[str]) -> str:
    if len(names) != 1:
        console.print("[red]error:[/red] parameter: give one 'pkg1,pkg2;svc1,svc2' argument")
        raise typer.Exit(2)
    return names[0]


def _job_command(
    kind: str, what: str, args_help: str, doc: str, parameter: Callable[[list[str]], str]
) -> None:
    """Register `mcoflow KIND HOSTS WHAT...`; ``parameter`` makes the job's parameter of
    the WHATs (or exits with an error)."""

    def command(
        args: list[str],
        filter_: FilterOption = None,
        concurrency: ConcurrencyOption = None,
        batch: BatchOption = None,
        max_failures: MaxFailuresOption = None,
        timeout: TimeoutOption = None,
        no_wait: NoWaitOption = False,
        at: AtOption = None,
        before: BeforeOption = None,
        db: DbOption = None,
    ) -> None:
        hosts, names = _split_targets(args, filter_, what)
        _job(
            kind,
            hosts,
            filter_,
            parameter(names),
            db=db,
            concurrency=concurrency,
            batch=batch,
            max_failures=max_failures,
            timeout=timeout,
            no_wait=no_wait,
            at=at,
            before=before,
        )

    # set as an object: a postponed (string) annotation could not see `args_help`
    metavar = f"HOSTS {what.upper()}"  # usage: `{HOSTS PACKAGE}...`, not `{args}...`
    command.__annotations__["args"] = Annotated[
        list[str], typer.Argument(metavar=metavar, help=args_help)
    ]
    command.__doc__ = doc
    command.__name__ = kind.replace("-", "_")
    app.command(kind)(command)


def _names_command(kind: str, what: str, doc: str) -> None:
    """`mcoflow KIND HOSTS NAME...`: the NAMEs joined into the job's parameter."""
    args_help = f"HOSTS comma-separated, then {what}s (with --filter: {what}s only)"
    _job_command(kind, what, args_help, doc, ",".join)


_names_command("install", "package", "Install packages on hosts.")
_names_command("uninstall", "package", "Remove packages from hosts.")
_names_command("restart", "service", "Restart services on hosts.")
_job_command(
    "install-and-restart",
    "parameter",
    "HOSTS comma-separated, then 'pkg1,pkg2;svc1,svc2' (with --filter: that only)",
    "Install packages, then restart services on change. The services restart only "
    "if an install changed the host.",
    _one_parameter,
)


@app.command()
def discover(
    filter_: FilterOption = None,
    db: DbOption = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for replies")] = 2.0,
) -> None:
    """List the hosts that answer. Asked through the running executor's broker."""
    from mcoflow.actions import JobInputError, Jobs

    async def main() -> int:
        world = await open_world(db)
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

    raise typer.Exit(run_async(main()))
