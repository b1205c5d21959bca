"""The agents' declared interfaces, cached as the agents sent them, and what calls to
agent actions replied (the steps of an agent call, on one host or a fleet's hosts).

One row per agent: the fleet is taken to run one version of each agent; the latest
fetch replaces what was known (its host and time are kept to say where it came from).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select

from mcoflow.engine.schema import agent_interfaces, plans, steps
from mcoflow.engine.store.base import StoreBase, dumps, loads
from mcoflow.engine.store.statements import dialect_insert


@dataclass(frozen=True)
class AgentInterfaceRecord:
    """One agent's interface as ``Agent.describe()`` gives it, from ``host`` at
    ``fetched_at``."""

    agent: str
    version: str
    interface: Mapping[str, Any]
    host: str
    fetched_at: float


@dataclass(frozen=True)
class CallStep:
    """The step of an agent call in a plan (``plan_id``): its input, and its output or
    error once it ran; ``data`` is the step's own (the host's last reply under "reply")."""

    plan_id: str
    state: str
    input: Mapping[str, Any]
    output: Mapping[str, Any] | None
    error: Mapping[str, Any] | None
    data: Mapping[str, Any] | None = None


class InterfaceQueries(StoreBase):
    """The interface cache, and the replies of agent calls."""

    async def save_agent_interfaces(self, records: Sequence[AgentInterfaceRecord]) -> None:
        """Insert or replace each agent's interface."""
        if not records:
            return
        rows = [
            {
                "agent": r.agent,
                "version": r.version,
                "interface": dumps(dict(r.interface)),
                "host": r.host,
                "fetched_at": r.fetched_at,
            }
            for r in {r.agent: r for r in records}.values()  # a statement touches a row once
        ]
        stmt = dialect_insert(self.is_postgresql)(agent_interfaces).values(rows)
        new = stmt.excluded
        stmt = stmt.on_conflict_do_update(
            index_elements=[agent_interfaces.c.agent],
            set_={
                "version": new.version,
                "interface": new.interface,
                "host": new.host,
                "fetched_at": new.fetched_at,
            },
        )
        async with self._write() as conn:
            await conn.execute(stmt)

    async def list_agent_interfaces(self) -> list[AgentInterfaceRecord]:
        """Every cached interface, by agent name."""
        async with self._read() as conn:
            rows = await conn.execute(select(agent_interfaces).order_by(agent_interfaces.c.agent))
            return [_interface(row) for row in rows]

    async def agent_interface(self, agent: str) -> AgentInterfaceRecord | None:
        async with self._read() as conn:
            rows = await conn.execute(
                select(agent_interfaces).where(agent_interfaces.c.agent == agent)
            )
            row = rows.first()
            return None if row is None else _interface(row)

    async def call_steps(self, plan_id: str, actions: Sequence[str]) -> list[CallStep]:
        """The steps running one of ``actions`` in the plan and in its child plans (a
        fleet's hosts), in one query."""
        query = (
            select(
                steps.c.plan_id,
                steps.c.state,
                steps.c.input,
                steps.c.output,
                steps.c.error,
                steps.c.data,
            )
            .select_from(steps.join(plans, plans.c.id == steps.c.plan_id))
            .where(
                or_(plans.c.id == plan_id, plans.c.parent_plan_id == plan_id),
                self._among(steps.c.action, list(actions)),
            )
            .order_by(steps.c.plan_id, steps.c.idx)
        )
        async with self._read() as conn:
            rows = await conn.execute(query)
            return [
                CallStep(
                    row.plan_id,
                    row.state,
                    loads(row.input) or {},
                    loads(row.output),
                    loads(row.error),
                    loads(row.data),
                )
                for row in rows
            ]


def _interface(row: Any) -> AgentInterfaceRecord:
    return AgentInterfaceRecord(
        agent=row.agent,
        version=row.version,
        interface=loads(row.interface) or {},
        host=row.host,
        fetched_at=row.fetched_at,
    )
