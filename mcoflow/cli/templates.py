"""Job templates on the command line: `mcoflow templates list|show` and
`mcoflow run TEMPLATE --input NAME=VALUE … HOSTS|--filter F`."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from mcoflow.cli.app import (
    DbOption,
    app,
    cli_settings,
    console,
    import_actions,
    open_world,
    run_async,
)
from mcoflow.cli.jobs import (
    AtOption,
    BatchOption,
    BeforeOption,
    ConcurrencyOption,
    FilterOption,
    MaxFailuresOption,
    NoWaitOption,
    TimeoutOption,
    follow_started,
)

if TYPE_CHECKING:
    from mcoflow.job_request import JobInputError
    from mcoflow.templates import Template, TemplateLibrary

templates_app = typer.Typer(help="Job templates: list them, show one.", no_args_is_help=True)
app.add_typer(templates_app, name="templates")

JsonOption = Annotated[bool, typer.Option("--json", help="print JSON")]
InputOption = Annotated[
    list[str] | None,
    typer.Option(
        "--input",
        "-i",
        metavar="NAME=VALUE",
        help="a template input; repeatable (a list input: a,b,c or the name repeated)",
    ),
]
# where a job's field is an option of `mcoflow run`
_OPTION_OF = {"start_at": "--at", "start_before": "--before", "batch_size": "--batch"}


def _library() -> TemplateLibrary:
    """The templates this installation has: the shipped ones and the configured
    folder's (a file that does not load is left out: `templates list` says why)."""
    from mcoflow.templates import template_library

    import_actions(cli_settings())
    return template_library()


def _say_refused(library: TemplateLibrary) -> bool:
    """Print the template files the library refused, and why; whether there were any."""
    for error in library.errors:
        typer.echo(f"refused: {error}", err=True)
    return bool(library.errors)


def _template(library: TemplateLibrary, name: str) -> Template:
    from mcoflow.templates import TemplateNotFound

    try:
        return library.get(name)
    except TemplateNotFound as exc:
        console.print(f"[red]error:[/red] TEMPLATE: {escape(str(exc))}", soft_wrap=True)
        _say_refused(library)
        raise typer.Exit(2) from None


def fleet_defaults(template: Template) -> dict[str, Any]:
    """The template's fleet options that it sets (concurrency, batch size, failures)."""
    values: dict[str, Any] = template.defaults.model_dump(exclude_none=True)
    return values


def template_json(template: Template) -> dict[str, Any]:
    return {
        "name": template.name,
        "description": template.description,
        "inputs": template.input_schema(),
        "defaults": fleet_defaults(template),
        "source": template.source,
    }


def _input_words(template: Template) -> str:
    """``package*, service*, batch=10%``: the inputs, required ones starred."""
    words = []
    for i in template.inputs:
        default = "" if i.default is None else f"={json.dumps(i.default)}"
        words.append(f"{i.name}{'*' if i.required else ''}{default}")
    return ", ".join(words)


@templates_app.command("list")
def list_templates(as_json: JsonOption = False) -> None:
    """List the job templates.

    The shipped ones and those of the `templates_dir` folder. A file of the folder that
    does not load is named with its line and field, and the exit status is then 1."""
    library = _library()
    found = library.all()
    if as_json:
        typer.echo(json.dumps([template_json(t) for t in found], indent=2))
    else:
        table = Table(title="job templates (inputs: * required)")
        for column in ("name", "description", "inputs"):
            table.add_column(column, overflow="fold")
        for t in found:
            table.add_row(escape(t.name), escape(t.description), escape(_input_words(t)))
        console.print(table)
    if _say_refused(library):
        raise typer.Exit(1)  # a file in the folder is wrong: a script should notice


@templates_app.command("show")
def show_template(
    name: Annotated[str, typer.Argument(metavar="TEMPLATE", help="the template's name")],
    as_json: JsonOption = False,
) -> None:
    """Show a template's inputs and fleet defaults."""
    template = _template(_library(), name)
    if as_json:
        typer.echo(json.dumps(template_json(template), indent=2))
        return
    console.print(f"[bold]{escape(template.name)}[/bold]: {escape(template.description)}")
    console.print(f"from {escape(template.source)}", soft_wrap=True)
    table = Table(title="inputs")
    for column in ("name", "type", "required", "default", "pattern", "description"):
        table.add_column(column, overflow="fold")
    for i in template.inputs:
        table.add_row(
            escape(i.name),
            str(i.type),
            "yes" if i.required else "no",
            "" if i.default is None else escape(json.dumps(i.default)),
            escape(i.pattern or ""),
            escape(i.description or ""),
        )
    console.print(table)
    defaults = fleet_defaults(template)
    if defaults:
        console.print(
            "fleet defaults: " + ", ".join(f"{k} {v}" for k, v in defaults.items()),
            soft_wrap=True,
        )
    example = " ".join(f"--input {i.name}=…" for i in template.inputs if i.required)
    console.print(
        f"run it: mcoflow run {escape(template.name)} {escape(example)} HOSTS|--filter F".replace(
            "  ", " "
        ),
        soft_wrap=True,
    )


def parse_input_options(pairs: list[str]) -> dict[str, Any]:
    """``["package=nginx", "hosts=a", "hosts=b"]`` -> ``{"package": "nginx", "hosts":
    ["a", "b"]}``: a name given twice is a list."""
    from mcoflow.job_request import JobInputError

    inputs: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise JobInputError("--input", f"expected NAME=VALUE, got {pair!r}")
        if name in inputs:
            before = inputs[name]
            inputs[name] = [*before, value] if isinstance(before, list) else [before, value]
        else:
            inputs[name] = value
    return inputs


def _say_input_error(exc: JobInputError) -> None:
    head, _, rest = exc.field.partition(".")
    field = f"--input {rest}" if head == "inputs" and rest else _OPTION_OF.get(exc.field, exc.field)
    console.print(f"[red]error:[/red] {escape(field)}: {escape(exc.message)}", soft_wrap=True)


@app.command("run")
def run(
    name: Annotated[str, typer.Argument(metavar="TEMPLATE", help="the template's name")],
    hosts: Annotated[
        str | None,
        typer.Argument(metavar="HOSTS", help="host names, comma-separated (or --filter)"),
    ] = None,
    inputs: InputOption = None,
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
    """Run a job template on hosts.

    `mcoflow templates list` shows the templates. The inputs are checked before anything
    starts; on several hosts the template runs as a fleet job, with its own batch size
    and failure threshold unless the options say otherwise."""
    from mcoflow.actions import Jobs
    from mcoflow.actions.schedule import parse_time, show_time
    from mcoflow.job_request import JobInputError
    from mcoflow.templates import run_template

    _template(_library(), name)  # an unknown name says so before the database is opened
    try:
        raw = parse_input_options(inputs or [])
        start_at = None if at is None else parse_time(at, field="start_at")
        start_before = None if before is None else parse_time(before, field="start_before")
    except JobInputError as exc:
        _say_input_error(exc)
        raise typer.Exit(2) from None
    allow_unknown = cli_settings(database_url=db).allow_unknown_hosts

    async def main() -> int:
        world = await open_world(db)
        try:
            try:
                plan = await run_template(
                    Jobs(world, check_hosts=not allow_unknown),
                    name,
                    raw,
                    hosts=[hosts] if hosts else (),
                    filter=filter_,
                    concurrency=concurrency,
                    batch_size=batch,
                    max_failures=max_failures,
                    timeout=timeout,
                    start_at=start_at,
                    start_before=start_before,
                    by="cli",
                )
            except JobInputError as exc:
                _say_input_error(exc)
                return 2
            console.print(f"plan {plan.id}: {escape(plan.label)}", soft_wrap=True)
            if plan.start_at is not None and at is not None:
                console.print(
                    f"scheduled: starts at {show_time(plan.start_at)}; follow it with "
                    f"`mcoflow plans show {plan.id}`",
                    soft_wrap=True,
                )
                return 0
            return await follow_started(world, plan.id, no_wait=no_wait)
        finally:
            await world.close()

    raise typer.Exit(run_async(main()))
