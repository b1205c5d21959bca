"""`mcoflow groups add|list|show|remove`: saved host groups, used as ``@NAME`` wherever a
filter is (``mcoflow install --filter '@web and not identity:web-01' nginx``)."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from mcoflow.cli.app import DbOption, app, console, open_world, run_async

if TYPE_CHECKING:
    from mcoflow.actions.host_groups import HostGroups
    from mcoflow.engine.store.groups import HostGroup

groups_app = typer.Typer(help="Saved host groups (@NAME in a filter).", no_args_is_help=True)
app.add_typer(groups_app, name="groups")

NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="the group's name")]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON")]


def group_json(group: HostGroup) -> dict[str, Any]:
    return {
        "name": group.name,
        "filter": group.filter,
        "description": group.description,
        "created_at": group.created_at,
        "created_by": group.created_by,
    }


def _run(db: str | None, work: Callable[[HostGroups], Awaitable[int]]) -> None:
    """Run ``work`` on the groups of the configured database; a JobInputError is an
    error line naming the field, exit status 2 (1 for a name that is not saved)."""
    from mcoflow.actions import JobInputError
    from mcoflow.actions.host_groups import HostGroups

    async def main() -> int:
        world = await open_world(db)
        try:
            return await work(HostGroups(world.store))
        except JobInputError as exc:
            console.print(
                f"[red]error:[/red] {escape(f'{exc.field}: {exc.message}')}",
                highlight=False,
                soft_wrap=True,
            )
            return 1 if exc.message.startswith("no saved group named") else 2
        finally:
            await world.close()

    raise typer.Exit(run_async(main()))


@groups_app.command("add")
def groups_add(
    name: NameArgument,
    filter_: Annotated[
        str,
        typer.Argument(
            metavar="FILTER", help="e.g. 'class:web and os_family=debian', '@web or @db'"
        ),
    ],
    description: Annotated[str, typer.Option("--description", help="what the group is")] = "",
    replace: Annotated[bool, typer.Option("--replace", help="replace a group of that name")] = (
        False
    ),
    db: DbOption = None,
) -> None:
    """Save a named filter. Checked now: its words, the groups it uses, no cycle."""

    async def work(groups: HostGroups) -> int:
        group = await groups.add(name, filter_, description=description, by="cli", replace=replace)
        hosts = await groups.hosts(group.name)
        console.print(
            f"group @{group.name}: {group.filter} ({len(hosts)} known host"
            f"{'' if len(hosts) == 1 else 's'} now)",
            highlight=False,
            markup=False,
        )
        return 0

    _run(db, work)


@groups_app.command("list")
def groups_list(as_json: JsonOption = False, db: DbOption = None) -> None:
    """The saved groups, by name."""

    async def work(groups: HostGroups) -> int:
        found = await groups.all()
        if as_json:
            sys.stdout.write(json.dumps([group_json(g) for g in found], indent=2) + "\n")
            return 0
        table = Table(title=f"{len(found)} group{'' if len(found) == 1 else 's'}")
        for column in ("name", "filter", "description", "created"):
            table.add_column(column, overflow="fold")
        for g in found:
            when = datetime.fromtimestamp(g.created_at).strftime("%Y-%m-%d %H:%M")
            table.add_row(
                f"@{g.name}", escape(g.filter), escape(g.description), f"{when} by {g.created_by}"
            )
        console.print(table)
        if not found:
            console.print("no group yet: `mcoflow groups add web 'class:web'`")
        return 0

    _run(db, work)


@groups_app.command("show")
def groups_show(name: NameArgument, as_json: JsonOption = False, db: DbOption = None) -> None:
    """A group's filter and the known hosts it selects now."""

    async def work(groups: HostGroups) -> int:
        group = await groups.get(name.removeprefix("@"))
        hosts = [h.identity for h in await groups.hosts(group.name)]
        if as_json:
            shown = {**group_json(group), "hosts": hosts}
            sys.stdout.write(json.dumps(shown, indent=2) + "\n")
            return 0
        console.print(f"@{group.name}: {group.filter}", highlight=False, markup=False)
        if group.description:
            console.print(group.description, highlight=False, markup=False)
        console.print(f"{len(hosts)} known host{'' if len(hosts) == 1 else 's'}:", highlight=False)
        for host in hosts:
            console.print(f"  {host}", highlight=False)
        return 0

    _run(db, work)


@groups_app.command("remove")
def groups_remove(name: NameArgument, db: DbOption = None) -> None:
    """Remove a group (not one that another group uses)."""

    async def work(groups: HostGroups) -> int:
        await groups.remove(name.removeprefix("@"))
        console.print(f"group @{name.removeprefix('@')} removed", highlight=False)
        return 0

    _run(db, work)
