"""The engine's public API: trigger, delay, deliver events, operate on and read plans."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from mcoflow.engine.action import Action, EventKind
from mcoflow.engine.executor import Executor, OutboxPublisher
from mcoflow.engine.planner import NewPlan, Planner, check_no_references
from mcoflow.engine.records import EngineStats, ExecutorInfo, HistoryEntry, NewEvent, Plan, Step
from mcoflow.engine.states import PlanResult, PlanState
from mcoflow.engine.store import Page, PlanFilter, PlanNotFound, Store

# the shortest plan id prefix taken: shorter ones would often name several plans
MIN_PLAN_PREFIX = 4


def _epoch(value: float | datetime | None) -> float | None:
    if value is None or isinstance(value, (int, float)):
        return value
    return value.timestamp()


class World:
    """One process's handle on the engine. With ``executor=True`` it also executes."""

    def __init__(self, store: Store, executor: Executor | None = None) -> None:
        self.store = store
        self.executor = executor

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        execute: bool = False,
        upgrade: bool = True,
        publisher: OutboxPublisher | None = None,
        **executor_options: Any,
    ) -> World:
        store = Store(url)
        if upgrade:
            await store.upgrade()
        executor = None
        if execute:
            executor = Executor(store, publisher=publisher, **executor_options)
            await executor.start()
        return cls(store, executor)

    async def close(self) -> None:
        if self.executor is not None:
            await self.executor.stop()
        await self.store.close()

    async def __aenter__(self) -> World:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _nudge(self) -> None:
        if self.executor is not None:
            self.executor.wake()

    # ---- starting plans ---------------------------------------------------------------

    async def trigger(
        self,
        action: type[Action],
        /,
        *,
        label: str | None = None,
        by: str = "system",
        **args: Any,
    ) -> Plan:
        """Plan ``action`` now and start it. Invalid input raises InputError before
        anything is stored; an error inside plan() gives a stopped plan with result error."""
        # pure CPU, long for a fleet of many hosts: off the loop the web also runs on
        plan = await asyncio.to_thread(Planner().plan, action, args, label=label)
        await self.store.insert_plans([plan], start=True, by=by)
        self._nudge()
        return await self.get_plan(plan.id)

    async def trigger_many(
        self,
        action: type[Action],
        arg_list: Sequence[Mapping[str, Any]],
        *,
        by: str = "system",
    ) -> list[str]:
        """Plan and start many plans of one action in one transaction (bulk triggers)."""
        new_plans = await asyncio.to_thread(
            lambda: [Planner().plan(action, args) for args in arg_list]
        )
        await self.store.insert_plans(new_plans, start=True, by=by)
        self._nudge()
        return [p.id for p in new_plans]

    async def delay(
        self,
        action: type[Action],
        /,
        *,
        start_at: float | datetime,
        start_before: float | datetime | None = None,
        label: str | None = None,
        by: str = "system",
        **args: Any,
    ) -> Plan:
        """Plan ``action`` at ``start_at``; if no executor starts it before
        ``start_before`` it is stopped with result error and the reason."""
        at, before = _epoch(start_at), _epoch(start_before)
        assert at is not None
        if before is not None and before < at:
            raise ValueError("start_before: must not be earlier than start_at")
        await asyncio.to_thread(check_no_references, action, args)  # pure CPU, as in trigger
        validated = await asyncio.to_thread(action.validate_input, args)
        plan = NewPlan(
            id=uuid.uuid4().hex,
            action=action.name,
            label=label or action.describe(validated),
            args=validated,
            state=PlanState.SCHEDULED,
            result=PlanResult.PENDING,
            flow=None,
            steps=[],
            created_at=time.time(),
            start_at=at,
            start_before=before,
            history=[("scheduled", f"start at {datetime.fromtimestamp(at).isoformat()}")],
        )
        await self.store.insert_plans([plan], start=False, by=by)
        self._nudge()
        return await self.get_plan(plan.id)

    # ---- events -----------------------------------------------------------------------

    async def event(
        self,
        plan_id: str,
        step_id: int,
        payload: Mapping[str, Any] | None = None,
        *,
        dedupe_key: str | None = None,
        after: float = 0.0,
    ) -> bool:
        """Deliver ``payload`` to a step; False if ``dedupe_key`` was delivered before."""
        (fresh,) = await self.store.deliver_events(
            [
                NewEvent(
                    plan_id,
                    step_id,
                    EventKind.USER,
                    dict(payload or {}),
                    dedupe_key,
                    time.time() + after,
                )
            ]
        )
        self._nudge()
        return fresh

    async def events(
        self, items: Sequence[tuple[str, int, Mapping[str, Any], str | None]]
    ) -> list[bool]:
        """Deliver many (plan, step, payload, dedupe key) events in one transaction."""
        now = time.time()
        result = await self.store.deliver_events(
            [
                NewEvent(p, s, EventKind.USER, dict(payload), key, now)
                for p, s, payload, key in items
            ]
        )
        self._nudge()
        return result

    # ---- operator actions -------------------------------------------------------------

    async def resume(self, plan_id: str, *, by: str = "system") -> Plan:
        plan = await self.store.resume(plan_id, by)
        self._nudge()
        return plan

    async def skip(self, plan_id: str, step_id: int, *, by: str = "system") -> Plan:
        plan = await self.store.skip(plan_id, step_id, by)
        self._nudge()
        return plan

    async def skip_failed(self, plan_id: str, *, by: str = "system") -> Plan:
        """Skip every failed step of a plan (a fleet's failed host, say): it goes on, and
        its paused fleet too once no other host waits for the operator."""
        plan = await self.store.skip(plan_id, None, by)
        self._nudge()
        return plan

    async def cancel(self, plan_id: str, *, by: str = "system") -> Plan:
        plan = await self.store.cancel(plan_id, by)
        self._nudge()
        return plan

    # ---- reading ----------------------------------------------------------------------

    async def get_plan(self, plan_id: str) -> Plan:
        plan = await self.store.get_plan(plan_id)
        if plan is None:
            raise PlanNotFound(f"no plan {plan_id}")
        return plan

    async def resolve_plan_id(self, prefix: str) -> str:
        """The id of the one plan whose id starts with ``prefix`` (at least
        MIN_PLAN_PREFIX characters, or a whole id), as git takes commits; PlanNotFound
        says why not: too short, no such plan, or which plans it could mean."""
        prefix = prefix.strip()
        if len(prefix) < MIN_PLAN_PREFIX:
            raise PlanNotFound(
                f"plan id: {prefix!r} is too short; give at least {MIN_PLAN_PREFIX} characters"
            )
        ids = await self.store.plan_ids_starting(prefix, 6)
        if not ids:
            raise PlanNotFound(f"no plan {prefix}")
        if len(ids) > 1:
            shown = ", ".join(ids[:5]) + (", …" if len(ids) > 5 else "")
            raise PlanNotFound(
                f"plan id {prefix} is ambiguous: plans {shown} start with it; give more characters"
            )
        return ids[0]

    async def list_plans(
        self,
        filters: PlanFilter | None = None,
        *,
        offset: int = 0,
        limit: int = 50,
        order: str = "-created_at",
    ) -> Page:
        return await self.store.list_plans(filters, offset=offset, limit=limit, order=order)

    async def steps(self, plan_id: str) -> list[Step]:
        return await self.store.get_steps(plan_id)

    async def history(self, plan_id: str) -> list[HistoryEntry]:
        return await self.store.get_history(plan_id)

    async def executors(self) -> list[ExecutorInfo]:
        return await self.store.list_executors()

    async def stats(self) -> EngineStats:
        """Totals for monitoring: plans and steps by state, the outbox's backlog,
        replies, fired timeouts, step durations, executors."""
        return await self.store.engine_stats()

    async def wait(
        self,
        plan_id: str,
        *,
        timeout: float = 60.0,
        until: frozenset[PlanState] = frozenset({PlanState.STOPPED, PlanState.PAUSED}),
        interval: float = 0.02,
    ) -> Plan:
        """Poll until the plan reaches one of ``until`` (default: stopped or paused)."""
        deadline = time.monotonic() + timeout
        while True:
            plan = await self.get_plan(plan_id)
            if plan.state in until:
                return plan
            if time.monotonic() > deadline:
                raise TimeoutError(f"plan {plan_id} still {plan.state.value} after {timeout} s")
            await asyncio.sleep(interval)
