"""Claims whose commit an executor never heard of. When the connection goes at the
moment a claim commits (a database restart, a network cut), the steps or plans are
claimed by this executor in the database while it knows nothing of them: nobody would
run them, and no other executor takes them from a live one. So after each outage the
executor gives back what it holds in the database but is not handling."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from mcoflow.engine.records import ClaimedStep, StepOutcome
from mcoflow.engine.store import Store

log = logging.getLogger("mcoflow.executor")


class UnheardClaims:
    def __init__(self, store: Store, executor_id: str) -> None:
        self.store = store
        self.executor_id = executor_id
        # the steps this executor claimed and has not committed an outcome for yet
        self.running: set[tuple[str, int]] = set()
        self._steps_checked = 0  # the link's outage count when last looked at
        self._plans_checked = 0

    def claimed(self, steps: Iterable[ClaimedStep]) -> None:
        self.running.update((s.plan_id, s.idx) for s in steps)

    def written(self, outcomes: Iterable[StepOutcome]) -> None:
        self.running.difference_update((o.plan_id, o.idx) for o in outcomes)

    async def give_back_steps(self) -> None:
        """From the claiming loop (nothing claims meanwhile), once after each outage."""
        outages = self.store.link.outages
        if outages == self._steps_checked:
            return
        released = await self.store.release_unheard_claims(self.executor_id, self.running)
        self._steps_checked = outages
        if released:
            log.warning(
                "executor %s: %d steps claimed as the database went away are claimable again",
                self.executor_id,
                released,
            )

    async def give_back_plans(self) -> None:
        """From the plan loop between two plans, once after each outage."""
        outages = self.store.link.outages
        if outages == self._plans_checked:
            return
        await self.store.release_unheard_plan_claims(self.executor_id)
        self._plans_checked = outages
