"""`mcoflow plans list | show | resume | skip | cancel`."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table

from mcoflow.cli.app import (
    DbOption,
    console,
    open_world,
    plans_app,
)


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
        world = await open_world(db)
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
        world = await open_world(db)
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
        world = await open_world(db)
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
