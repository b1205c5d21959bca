"""Prometheus ``/metrics``: what the database says, read when scraped.

Whichever process serves the web app (``mcoflow serve``, or a web-only one beside
separate executors) reports the same totals, since they come from the database, not
from counters in one process. Counters derived from rows drop when ``mcoflow clean``
deletes old plans; Prometheus takes that as a counter reset. With authentication on,
a scraper sends an API token (``Authorization: Bearer …``), as the REST API takes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from starlette.responses import Response

from mcoflow.agent.refusals import AGENT_REGISTRY
from mcoflow.engine import EngineStats, World
from mcoflow.web.auth import api_user, bearer

__all__ = ["mcollective_drops", "metric_families", "router"]


def scraper(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
) -> str:
    return api_user(request, credentials)


router = APIRouter(include_in_schema=False)


@router.get("/metrics")
async def metrics(request: Request, _: Annotated[str, Depends(scraper)]) -> Response:
    world: World = request.app.state.world
    stats = await world.stats()
    probe = request.app.state.broker_state
    broker = probe() if probe is not None else None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(metric_families(stats, broker, now=time.time())))
    # this process's own counters (its in-process agents' refusals), not the database's
    registry.register(_Snapshot(list(AGENT_REGISTRY.collect())))
    dropped = request.app.state.dropped_replies
    if dropped is not None:
        registry.register(_Snapshot([mcollective_drops(dropped())]))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


class _Snapshot:
    """A collector of families already read (the registry calls ``collect``)."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def metric_families(stats: EngineStats, broker: str | None, *, now: float) -> list[Metric]:
    plans = GaugeMetricFamily(
        "mcoflow_plans", "Plans by state and result.", labels=["state", "result"]
    )
    for (state, result), count in sorted(stats.plans.items(), key=str):
        plans.add_metric([state, result or ""], count)
    steps = GaugeMetricFamily("mcoflow_steps", "Steps by state.", labels=["state"])
    for state, count in sorted(stats.steps.items()):
        steps.add_metric([state], count)
    outbox = GaugeMetricFamily(
        "mcoflow_outbox_waiting",
        "Requests to hosts not yet confirmed by the broker (the outbox's queue).",
        value=stats.outbox_waiting,
    )
    events = CounterMetricFamily(
        "mcoflow_events",
        "Events delivered to steps by kind (user: host replies and other outside events).",
        labels=["kind"],
    )
    for kind, count in sorted(stats.events.items()):
        events.add_metric([kind], count)
    timeouts = CounterMetricFamily(
        "mcoflow_timeouts", "Timers that fired (a host that stayed silent, among others).",
        value=stats.timeouts,
    )  # fmt: skip
    durations = SummaryMetricFamily(
        "mcoflow_step_duration_seconds",
        "Finished steps by action: seconds from their first start to their end.",
        labels=["action"],
    )
    for action, (count, seconds) in sorted(stats.step_seconds.items()):
        durations.add_metric([action], count_value=count, sum_value=seconds)
    executors = GaugeMetricFamily(
        "mcoflow_executors", "Executors registered (alive or not yet reaped).",
        value=len(stats.executors),
    )  # fmt: skip
    heartbeat = GaugeMetricFamily(
        "mcoflow_executor_heartbeat_age_seconds",
        "Seconds since each executor's last heartbeat.",
        labels=["executor"],
    )
    claimed = GaugeMetricFamily(
        "mcoflow_executor_claimed_steps", "Steps each executor holds.", labels=["executor"]
    )
    for info in stats.executors:
        heartbeat.add_metric([info.id], max(0.0, now - info.heartbeat_at))
        claimed.add_metric([info.id], info.claimed_steps)
    families: list[Metric] = [
        plans, steps, outbox, events, timeouts, durations, executors, heartbeat, claimed,
    ]  # fmt: skip
    if broker is not None:
        families.append(
            GaugeMetricFamily(
                "mcoflow_broker_connected",
                "1 while this process's link to the broker is up.",
                value=1.0 if broker.rsplit(" ", 1)[-1] == "connected" else 0.0,
            )
        )
    return families


def mcollective_drops(counts: Mapping[str, int]) -> Metric:
    """This process's MCollective transport's refused replies, by reason."""
    dropped = CounterMetricFamily(
        "mcoflow_mcollective_replies_dropped",
        "Replies from MCollective nodes this process refused, by reason "
        "(bad digest: another psk or a forgery; expired: older than the request's ttl).",
        labels=["reason"],
    )
    for reason, count in sorted(counts.items()):
        dropped.add_metric([reason], count)
    return dropped
