"""What the web layer needs from the operator's actions (``mcoflow.actions.Jobs``).

The web app depends on this Protocol, not on ``Jobs``, so it can be tested on the
engine alone with a fake. Requests and input errors are the neutral ``job_request``
module's, so whatever ``Jobs`` rejects is shown next to the form field it names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

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

    async def run_template(
        self,
        name: str,
        inputs: Mapping[str, Any],
        *,
        hosts: Sequence[str],
        filter: str | None,
        concurrency: int | None,
        batch_size: str | None,
        max_failures: str | None,
        start_at: float | datetime | None,
        start_before: float | datetime | None,
        by: str,
    ) -> Plan:
        """Run the job template ``name`` with ``inputs`` (checked against its inputs) on
        hosts, as a fleet job on several. Raises TemplateNotFound (a LookupError), and
        JobInputError naming the field (``inputs.NAME`` for an input)."""
        ...

    async def hosts(self, filter: str | None) -> list[HostRecord]:
        """The host inventory (every host ever seen), those ``filter`` selects when
        given. Raises JobInputError for a bad filter."""
        ...
