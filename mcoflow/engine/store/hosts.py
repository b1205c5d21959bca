"""The host inventory: every host ever seen, merged from discoveries and replies.

A sighting says "this identity answered at this time"; one that carries an inventory
(facts, classes, agents) replaces what the table knew of those, since an agent always
reports all of them. A batch of sightings is one statement.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from mcoflow.engine.schema import hosts
from mcoflow.engine.store.base import StoreBase, dumps, loads
from mcoflow.engine.store.statements import chunks, dialect_insert

# rows per INSERT: 7 parameters a row stays under SQLite's 32,766 and PostgreSQL's 65,535
_ROWS_PER_STATEMENT = 1000
_NAMES_PER_QUERY = 5000


@dataclass(frozen=True)
class HostInventory:
    """What a host reported of itself."""

    facts: Mapping[str, Any] = field(default_factory=dict)
    classes: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()


@dataclass(frozen=True)
class HostSighting:
    identity: str
    at: float
    inventory: HostInventory | None = None


@dataclass(frozen=True)
class HostRecord:
    identity: str
    facts: Mapping[str, Any]
    classes: tuple[str, ...]
    agents: tuple[str, ...]
    first_seen: float
    last_seen: float
    # when facts, classes and agents were last reported (None: only seen answering)
    inventory_at: float | None


def sighting_rows(sightings: Iterable[HostSighting]) -> list[dict[str, Any]]:
    """One row per identity (a statement may not touch a row twice): the earliest and
    the latest time, and the latest inventory reported with its own time."""
    rows: dict[str, dict[str, Any]] = {}
    for s in sightings:
        row = rows.get(s.identity)
        if row is None:
            row = rows[s.identity] = {
                "identity": s.identity,
                "facts": "{}",
                "classes": "[]",
                "agents": "[]",
                "first_seen": s.at,
                "last_seen": s.at,
                "inventory_at": None,
            }
        row["first_seen"] = min(row["first_seen"], s.at)
        row["last_seen"] = max(row["last_seen"], s.at)
        reported = row["inventory_at"]
        if s.inventory is not None and (reported is None or reported <= s.at):
            row["facts"] = dumps(dict(s.inventory.facts))
            row["classes"] = dumps(list(s.inventory.classes))
            row["agents"] = dumps(list(s.inventory.agents))
            row["inventory_at"] = s.at
    return [rows[name] for name in sorted(rows)]


class HostQueries(StoreBase):
    """Recording sightings and reading the inventory."""

    async def record_sightings(self, sightings: Sequence[HostSighting]) -> None:
        """Merge sightings into the inventory: a new identity is added (first seen now),
        a known one gets its last-seen time advanced and, with an inventory, its facts,
        classes and agents replaced. Out-of-order sightings never move time back."""
        rows = sighting_rows(sightings)
        if not rows:
            return
        async with self._write() as conn:
            for start in range(0, len(rows), _ROWS_PER_STATEMENT):
                await conn.execute(self._upsert(rows[start : start + _ROWS_PER_STATEMENT]))

    def _upsert(self, rows: list[dict[str, Any]]) -> Any:
        stmt = dialect_insert(self.is_postgresql)(hosts).values(rows)
        new = stmt.excluded
        reported = and_(
            new.inventory_at.is_not(None),
            new.inventory_at >= func.coalesce(hosts.c.inventory_at, 0.0),
        )
        return stmt.on_conflict_do_update(
            index_elements=[hosts.c.identity],
            set_={
                "first_seen": case(
                    (new.first_seen < hosts.c.first_seen, new.first_seen),
                    else_=hosts.c.first_seen,
                ),
                "last_seen": case(
                    (new.last_seen > hosts.c.last_seen, new.last_seen), else_=hosts.c.last_seen
                ),
                "facts": case((reported, new.facts), else_=hosts.c.facts),
                "classes": case((reported, new.classes), else_=hosts.c.classes),
                "agents": case((reported, new.agents), else_=hosts.c.agents),
                "inventory_at": case((reported, new.inventory_at), else_=hosts.c.inventory_at),
            },
        )

    async def list_hosts(self) -> list[HostRecord]:
        """Every host ever seen, by identity."""
        async with self._read() as conn:
            rows = await conn.execute(select(hosts).order_by(hosts.c.identity))
            return [_record(row) for row in rows]

    async def never_seen(self, identities: Sequence[str]) -> list[str]:
        """Those of ``identities`` the inventory has no record of, in the given order."""
        wanted = list(dict.fromkeys(identities))
        seen: set[str] = set()
        async with self._read() as conn:
            for part in chunks(wanted, _NAMES_PER_QUERY):
                seen.update(await _seen_among(self, conn, part))
        return [name for name in wanted if name not in seen]


async def _seen_among(store: StoreBase, conn: AsyncConnection, names: list[str]) -> list[str]:
    rows = await conn.execute(select(hosts.c.identity).where(store._among(hosts.c.identity, names)))
    return list(rows.scalars())


def _record(row: Any) -> HostRecord:
    return HostRecord(
        identity=row.identity,
        facts=loads(row.facts) or {},
        classes=tuple(loads(row.classes) or ()),
        agents=tuple(loads(row.agents) or ()),
        first_seen=row.first_seen,
        last_seen=row.last_seen,
        inventory_at=row.inventory_at,
    )
