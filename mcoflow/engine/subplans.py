"""Actions that fan out into child plans (one per host, say) and wait for them.

Counts always come from the database, so a restarted executor sees the same numbers.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, overload

from mcoflow.engine.action import Action, Event, EventKind
from mcoflow.engine.records import SubPlanCounts


@dataclass(frozen=True)
class SubPlan:
    action: type[Action]
    args: dict[str, Any] = field(default_factory=dict)
    label: str | None = None


class SubPlansFailed(RuntimeError):
    pass


class LazySubPlans(Sequence[SubPlan]):
    """``make(item)`` for each of ``items``, made only when asked for. Returned by
    ``create_sub_plans``, it lets each run make its own chunk of a big fleet without
    making all those before it again."""

    def __init__(self, items: Sequence[Any], make: Callable[[Any], SubPlan]) -> None:
        self._items = items
        self._make = make

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> SubPlan: ...

    @overload
    def __getitem__(self, index: slice) -> list[SubPlan]: ...

    def __getitem__(self, index: int | slice) -> SubPlan | list[SubPlan]:
        if isinstance(index, slice):
            return [self._make(item) for item in self._items[index]]
        return self._make(self._items[index])


def _chunk(source: Iterable[SubPlan], start: int, stop: int) -> list[SubPlan]:
    if isinstance(source, Sequence):
        return list(source[start:stop])
    return list(itertools.islice(source, start, stop))


class WithSubPlans(Action):
    """Override ``create_sub_plans``; tune ``concurrency_limit`` and ``max_failures``
    (plain ints, or read them from input by overriding the methods)."""

    abstract = True
    cancellable = True
    # run() recounts everything from the database; "created" commits with the children
    idempotent = True
    coalesce_events = frozenset({EventKind.SUB_PLAN})
    noun: ClassVar[str] = "sub-plans"  # what the children are, in messages

    def create_sub_plans(self) -> Iterable[SubPlan]:
        """The children, the same ones in the same order every time: they are created a
        chunk per run (``sub_plans_per_run``), each run taking up where the last stopped."""
        raise TypeError(f"{type(self).__name__} must implement create_sub_plans")

    def concurrency_limit(self) -> int | None:
        return None

    def max_failures(self) -> int | None:
        """Stop starting new children once this many failed (None: never stop)."""
        return None

    def batch_size(self) -> int | None:
        """Start children in batches of this size, each after the last one ended."""
        return None

    def batch_sleep(self) -> float:
        """Seconds to wait between batches."""
        return 0.0

    def sub_plans_per_run(self) -> int:
        """Children created per run: the first ones start while the rest are planned, so a
        fleet of thousands does not wait for all of them to be planned and stored."""
        return 1000

    async def run(self, event: Event | None = None) -> None:
        ctx = self._running()
        if event is not None and event.kind is EventKind.CANCEL:
            self.data["cancelling"] = True
        specs: Sequence[SubPlan] | None = None
        if "total" not in self.data:
            made = self.create_sub_plans()
            specs = made if isinstance(made, Sequence) else list(made)
            # "created" alone: a plan stored before children were created in chunks
            self.data["total"] = self.data.get("created", len(specs))
            self.data.setdefault("created", 0)
            if not specs:
                self.output.update(total=0, success=0, failed=0, cancelled=0)
                return
        total, created = self.data["total"], self.data["created"]
        counts = await ctx.sub_plan_counts()
        threshold = self.max_failures()
        cancelling = bool(self.data.get("cancelling"))
        # past the failure threshold the rollout stops: children not started are held
        # (planned) for a Resume, which retries the failed ones and goes on with the rest
        held = not cancelling and threshold is not None and counts.failed >= threshold
        stopping = cancelling or held
        if created < total:
            # stopping: the rest is created too, so that every host has its sub-plan and
            # its line in the results (cancelled, or held for a Resume)
            size = total - created if stopping else self.sub_plans_per_run()
            source = specs if specs is not None else self.create_sub_plans()
            chunk = _chunk(source, created, created + size)
            # planning is pure CPU, a second or more for a chunk of a big fleet: off the
            # event loop, which also serves the web console and in-process agents
            ctx.sub_plans.extend(
                await asyncio.to_thread(
                    lambda: [ctx.plan_sub_plan(s.action, s.args, s.label) for s in chunk]
                )
            )
            # (ctx.sub_plans also holds those of earlier events delivered in this claim)
            self.data["created"] = created = created + len(chunk)
            if created < total or stopping:
                self.schedule_event({"more": True}, after=0)  # the next chunk, or the recount
                if stopping:
                    self.suspend()
                    return
        # children created in this claim are not in the database yet
        planned = counts.planned + len(ctx.sub_plans)
        limit = self.concurrency_limit()
        if cancelling:
            ctx.cancel_children(paused_too=True)
            if counts.planned or counts.running or counts.paused:
                ctx.cancel_children()
                if counts.planned or counts.paused:
                    # children never started end silently: look again once this commits
                    self.schedule_event({"recount": True}, after=0)
                self.suspend()
                return
        elif held:
            if counts.running:
                self.suspend()  # the hosts already running finish first
                return
            self._stop_held(counts, total)
        else:
            self._start_more(counts, planned, limit, total, event)
        self.set_progress(counts.finished / total if total else 1.0)
        if created == total and counts.total == total and counts.settled:
            self.output.update(
                total=total,
                success=counts.success + counts.warning,
                failed=counts.failed,
                cancelled=counts.cancelled,
            )
            if cancelling:
                return
            if counts.failed or counts.cancelled:
                raise SubPlansFailed(
                    f"finished with {counts.failed} failed of {total} {self.noun}: "
                    f"{counts.success + counts.warning} succeeded, {counts.failed} failed, "
                    f"{counts.cancelled} cancelled"
                )
            return
        self.suspend()

    def _stop_held(self, counts: SubPlanCounts, total: int) -> None:
        """Past the failure threshold, nothing running: the step errors (the plan pauses)
        with the hosts not started held for a Resume."""
        self.set_progress(counts.finished / total if total else 1.0)
        self.output.update(
            total=total,
            success=counts.success + counts.warning,
            failed=counts.failed,
            cancelled=counts.cancelled,
        )
        raise SubPlansFailed(
            f"stopped after {counts.failed} failed of {total} {self.noun}: "
            f"{counts.success + counts.warning} succeeded, {counts.failed} failed, "
            f"{counts.planned} not started, {counts.cancelled} cancelled; Resume retries "
            f"the failed {self.noun} and goes on with the rest"
        )

    def _start_more(
        self,
        counts: SubPlanCounts,
        planned: int,
        limit: int | None,
        total: int,
        event: Event | None,
    ) -> None:
        ctx = self._running()
        unless_failed = self.max_failures()
        batch = self.batch_size()
        if batch is None:
            ctx.start_children(limit if limit is not None else total, unless_failed=unless_failed)
            return
        if counts.running or not planned:
            return
        sleep = self.batch_sleep()
        first = counts.total == counts.planned  # none has started yet
        due = event is not None and bool(event.payload.get("next_batch"))
        if sleep > 0 and not first and not due:
            if not self.data.get("batch_timer"):
                self.data["batch_timer"] = True
                self.schedule_event({"next_batch": True}, after=sleep)
            return
        self.data["batch_timer"] = False
        up_to = min(batch, limit) if limit is not None else batch
        ctx.start_children(up_to, unless_failed=unless_failed)
