"""`mcoflow schedules add|list|show|pause|resume|delete`: recurring jobs. The executors
fire them (every `mcoflow executor` and `serve` runs a scheduler); these commands only
change the database, so they work whether or not an executor runs."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn

import typer
from rich.markup import escape
from rich.table import Table

from mcoflow.cli.app import DbOption, app, console, open_world, run_async

schedules_app = typer.Typer(help="Recurring jobs (cron schedules).", no_args_is_help=True)
app.add_typer(schedules_app, name="schedules")

NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="the schedule's name")]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON")]
_KINDS = ("install", "uninstall", "restart", "install-and-restart")
# the option that gives each field of a schedule request (by the field's last part)
_OPTION_OF = {
    "job": "--job",
    "name": "NAME",
    "cron": "--cron",
    "timezone": "--timezone",
    "end_at": "--end",
    "max_runs": "--max-runs",
    "kind": "--job",
    "parameter": "--parameter",
    "hosts": "--hosts",
    "filter": "--filter",
    "concurrency": "--concurrency",
    "batch_size": "--batch",
    "max_failures": "--max-failures",
    "timeout": "--timeout",
    "agent": "--rpc",
    "action": "--rpc",
    "data": "--data",
    "template": "--template",
    "inputs": "--input",
    "host_args": "--template",
}


@schedules_app.command("add")
def add(
    name: NameArgument,
    cron: Annotated[
        str,
        typer.Option(
            metavar="EXPR",
            help="five fields, minute hour day-of-month month day-of-week ('*/5 * * * *', "
            "'0 3 * * 1-5'), or @hourly, @daily, @weekly, @monthly, @yearly",
        ),
    ],
    timezone: Annotated[str, typer.Option(help="IANA time zone of the expression")] = "UTC",
    end: Annotated[
        str | None,
        typer.Option(metavar="TIME", help="no occurrence after TIME (+30d, or ISO 8601)"),
    ] = None,
    max_runs: Annotated[int | None, typer.Option(help="end after N runs")] = None,
    job: Annotated[
        str | None, typer.Option(metavar="KIND", help="one of " + ", ".join(_KINDS))
    ] = None,
    parameter: Annotated[
        str | None,
        typer.Option(help="--job's packages or services; install-and-restart: 'pkgs;svcs'"),
    ] = None,
    rpc: Annotated[
        str | None, typer.Option(metavar="AGENT.ACTION", help="any agent action instead")
    ] = None,
    data: Annotated[
        list[str] | None, typer.Option(metavar="KEY=VALUE", help="--rpc's inputs; repeatable")
    ] = None,
    template: Annotated[str | None, typer.Option(help="a job template instead")] = None,
    inputs: Annotated[
        list[str] | None,
        typer.Option("--input", metavar="KEY=VALUE", help="--template's inputs; repeatable"),
    ] = None,
    hosts: Annotated[str | None, typer.Option(help="host names, comma-separated")] = None,
    filter_: Annotated[
        str | None, typer.Option("--filter", help="or select hosts: 'os_family=debian class:web'")
    ] = None,
    concurrency: Annotated[int | None, typer.Option(help="hosts at a time")] = None,
    batch: Annotated[str | None, typer.Option(help="batch size: n or n%")] = None,
    max_failures: Annotated[str | None, typer.Option(help="stop after n (or n%) failed")] = None,
    timeout: Annotated[float | None, typer.Option(help="seconds a host may take")] = None,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Add a schedule: the job (--job, --rpc or --template, on --hosts or a --filter) is
    checked now as if started now, and runs at each occurrence of --cron."""
    from mcoflow.actions.schedule import parse_time
    from mcoflow.job_request import JobInputError, parse_hosts
    from mcoflow.recurring.job import ScheduleRequest

    try:
        targets: dict[str, Any] = {
            "hosts": parse_hosts(hosts or ""),
            "filter": filter_,
            "concurrency": concurrency,
            "batch_size": batch,
            "max_failures": max_failures,
        }
        spec = _job(job, parameter, rpc, data or [], template, inputs or [], targets, timeout)
        end_at = None
        if end is not None:
            end_at = datetime.fromtimestamp(parse_time(end, field="end_at"), UTC)
        request = ScheduleRequest.parse(
            name=name, cron=cron, timezone=timezone, end_at=end_at, max_runs=max_runs, job=spec
        )
    except JobInputError as exc:
        _input_error(exc)

    async def create(schedules: Any) -> Any:
        return await schedules.create(request, by="cli")

    schedule = _run(db, create)
    if as_json:
        _print_json(schedule)
        return
    console.print(f"schedule {escape(schedule.name)} added: {_next(schedule)}", soft_wrap=True)


def _job(
    kind: str | None,
    parameter: str | None,
    rpc: str | None,
    data: list[str],
    template: str | None,
    inputs: list[str],
    targets: dict[str, Any],
    timeout: float | None,
) -> dict[str, Any]:
    """The schedule's job from the options: exactly one of --job, --rpc, --template."""
    from mcoflow.job_request import JobInputError

    given = [o for o, v in (("--job", kind), ("--rpc", rpc), ("--template", template)) if v]
    if len(given) != 1:
        problem = "give one of --job, --rpc, --template" + (
            f", not {' and '.join(given)}" if given else ""
        )
        raise JobInputError("job", problem)
    options = {k: v for k, v in targets.items() if v not in (None, [])}
    if timeout is not None:
        options["timeout"] = timeout
    if kind is not None:
        if parameter is None:
            raise JobInputError("parameter", f"--job {kind} needs --parameter")
        request = {"kind": kind, "parameter": parameter, **options}
        request.pop("timeout", None)
        return {"request": request} | ({"timeout": timeout} if timeout is not None else {})
    if rpc is not None:
        agent, dot, action = rpc.partition(".")
        if not dot:
            raise JobInputError("action", f"{rpc!r}: give AGENT.ACTION, e.g. service.status")
        host_args: dict[str, Any] = {"agent": agent, "action": action, "data": _pairs(data, "data")}
        return {"action": "mcoflow.agent_call", "host_args": host_args, "what": rpc, **options}
    host_args = {"template": template, "inputs": _pairs(inputs, "inputs")}
    return {"action": "mcoflow.template", "host_args": host_args, "what": template, **options}


def _pairs(words: list[str], field: str) -> dict[str, str]:
    from mcoflow.job_request import JobInputError

    pairs: dict[str, str] = {}
    for word in words:
        key, eq, value = word.partition("=")
        if not eq or not key:
            raise JobInputError(field, f"{word!r}: give KEY=VALUE")
        pairs[key] = value
    return pairs


def _input_error(exc: Any) -> NoReturn:
    """A JobInputError naming the option that gives the field; exit status 2."""
    last = exc.field.rsplit(".", 1)[-1]
    option = _OPTION_OF.get(last, _OPTION_OF.get(exc.field.split(".")[-2:][0], exc.field))
    console.print(f"[red]error:[/red] {option}: {escape(exc.message)}", soft_wrap=True)
    raise typer.Exit(2)


def _run(db: str | None, operation: Callable[[Any], Awaitable[Any]]) -> Any:
    """``operation(schedules)`` on the configured database; its errors as one line."""
    from mcoflow.actions import Jobs
    from mcoflow.cli.app import cli_settings
    from mcoflow.engine import InvalidOperation
    from mcoflow.engine.store.schedules import ScheduleNotFound
    from mcoflow.job_request import JobInputError
    from mcoflow.recurring.service import Schedules

    async def main() -> Any:
        world = await open_world(db)
        try:
            check = not cli_settings(database_url=db).allow_unknown_hosts
            return await operation(Schedules(Jobs(world, check_hosts=check)))
        finally:
            await world.close()

    try:
        return run_async(main())
    except JobInputError as exc:
        _input_error(exc)
    except (ScheduleNotFound, InvalidOperation) as exc:
        console.print(f"[red]error:[/red] {escape(str(exc.args[0]))}", soft_wrap=True)
        raise typer.Exit(1) from None


def _print_json(value: Any) -> None:
    from mcoflow.recurring.views import ScheduleOut

    if isinstance(value, list):
        data: Any = [ScheduleOut.of(v).model_dump(mode="json") for v in value]
    else:
        data = ScheduleOut.of(value).model_dump(mode="json")
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def _next(schedule: Any) -> str:
    if schedule.next_at is None:
        return f"{schedule.state.value}, no next run"
    return f"{schedule.state.value}, next run {_when(schedule.next_at)}"


def _last(schedule: Any) -> str:
    from mcoflow.recurring.views import run_result

    run = schedule.last_run
    if run is None:
        return "never"
    return f"{_when(run.occurrence_at)}: {run_result(run)}"


@schedules_app.command("list")
def list_schedules(as_json: JsonOption = False, db: DbOption = None) -> None:
    """List the schedules: state, next run, last run and its result."""

    async def everything(schedules: Any) -> Any:
        return await schedules.all()

    found = _run(db, everything)
    if as_json:
        _print_json(found)
        return
    from mcoflow.recurring.job import describe_job

    table = Table(title=f"{len(found)} schedule{'' if len(found) == 1 else 's'}")
    for column in ("name", "state", "cron", "next run", "last run", "runs", "job"):
        table.add_column(column, overflow="fold")
    for s in found:
        runs = f"{s.runs}" + (f" ({s.skipped} skipped)" if s.skipped else "")
        table.add_row(
            escape(s.name),
            s.state.value,
            escape(f"{s.cron} {s.timezone}"),
            _when(s.next_at),
            escape(_last(s)),
            runs,
            escape(describe_job(s.job)),
        )
    console.print(table)


@schedules_app.command("show")
def show(name: NameArgument, as_json: JsonOption = False, db: DbOption = None) -> None:
    """A schedule and its latest runs."""

    async def one(schedules: Any) -> Any:
        return await schedules.get(name), await schedules.runs(name, limit=20)

    schedule, runs = _run(db, one)
    if as_json:
        from mcoflow.recurring.views import ScheduleOut, ScheduleRunOut

        data = ScheduleOut.of(schedule).model_dump(mode="json")
        data["latest_runs"] = [ScheduleRunOut.of(r).model_dump(mode="json") for r in runs]
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    from mcoflow.recurring.job import describe_job
    from mcoflow.recurring.views import run_result

    lines = [
        f"schedule {schedule.name} ({schedule.id}): {_next(schedule)}",
        f"cron: {schedule.cron} in {schedule.timezone}"
        + (f", until {_when(schedule.end_at)}" if schedule.end_at else "")
        + (f", at most {schedule.max_runs} runs" if schedule.max_runs else ""),
        f"job: {describe_job(schedule.job)}",
        f"runs: {schedule.runs}, missed occurrences skipped: {schedule.skipped}",
        f"created {_when(schedule.created_at)} by {schedule.created_by}",
    ]
    for line in lines:
        console.print(escape(line), soft_wrap=True)
    table = Table(title="latest runs")
    for column in ("occurrence", "plan", "result", "skipped before it"):
        table.add_column(column, overflow="fold")
    for r in runs:
        table.add_row(
            _when(r.occurrence_at), r.plan_id or "-", escape(run_result(r)), str(r.skipped)
        )
    console.print(table)


def _operation(verb: str, done: str) -> None:
    def command(name: NameArgument, db: DbOption = None) -> None:
        async def operate(schedules: Any) -> Any:
            return await getattr(schedules, verb)(name, by="cli")

        schedule = _run(db, operate)
        state = "" if verb == "delete" else f": {_next(schedule)}"
        console.print(f"schedule {escape(schedule.name)} {done}{state}")

    command.__doc__ = {
        "pause": "Pause a schedule: no occurrence runs until it is resumed.",
        "resume": "Resume a paused schedule from its next occurrence (missed ones do not run).",
        "delete": "Delete a schedule (the plans it started stay).",
    }[verb]
    schedules_app.command(verb)(command)


_operation("pause", "paused")
_operation("resume", "resumed")
_operation("delete", "deleted")
