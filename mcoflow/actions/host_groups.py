"""Saved host groups (``mcoflow groups``, the console's Groups page, /api/v1/groups): a
named filter, used as ``@NAME`` wherever a filter is. A group is checked when it is
saved (its filter parses, the groups it names exist, no cycle) and expanded when a job
starts, so a job runs on what the group says then."""

from __future__ import annotations

import time

from mcoflow.actions.inventory import matching_hosts
from mcoflow.engine.store import HostRecord, Store
from mcoflow.engine.store.groups import HostGroup
from mcoflow.job_request import JobInputError
from mcoflow.rpc.filters import Filter, FilterError
from mcoflow.rpc.targeting import GROUP_NAME, group_names, parse

__all__ = ["HostGroup", "HostGroups"]

MAX_DESCRIPTION = 1000
MAX_GROUP_FILTER = 4096


class HostGroups:
    """Adding, listing, showing and removing saved groups on the store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def texts(self) -> dict[str, str]:
        return {g.name: g.filter for g in await self.store.list_groups()}

    async def all(self) -> list[HostGroup]:
        return await self.store.list_groups()

    async def get(self, name: str) -> HostGroup:
        group = await self.store.get_group(name)
        if group is None:
            raise JobInputError("name", f"no saved group named {name!r}")
        return group

    async def add(
        self,
        name: str,
        filter: str,
        *,
        description: str = "",
        by: str = "system",
        replace: bool = False,
    ) -> HostGroup:
        """Save a group; JobInputError (field ``name``, ``filter`` or ``description``)
        for a bad one, an existing name without ``replace``, or a cycle it would make."""
        if GROUP_NAME.fullmatch(name) is None:
            raise JobInputError(
                "name", f"{name!r}: letters, digits, '_', '.', '-' (64 at most, not first '.-')"
            )
        text = " ".join(filter.split())
        if not text:
            raise JobInputError("filter", "give the group's filter, e.g. 'class:web'")
        if len(text) > MAX_GROUP_FILTER:
            raise JobInputError("filter", f"at most {MAX_GROUP_FILTER} characters")
        if len(description) > MAX_DESCRIPTION:
            raise JobInputError("description", f"at most {MAX_DESCRIPTION} characters")
        groups = await self.texts()
        if name in groups and not replace:
            raise JobInputError("name", f"a group named {name!r} exists (replace it, or remove it)")
        groups[name] = text
        # its own filter, and (replacing) every group that uses it, must still expand
        for other in [name, *(n for n, t in groups.items() if name in group_names(t))]:
            try:
                parse(f"@{other}", groups)
            except FilterError as exc:
                where = "" if other == name else f"group @{other} would fail: "
                message = str(exc).removeprefix(f"column 1 ('@{other}'): in group @{other}: ")
                raise JobInputError("filter", where + message) from None
        group = HostGroup(name, text, description.strip(), time.time(), by)
        if not await self.store.save_group(group, replace=replace):
            raise JobInputError("name", f"a group named {name!r} exists (replace it, or remove it)")
        return group

    async def remove(self, name: str) -> None:
        """Remove a group that no other group uses."""
        groups = await self.texts()
        if name not in groups:
            raise JobInputError("name", f"no saved group named {name!r}")
        users = sorted(n for n, t in groups.items() if n != name and name in group_names(t))
        if users:
            shown = ", ".join(f"@{n}" for n in users)
            raise JobInputError("name", f"group @{name} is used by {shown}: change those first")
        await self.store.remove_group(name)

    async def expand(self, name: str) -> Filter:
        """The filter ``@name`` stands for now."""
        await self.get(name)
        try:
            return parse(f"@{name}", await self.texts())
        except FilterError as exc:
            raise JobInputError("filter", str(exc)) from None

    async def hosts(self, name: str) -> list[HostRecord]:
        """The inventory's hosts the group selects now."""
        return await matching_hosts(self.store, await self.expand(name))
