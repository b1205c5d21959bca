"""Saved host groups: a name, a filter text (the targeting grammar) and a description.
The store keeps them; parsing, expansion and cycle checks are the callers'."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from mcoflow.engine.schema import host_groups
from mcoflow.engine.store.base import StoreBase
from mcoflow.engine.store.statements import dialect_insert


@dataclass(frozen=True)
class HostGroup:
    name: str
    filter: str
    description: str
    created_at: float
    created_by: str


class GroupQueries(StoreBase):
    """Adding, replacing, listing and removing saved host groups."""

    async def save_group(self, group: HostGroup, *, replace: bool = False) -> bool:
        """Store ``group``; False when one of that name exists and ``replace`` is not set."""
        row = {
            "name": group.name,
            "filter": group.filter,
            "description": group.description,
            "created_at": group.created_at,
            "created_by": group.created_by,
        }
        stmt: Any = dialect_insert(self.is_postgresql)(host_groups).values(row)
        if replace:
            stmt = stmt.on_conflict_do_update(
                index_elements=[host_groups.c.name],
                set_={k: stmt.excluded[k] for k in row if k != "name"},
            )
        try:
            async with self._write() as conn:
                await conn.execute(stmt)
        except IntegrityError:
            return False
        return True

    async def list_groups(self) -> list[HostGroup]:
        """Every saved group, by name."""
        async with self._read() as conn:
            rows = await conn.execute(select(host_groups).order_by(host_groups.c.name))
            return [_group(row) for row in rows]

    async def get_group(self, name: str) -> HostGroup | None:
        async with self._read() as conn:
            rows = await conn.execute(select(host_groups).where(host_groups.c.name == name))
            row = rows.first()
        return None if row is None else _group(row)

    async def remove_group(self, name: str) -> bool:
        """False when there was no such group."""
        async with self._write() as conn:
            result = await conn.execute(delete(host_groups).where(host_groups.c.name == name))
        return bool(result.rowcount)


def _group(row: Any) -> HostGroup:
    return HostGroup(row.name, row.filter, row.description, row.created_at, row.created_by)
