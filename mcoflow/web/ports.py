"""What the web layer needs from the operator's actions (``mcoflow.actions.Jobs``).

The web app depends on this Protocol, not on ``Jobs``, so it can be tested on the
engine alone with a fake. Requests and input errors are the neutral ``job_request``
module's, so whatever ``Jobs`` rejects is shown next to the form field it names.
"""

from __future__ import annotations

from typing import Protocol

from mcoflow.engine import Plan
from mcoflow.engine.store import HostRecord
from mcoflow.job_request import JobInputError, JobKind, JobRequest

__all__ = ["JobInputError", "JobKind", "JobRequest", "JobsPort"]


class JobsPort(Protocol):
    async def start(self, request: JobRequest, *, by: str) -> Plan:
        """Plan and start a job on one host (a plain plan) or many (a fleet plan with
        one child plan per host); with ``start_at``/``start_before`` a delayed plan (state
        scheduled) that starts then. Raises JobInputError for input the operator must fix
        (a start time in the past: field ``start_at`` or ``start_before``)."""
        ...

    async def rerun_failed(self, plan_id: str, *, by: str) -> Plan:
        """A new fleet job over the hosts that failed in ``plan_id``. Raises
        PlanNotFound, InvalidOperation (nothing failed / not a fleet job)."""
        ...

    async def discover(self, filter: str | None) -> list[str]:
        """Identities of the hosts that answer, optionally matching ``filter``."""
        ...

    async def hosts(self, filter: str | None) -> list[HostRecord]:
        """The host inventory (every host ever seen), those ``filter`` selects when
        given. Raises JobInputError for a bad filter."""
        ...
