"""Upkeep of the engine's tables: deleting finished plans past their retention, and
fresh planner statistics for the busy tables (PostgreSQL).

A fleet job turns an empty installation into tens of thousands of rows in seconds,
long before autovacuum (one look a minute by default) analyzes them; without statistics
PostgreSQL answers the per-batch lookups (``plan_id = ANY(…)``) with sequential scans.
So the executors analyze these tables themselves as they grow, one executor at a time,
with a small sample: enough to know that ids are unique-ish, cheap enough to repeat.
Autovacuum's own, fuller analyses still happen.
"""

from __future__ import annotations

from sqlalchemy import delete, select, text

from mcoflow.engine.schema import events, history, outbox, plans, steps
from mcoflow.engine.states import PlanState
from mcoflow.engine.store.base import StoreBase
from mcoflow.engine.store.statements import chunks

TABLES = ("steps", "plans", "events", "outbox")
# analyze once this many rows changed since the last analysis, and at least this
# fraction of the table: a table that doubles is analyzed again, a big steady one rarely
MIN_CHANGED = 500
CHANGED_FRACTION = 0.5
# rows sampled = 300 x this (PostgreSQL's rule); the default, 100, reads 30,000 rows
SAMPLE_TARGET = 10
# any constant shared by the processes of one database: one analyzes at a time
LOCK_KEY = 0x6D636F666C6F77

_STALE = text(
    """
    SELECT relname FROM pg_stat_user_tables
    WHERE relname = ANY(CAST(:tables AS text[]))
      AND n_mod_since_analyze >= :min_changed
      AND n_mod_since_analyze >= :fraction * GREATEST(n_live_tup, 1)
    ORDER BY relname
    """
)
_TRY_LOCK = text("SELECT pg_try_advisory_xact_lock(:key)")


class MaintenanceQueries(StoreBase):
    async def refresh_planner_statistics(self) -> list[str]:
        """ANALYZE those of the engine's tables that changed much since their last
        analysis; returns their names (none on SQLite, or while another process does
        it)."""
        if not self.is_postgresql:
            return []
        async with self.engine.begin() as conn:
            if not (await conn.execute(_TRY_LOCK, {"key": LOCK_KEY})).scalar():
                return []
            stale = list(
                (
                    await conn.execute(
                        _STALE,
                        {
                            "tables": list(TABLES),
                            "min_changed": MIN_CHANGED,
                            "fraction": CHANGED_FRACTION,
                        },
                    )
                ).scalars()
            )
            if stale:
                await conn.exec_driver_sql(f"SET LOCAL default_statistics_target = {SAMPLE_TARGET}")
                # names from the fixed list above, never from input
                await conn.exec_driver_sql(f"ANALYZE {', '.join(stale)}")
        return stale

    async def delete_finished_plans(self, older_than: float) -> int:
        """Delete stopped top-level plans (and their children) that ended before a time."""
        async with self._write() as conn:
            old = (
                (
                    await conn.execute(
                        select(plans.c.id).where(
                            plans.c.state == PlanState.STOPPED.value,
                            plans.c.ended_at < older_than,
                            plans.c.parent_plan_id.is_(None),
                        )
                    )
                )
                .scalars()
                .all()
            )
            ids = list(old)
            frontier = ids
            while frontier:
                frontier = list(
                    (
                        await conn.execute(
                            select(plans.c.id).where(plans.c.parent_plan_id.in_(frontier))
                        )
                    )
                    .scalars()
                    .all()
                )
                ids.extend(frontier)
            for table in (events, history, outbox, steps):
                for chunk in chunks(ids, 500):
                    await conn.execute(delete(table).where(table.c.plan_id.in_(chunk)))
            for chunk in chunks(ids, 500):
                await conn.execute(delete(plans).where(plans.c.id.in_(chunk)))
            return len(old)
