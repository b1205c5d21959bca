"""A fleet job as one job in the CLI: its hosts in `plans show`, and
`mcoflow plans rerun-failed | skip-failed`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from mcoflow.cli.app import DbOption, PlanIdArgument, console, open_world, plans_app, run_async

if TYPE_CHECKING:
    from mcoflow.actions.fleet import HostOutcome
    from mcoflow.engine.child_status import ChildCounts
    from mcoflow.engine.store import ChildRow

# hosts `plans show` lists unless told (`--hosts N`); --json lists them all
SHOWN_HOSTS = 50


@dataclass(frozen=True)
class FleetHosts:
    """A plan's hosts (its child plans): the counts of all of them and the first ``shown``,
    failed first; none for other plans."""

    rows: list[ChildRow]
    counts: ChildCounts
    plan_id: str

    @classmethod
    async def read(cls, world: Any, plan_id: str, shown: int = SHOWN_HOSTS) -> FleetHosts:
        if shown < 1:
            return cls([], await world.store.child_counts(plan_id), plan_id)
        page = await world.store.child_page(plan_id, limit=shown, failed_first=True)
        return cls(page.rows, page.counts, plan_id)

    def counts_json(self) -> dict[str, Any]:
        return self.counts.as_dict() | {"summary": self.counts.summary()}

    def print(self) -> None:
        if not self.counts.total:
            return
        table = Table(title=self.counts.summary())
        for col in ("host", "state", "result", "message", "host plan"):
            table.add_column(col, overflow="fold")
        for r in self.rows:
            table.add_row(
                escape(r.label), r.state.value, r.result.value, escape(r.message), r.plan_id
            )
        if self.rows:
            console.print(table)
        else:
            console.print(escape(self.counts.summary()))
        hidden = self.counts.total - len(self.rows)
        if hidden > 0:
            console.print(
                f"{hidden} more hosts not shown (failed ones first): "
                f"`mcoflow plans show {self.plan_id} --hosts {self.counts.total}`, "
                "or `--json` for all of them",
                soft_wrap=True,
            )


def host_json(row: HostOutcome) -> dict[str, Any]:
    from mcoflow.engine.child_status import status_of

    return {
        "host": row.host,
        "plan_id": row.plan_id,
        "state": row.state.value,
        "result": row.result.value,
        "status": status_of(row.state, row.result).value,
        "message": row.message,
    }


async def write_hosts_json(world: Any, plan_id: str, out: Any) -> None:
    """Every host as a JSON list, written a page at a time (never all rows in memory)."""
    import json

    from mcoflow.actions.fleet import host_pages

    out.write("[")
    first = True
    async for rows in host_pages(world, plan_id):
        for row in rows:
            out.write(("" if first else ",") + json.dumps(host_json(row)))
            first = False
    out.write("]")


@plans_app.command("rerun-failed")
def plans_rerun_failed(
    plan_id: PlanIdArgument,
    db: DbOption = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="trigger and return")] = False,
) -> None:
    """Run a fleet job again on its failed hosts. A new fleet job, with the same
    parameters, on the hosts of PLAN that failed or never ran."""
    from mcoflow.actions import Jobs
    from mcoflow.cli.jobs import follow_started
    from mcoflow.engine import InvalidOperation, PlanNotFound

    async def main() -> int:
        world = await open_world(db)
        try:
            try:
                full_id = await world.resolve_plan_id(plan_id)
                plan = await Jobs(world).rerun_failed(full_id, by="cli")
            except (InvalidOperation, PlanNotFound) as exc:
                console.print(f"[red]error:[/red] {exc}")
                return 1
            console.print(f"plan {plan.id}: {escape(plan.label)}")
            return await follow_started(world, plan.id, no_wait=no_wait)
        finally:
            await world.close()

    raise typer.Exit(run_async(main()))


@plans_app.command("skip-failed")
def plans_skip_failed(plan_id: PlanIdArgument, db: DbOption = None) -> None:
    """Skip every failed step of a plan. The plan (a fleet's failed host) goes on
    without them, and its paused fleet too once no other host waits for the operator."""
    from mcoflow.engine import InvalidOperation, PlanNotFound

    async def main() -> int:
        world = await open_world(db)
        try:
            plan = await world.skip_failed(await world.resolve_plan_id(plan_id), by="cli")
        except (InvalidOperation, PlanNotFound) as exc:
            console.print(f"[red]error:[/red] {exc}")
            return 1
        finally:
            await world.close()
        console.print(f"plan {plan.id}: {plan.state.value}, result {plan.result.value}")
        return 0

    raise typer.Exit(run_async(main()))
