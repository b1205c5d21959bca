"""The executors sharing a database: registering, heartbeats, and releasing what a dead
one held (found by its heartbeat going stale, its local pid gone, or on PostgreSQL its
liveness lock free: ``liveness``).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Collection
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from mcoflow.engine.schema import executors, plans, steps
from mcoflow.engine.states import (
    StepState,
)
from mcoflow.engine.store.base import dumps
from mcoflow.engine.store.liveness import LivenessQueries
from mcoflow.engine.store.outbox import OutboxQueries
from mcoflow.engine.store.writes import WriteCore

ABNORMAL_TERMINATION = "abnormal termination: its executor {executor} stopped while it ran"


class ExecutorRegistry(WriteCore, OutboxQueries, LivenessQueries):
    """Executors and their claims."""

    async def register_executor(self, executor_id: str) -> None:
        now = time.time()
        async with self._write() as conn:
            await conn.execute(
                insert(executors).values(
                    id=executor_id,
                    host=socket.gethostname(),
                    pid=os.getpid(),
                    started_at=now,
                    heartbeat_at=now,
                )
            )

    async def heartbeat(self, executor_id: str) -> bool:
        """Beat; False if this executor was declared dead meanwhile (it must stop)."""
        async with self._write() as conn:
            res = await conn.execute(
                update(executors)
                .where(executors.c.id == executor_id)
                .values(heartbeat_at=time.time())
            )
            return bool(res.rowcount)

    async def release_unheard_claims(
        self, executor_id: str, running: Collection[tuple[str, int]]
    ) -> int:
        """The steps claimed by ``executor_id`` that it is not running go back, as if
        never claimed: claims whose commit it never heard of, the connection lost at that
        moment (a database restart, a network cut). Called by the executor itself after
        the database came back, from its claiming loop (nothing else adds to
        ``running``). How many went back."""

        async def work(conn: AsyncConnection) -> int:
            now = time.time()
            rows = (
                await conn.execute(
                    select(steps.c.plan_id, steps.c.idx, steps.c.claimed_from)
                    .where(
                        steps.c.claimed_by == executor_id,
                        steps.c.state == StepState.RUNNING.value,
                    )
                    .with_for_update()
                )
            ).all()
            unheard = [r for r in rows if (r.plan_id, r.idx) not in running]
            for r in unheard:
                await conn.execute(
                    update(steps)
                    .where(steps.c.plan_id == r.plan_id, steps.c.idx == r.idx)
                    .values(
                        state=StepState(r.claimed_from or StepState.PENDING.value).value,
                        ready_at=now,
                        claimed_by=None,
                        attempts=steps.c.attempts - 1,  # it never ran
                    )
                )
            if unheard:
                await self._notify(conn)
            return len(unheard)

        return await self._retrying(work)  # type: ignore[no-any-return]

    async def release_unheard_plan_claims(self, executor_id: str) -> None:
        """The plans claimed by ``executor_id`` are due again: called by the executor
        when it handles none (the top of its plan loop) after the database came back, for
        a claim whose commit it never heard of. A plan with nothing to do is claimed and
        left alone again."""
        async with self._write() as conn:
            await conn.execute(
                update(plans)
                .where(plans.c.claimed_by == executor_id, plans.c.wake_at.is_(None))
                .values(claimed_by=None, wake_at=time.time())
            )

    async def unregister_executor(self, executor_id: str) -> None:
        await self.release_executors([executor_id], "executor stopped")

    async def release_executors(self, ids: list[str], by: str) -> None:
        """Release what these executors held and unregister them, as for a dead one."""
        await self._retrying(self._release_executors, ids, by)

    async def release_dead_executors(self, timeout: float, by: str) -> list[str]:
        """Find executors that stopped beating (or whose local pid is gone) and release
        what they held. Returns their ids."""
        now = time.time()
        host = socket.gethostname()
        async with self._read() as conn:
            rows = (await conn.execute(select(executors))).all()
        dead = [
            r.id
            for r in rows
            if r.heartbeat_at < now - timeout or (r.host == host and not _pid_alive(r.pid))
        ]
        if dead:
            await self.release_executors(dead, by)
        return dead

    async def _release_executors(self, conn: AsyncConnection, ids: list[str], by: str) -> None:
        now = time.time()
        held = (
            (
                await conn.execute(
                    select(steps.c.plan_id).where(steps.c.claimed_by.in_(ids)).distinct()
                )
            )
            .scalars()
            .all()
        )
        plan_ids = sorted(set(held))
        await self._lock_plans(conn, plan_ids)
        rows = (
            await conn.execute(
                select(
                    steps.c.plan_id,
                    steps.c.idx,
                    steps.c.idempotent,
                    steps.c.claimed_from,
                    steps.c.claimed_by,
                ).where(steps.c.claimed_by.in_(ids), steps.c.state == StepState.RUNNING.value)
            )
        ).all()
        for r in rows:
            if r.idempotent:
                back = StepState(r.claimed_from or StepState.PENDING.value)
                values: dict[str, Any] = {"state": back.value, "ready_at": now}
            else:
                message = ABNORMAL_TERMINATION.format(executor=r.claimed_by)
                values = {
                    "state": StepState.ERROR.value,
                    "ready_at": None,
                    "ended_at": now,
                    "error": dumps({"type": "AbnormalTermination", "message": message}),
                }
                await self._history(
                    conn, r.plan_id, "abnormal termination", f"step {r.idx}", by, now
                )
            await conn.execute(
                update(steps)
                .where(steps.c.plan_id == r.plan_id, steps.c.idx == r.idx)
                .values(claimed_by=None, **values)
            )
        await conn.execute(
            update(plans).where(plans.c.claimed_by.in_(ids)).values(claimed_by=None, wake_at=now)
        )
        await conn.execute(delete(executors).where(executors.c.id.in_(ids)))
        await self._release_outbox_claims(conn, now)
        await self._notify(conn)
        await self._settle(conn, plan_ids, now, by=by)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
