"""`mcoflow rpc AGENT ACTION key=value … (HOSTS | --filter F)`: any agent action on hosts,
its inputs checked against the interface the agent declares, each host's reply in a
table (or ``--json``); and `mcoflow agents`: the declared interfaces."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

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
from mcoflow.cli.jobs import (
    BatchOption,
    ConcurrencyOption,
    FilterOption,
    MaxFailuresOption,
    NoWaitOption,
    TimeoutOption,
)

if TYPE_CHECKING:
    from mcoflow.actions.agent_calls import AgentCalls, CallResult
    from mcoflow.actions.agent_interfaces import AgentSpec

JsonOption = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


def _split_words(words: list[str]) -> tuple[list[str], list[str]]:
    """key=value words are inputs; the others name hosts (commas or blanks between)."""
    return [w for w in words if "=" in w], [w for w in words if "=" not in w]


def _calls(world: Any, db: str | None) -> AgentCalls:
    from mcoflow.actions import Jobs
    from mcoflow.actions.agent_calls import AgentCalls
    from mcoflow.cli.jobs import _allow_unknown

    return AgentCalls(Jobs(world, check_hosts=not _allow_unknown(db)))


@app.command()
def rpc(
    agent: Annotated[
        str, typer.Argument(metavar="AGENT", help="the agent: package, service, rpcutil, …")
    ],
    action: Annotated[
        str, typer.Argument(metavar="ACTION", help="one of its actions (`mcoflow agents`)")
    ],
    words: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="KEY=VALUE|HOSTS",
            help="the action's inputs as key=value; host names (comma-separated) unless --filter",
        ),
    ] = None,
    filter_: FilterOption = None,
    concurrency: ConcurrencyOption = None,
    batch: BatchOption = None,
    max_failures: MaxFailuresOption = None,
    timeout: TimeoutOption = None,
    no_wait: NoWaitOption = False,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Run any agent action on hosts. The inputs are checked against the interface
    the agent declares (fetched from a host once, then cached) before anything is sent;
    one durable step per host; exit status 1 when a host failed."""
    from mcoflow.actions.agent_calls import InterfacesUnavailable
    from mcoflow.actions.agent_interfaces import parse_assignments
    from mcoflow.job_request import JobInputError

    assignments, hosts = _split_words(words or [])

    async def main() -> int:
        world = await open_world(db)
        try:
            calls = _calls(world, db)
            try:
                plan = await calls.start(
                    agent,
                    action,
                    parse_assignments(assignments),
                    as_text=True,
                    hosts=hosts,
                    filter=filter_,
                    concurrency=concurrency,
                    batch_size=batch,
                    max_failures=max_failures,
                    timeout=timeout,
                    by="cli",
                )
            except JobInputError as exc:
                console.print(
                    f"[red]error:[/red] {exc.field}: {escape(exc.message)}", soft_wrap=True
                )
                return 2
            except InterfacesUnavailable as exc:
                console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
                return 3
            if not as_json:
                console.print(f"plan {plan.id}: {escape(plan.label)}", soft_wrap=True)
            if no_wait:
                if as_json:
                    print(json.dumps({"plan_id": plan.id, "label": plan.label}))
                return 0
            if not await world.executors():
                console.print(
                    "[yellow]no executor is running: the plan starts when one does "
                    "(`mcoflow serve`)[/yellow]"
                )
                return 3
            return await _follow(calls, plan.id, as_json=as_json)
        finally:
            await world.close()

    raise typer.Exit(run_async(main()))


async def _follow(calls: AgentCalls, plan_id: str, *, as_json: bool) -> int:
    from mcoflow.actions.jobs import wait_with_progress
    from mcoflow.engine import PlanResult

    if as_json:
        plan = await wait_with_progress(calls.world, plan_id, lambda _plan: None)
    else:
        plan = await wait_showing_progress(calls.world, plan_id)
    rows = await calls.results(plan_id)
    failed = plan.result is not PlanResult.SUCCESS or any(r.failed for r in rows)
    if as_json:
        print(
            json.dumps(
                {
                    "plan_id": plan.id,
                    "label": plan.label,
                    "state": plan.state.value,
                    "result": plan.result.value,
                    "hosts": [r.as_json() for r in rows],
                }
            )
        )
        return 1 if failed else 0
    console.print(_table(f"{plan.label}: {plan.state.value}, result {plan.result.value}", rows))
    succeeded = sum(not r.failed for r in rows)
    hosts = f"{len(rows)} host{'' if len(rows) == 1 else 's'}"
    console.print(f"{hosts}: {succeeded} succeeded, {len(rows) - succeeded} failed")
    if failed and plan.state.value == "paused":
        console.print(
            f"plan {plan.id} paused: `mcoflow plans resume|skip-failed|cancel {plan.id}`",
            soft_wrap=True,
        )
    return 1 if failed else 0


def cell(value: Any) -> str:
    """A reply's value in a table cell: text as it is, anything else as JSON."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def _table(title: str, rows: list[CallResult]) -> Table:
    outputs = list(dict.fromkeys(key for r in rows for key in r.data))
    table = Table(title=escape(title))
    for column in ("host", "result", *outputs, "message"):
        table.add_column(escape(column), overflow="fold")
    for r in rows:
        values = [escape(clip(cell(r.data.get(key)), 200)) for key in outputs]
        table.add_row(escape(r.host), r.status, *values, escape(clip(r.message)))
    return table


@app.command()
def agents(
    agent: Annotated[str | None, typer.Argument(help="only this agent, with its inputs")] = None,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="ask a host for its agents' interfaces first")
    ] = False,
    host: Annotated[
        str | None, typer.Option("--host", help="the host to ask (default: one of the inventory)")
    ] = None,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """List the agents' actions and their inputs.

    Read-only actions are marked. The list is the one cached from the hosts; `--refresh`
    asks a host again."""
    from mcoflow.actions.agent_calls import InterfacesUnavailable

    async def main() -> int:
        world = await open_world(db)
        try:
            calls = _calls(world, db)
            try:
                known = await (calls.fetch(host, by="cli") if refresh else calls.known())
                if not known and not refresh:
                    known = await calls.fetch(host, by="cli")
            except InterfacesUnavailable as exc:
                console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
                return 3
        finally:
            await world.close()
        shown = {n: a for n, a in sorted(known.items()) if agent in (None, n)}
        if agent is not None and not shown:
            console.print(
                f"[red]error:[/red] agent: unknown agent {agent!r} "
                f"(the hosts serve: {', '.join(sorted(known))})"
            )
            return 2
        if as_json:
            print(json.dumps([a.describe() for a in shown.values()]))
        else:
            _print_agents(shown)
        return 0

    raise typer.Exit(run_async(main()))


def _print_agents(agents: dict[str, AgentSpec]) -> None:
    table = Table()
    for column in ("action", "read-only", "inputs", "description"):
        table.add_column(column, overflow="fold")
    for spec in agents.values():
        for action in spec.actions.values():
            table.add_row(
                escape(action.full_name),
                "yes" if action.read_only else "",
                escape(action.takes()),
                escape(action.description),
            )
    console.print(table)
