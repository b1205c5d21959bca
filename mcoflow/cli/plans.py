"""`mcoflow plans list | show | resume | skip | cancel`."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from mcoflow.cli.app import (
    DbOption,
    PlanIdArgument,
    add_id_column,
    clip,
    console,
    open_world,
    plans_app,
    run_async,
)


def _when(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _scheduled(plan: Any, *, long: bool = False) -> str:
    """A delayed plan's start time (empty for a plan that was never delayed)."""
    if plan.start_at is None:
        return ""
    if not long:
        return f"at {_when(plan.start_at)}"
    text = f"scheduled to start at {_when(plan.start_at)}"
    if plan.start_before is not None:
        text += f", given up if not started by {_when(plan.start_before)}"
    return text


@plans_app.command("list")
def plans_list(
    db: DbOption = None,
    state: Annotated[
        str | None, typer.Option(help="pending|scheduled|running|paused|stopped")
    ] = None,
    result: Annotated[str | None, typer.Option(help="success|warning|error|cancelled")] = None,
    label: Annotated[str | None, typer.Option(help="text in the label")] = None,
    all_plans: Annotated[
        bool, typer.Option("--all", help="also the host sub-plans of fleet jobs")
    ] = False,
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
            top_level_only=not all_plans,
        )
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None

    async def main() -> None:
        world = await open_world(db)
        try:
            page = await world.list_plans(filters, offset=offset, limit=limit)
        finally:
            await world.close()
        table = Table(title=f"plans {offset + 1}-{offset + len(page.items)} of {page.total}")
        add_id_column(table)
        for col in ("label", "state result", "done", "started"):
            table.add_column(col, overflow="fold")
        for p in page.items:
            table.add_row(
                p.id,
                escape(p.label),
                f"{p.state.value} {p.result.value}",
                f"{p.progress:.0%}",
                _when(p.started_at) or _scheduled(p),
            )
        console.print(table)

    run_async(main())


@plans_app.command("show")
def plans_show(
    plan_id: PlanIdArgument,
    db: DbOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="print JSON (with every host of a fleet job)")
    ] = False,
    shown_hosts: Annotated[
        int,
        typer.Option(
            "--hosts",
            min=0,
            help="a fleet job's hosts to list, failed ones first (the counts are of all)",
        ),
    ] = 50,
) -> None:
    """Show a plan: steps, history, a fleet's hosts.

    A fleet job shows its host counts and its first hosts (failed ones first)."""
    from mcoflow.engine import PlanNotFound
    from mcoflow.engine.display import step_titles, summary_text

    async def main() -> None:
        world = await open_world(db)
        try:
            plan = await world.get_plan(await world.resolve_plan_id(plan_id))
            steps = await world.steps(plan.id)
            titles = step_titles(steps)
            history = await world.history(plan.id)
            hosts = await _hosts(world, plan.id, 0 if as_json else shown_hosts)
            if as_json:
                _write_json(plan, steps, titles, hosts)
                await _write_json_hosts(world, plan.id, hosts)
                return
        except PlanNotFound as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from None
        finally:
            await world.close()
        console.print(f"[bold]{escape(plan.label)}[/bold]  {plan.id}")
        console.print(
            f"state {plan.state.value}, result {plan.result.value}, "
            f"progress {plan.progress:.0%}, flow {plan.flow}"
        )
        if plan.start_at is not None and plan.started_at is None:
            console.print(_scheduled(plan, long=True), soft_wrap=True)
        if plan.error:
            console.print(f"[red]{escape(plan.error)}[/red]")
        table = Table()
        for col in ("step", "action", "input", "state", "output / error"):
            table.add_column(col, overflow="fold")
        for s in steps:
            detail = s.error["message"] if s.error else json.dumps(s.output or {})
            shown = summary_text(s.input, titles)
            cells = (shown, s.state.value, clip(detail))
            table.add_row(str(s.idx), s.action, *map(escape, cells))
        console.print(table)
        hosts.print()
        for h in history:
            console.print(escape(f"{_when(h.at)}  {h.what}  {h.detail or ''}  by {h.by}"))

    run_async(main())


async def _hosts(world: Any, plan_id: str, shown: int) -> Any:
    from mcoflow.cli.fleets import FleetHosts

    return await FleetHosts.read(world, plan_id, shown)


def _write_json(plan: Any, steps: list[Any], titles: Any, hosts: Any) -> None:
    """The plan as one JSON document, but for its hosts (written after, by page)."""
    from mcoflow.engine.display import summary_text

    head = {
        "id": plan.id,
        "label": plan.label,
        "state": plan.state.value,
        "result": plan.result.value,
        "progress": plan.progress,
        "flow": plan.flow,
        "error": plan.error,
        "start_at": plan.start_at,
        "start_before": plan.start_before,
        "steps": [
            {
                "idx": s.idx,
                "action": s.action,
                "state": s.state.value,
                "input": s.input,
                "input_text": summary_text(s.input, titles),
                "output": s.output,
                "error": s.error,
            }
            for s in steps
        ],
    }
    if hosts.counts.total:
        head["host_counts"] = hosts.counts_json()
    sys.stdout.write(json.dumps(head)[:-1])  # left open: "hosts" follows


async def _write_json_hosts(world: Any, plan_id: str, hosts: Any) -> None:
    from mcoflow.cli.fleets import write_hosts_json

    if hosts.counts.total:
        sys.stdout.write(', "hosts": ')
        await write_hosts_json(world, plan_id, sys.stdout)
    sys.stdout.write("}\n")


def _operate(plan_id: str, db: str | None, op: str, step: int | None = None) -> None:
    from mcoflow.engine import InvalidOperation, PlanNotFound

    async def main() -> None:
        world = await open_world(db)
        try:
            full_id = await world.resolve_plan_id(plan_id)
            if op == "resume":
                plan = await world.resume(full_id, by="cli")
            elif op == "skip":
                assert step is not None
                plan = await world.skip(full_id, step, by="cli")
            else:
                plan = await world.cancel(full_id, by="cli")
        except (InvalidOperation, PlanNotFound) as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from None
        finally:
            await world.close()
        console.print(f"plan {plan.id}: {plan.state.value}, result {plan.result.value}")

    run_async(main())


@plans_app.command("resume")
def plans_resume(plan_id: PlanIdArgument, db: DbOption = None) -> None:
    """Run a paused plan's failed steps again."""
    _operate(plan_id, db, "resume")


@plans_app.command("skip")
def plans_skip(plan_id: PlanIdArgument, step: int, db: DbOption = None) -> None:
    """Skip a failed step; the rest goes on. The steps that need its output are skipped
    too."""
    _operate(plan_id, db, "skip", step)


@plans_app.command("cancel")
def plans_cancel(plan_id: PlanIdArgument, db: DbOption = None) -> None:
    """Cancel a plan."""
    _operate(plan_id, db, "cancel")
