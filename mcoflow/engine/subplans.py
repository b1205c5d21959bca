"""Actions that fan out into child plans (one per host, say) and wait for them.

Counts always come from the database, so a restarted executor sees the same numbers.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mcoflow.engine.action import Action, Event, EventKind
from mcoflow.engine.records import SubPlanCounts


@dataclass(frozen=True)
class SubPlan:
    action: type[Action]
    args: dict[str, Any] = field(default_factory=dict)
    label: str | None = None


class SubPlansFailed(RuntimeError):
    pass


class WithSubPlans(Action):
    """Override ``create_sub_plans``; tune ``concurrency_limit`` and ``max_failures``
    (plain ints, or read them from input by overriding the methods)."""

    abstract = True
    cancellable = True
    # run() recounts everything from the database; "created" commits with the children
    idempotent = True
    coalesce_events = frozenset({EventKind.SUB_PLAN})

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
        specs: list[SubPlan] | None = None
        if "total" not in self.data:
            specs = list(self.create_sub_plans())
            # "created" alone: a plan stored before children were created in chunks
            self.data["total"] = self.data.get("created", len(specs))
            self.data.setdefault("created", 0)
            if not specs:
                self.output.update(total=0, success=0, failed=0, cancelled=0)
                return
        total, created = self.data["total"], self.data["created"]
        counts = await ctx.sub_plan_counts()
        threshold = self.max_failures()
        stopping = bool(self.data.get("cancelling")) or (
            threshold is not None and counts.failed >= threshold
        )
        if created < total:
            # stopping: the rest is created too, to be cancelled with the others not started,
            # so that every host has its sub-plan and its line in the results
            size = total - created if stopping else self.sub_plans_per_run()
            source = specs if specs is not None else self.create_sub_plans()
            chunk = list(itertools.islice(source, created, created + size))
            for spec in chunk:
                ctx.create_sub_plan(spec.action, spec.args, spec.label)
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
        if self.data.get("cancelling"):
            ctx.cancel_sub_plans = ctx.cancel_paused_sub_plans = True
        if stopping and (
            counts.planned or counts.running or (self.data.get("cancelling") and counts.paused)
        ):
            ctx.cancel_sub_plans = True
            if counts.planned or counts.paused:
                # children never started end silently: look again once this commits
                self.schedule_event({"recount": True}, after=0)
            self.suspend()
            return
        if not stopping:
            self._start_more(counts, planned, limit, total, event)
        self.set_progress(counts.finished / total if total else 1.0)
        if created == total and counts.total == total and counts.settled:
            self.output.update(
                total=total,
                success=counts.success + counts.warning,
                failed=counts.failed,
                cancelled=counts.cancelled,
            )
            if self.data.get("cancelling"):
                return
            if counts.failed or counts.cancelled:
                reason = "stopped after" if stopping else "finished with"
                raise SubPlansFailed(
                    f"{reason} {counts.failed} failed of {total} sub-plans"
                    + (f" ({counts.cancelled} cancelled)" if counts.cancelled else "")
                )
            return
        self.suspend()

    def _start_more(
        self,
        counts: SubPlanCounts,
        planned: int,
        limit: int | None,
        total: int,
        event: Event | None,
    ) -> None:
        ctx = self._running()
        ctx.start_unless_failed = self.max_failures()
        batch = self.batch_size()
        if batch is None:
            ctx.start_sub_plans = limit if limit is not None else total
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
        ctx.start_sub_plans = min(batch, limit) if limit is not None else batch
