"""``Jobs`` that also run job templates: what the web console's JobsPort is."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from mcoflow.actions.jobs import Jobs
from mcoflow.engine import Plan


class TemplateJobs(Jobs):
    """The operator's jobs and job templates, for the web console and the API."""

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
        from mcoflow.templates import run_template

        plan: Plan = await run_template(
            self,
            name,
            inputs,
            hosts=tuple(hosts),
            filter=filter,
            concurrency=concurrency,
            batch_size=batch_size,
            max_failures=max_failures,
            start_at=start_at,
            start_before=start_before,
            by=by,
        )
        return plan
