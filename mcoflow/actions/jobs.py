"""Starting the operator's jobs from operator input (CLI, web form, REST API)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from mcoflow.actions.fleet import (
    Discover,
    FleetJob,
    JobKind,
    _count,
    filter_json,
    host_action,
    rerun_failed,
)
from mcoflow.actions.parameters import JobInputError, parse_names, parse_parameter
from mcoflow.engine import InputError, Plan, PlanFilter, PlanResult, PlanState, World
from mcoflow.rpc.filters import Filter


def parse_filter(text: str | None, *, field: str = "filter") -> Filter | None:
    """``os_family=debian class:web identity:/^db/`` -> Filter; blank -> None."""
    if text is None or not text.strip():
        return None
    try:
        return Filter.parse_cli(text.split())
    except (ValueError, ValidationError) as exc:
        raise JobInputError(field, str(exc).splitlines()[0]) from None


def parse_hosts(hosts: Sequence[str] | str, *, field: str = "hosts") -> list[str]:
    words = (
        hosts.replace(",", " ").split()
        if isinstance(hosts, str)
        else [w for h in hosts for w in h.replace(",", " ").split()]
    )
    seen: list[str] = []
    for word in words:
        if word not in seen:
            seen.append(word)
    return seen


def parse_job_parameter(kind: JobKind, text: str) -> tuple[list[str], list[str]]:
    """(packages, services) for ``kind`` from the seed's ``pkgs;svcs`` syntax."""
    if kind is JobKind.INSTALL_AND_RESTART:
        p = parse_parameter(text)
        return list(p.packages), list(p.services)
    if kind is JobKind.RESTART:
        return [], list(parse_names(text.lstrip(";"), "service"))
    if ";" in text:
        raise JobInputError("parameter", f"{kind.value} takes packages only (no ';services')")
    return list(parse_names(text, "package")), []


class Jobs:
    """The one way jobs get started; the web and the CLI both use it."""

    def __init__(self, world: World, *, check_hosts: bool = True) -> None:
        self.world = world
        self.check_hosts = check_hosts

    async def known_hosts(self) -> set[str] | None:
        """Hosts found by the latest successful discovery (None: never discovered)."""
        page = await self.world.list_plans(
            PlanFilter(action=Discover.name, result=PlanResult.SUCCESS), limit=1
        )
        if not page.items:
            return None
        plan = page.items[0]
        for step in await self.world.steps(plan.id):
            if step.action == Discover.name and step.output:
                return set(step.output.get("hosts", []))
        return None

    async def trigger(
        self,
        kind: str,
        *,
        hosts: Sequence[str] | str = (),
        filter: str | None = None,
        parameter: str,
        concurrency: int | None = None,
        batch_size: str | None = None,
        max_failures: str | None = None,
        timeout: float | None = None,
        by: str = "system",
    ) -> Plan:
        try:
            job = JobKind(kind)
        except ValueError:
            raise JobInputError(
                "kind", f"unknown job {kind!r}; one of " + ", ".join(k.value for k in JobKind)
            ) from None
        packages, services = parse_job_parameter(job, parameter)
        names = parse_hosts(hosts)
        flt = parse_filter(filter)
        if not names and flt is None:
            raise JobInputError("hosts", "name at least one host, or give a filter")
        if names and flt is not None:
            raise JobInputError("filter", "give host names or a filter, not both")
        for field, value in (("batch_size", batch_size), ("max_failures", max_failures)):
            try:
                _count(value, 100, field)
            except ValueError as exc:
                raise JobInputError(field, str(exc).split(": ", 1)[-1]) from None
        if concurrency is not None and concurrency < 1:
            raise JobInputError("concurrency", "must be at least 1")
        if names and self.check_hosts:
            known = await self.known_hosts()
            unknown = [n for n in names if known is not None and n not in known]
            if unknown:
                raise JobInputError(
                    "hosts",
                    f"unknown host{'s' if len(unknown) > 1 else ''} "
                    f"{', '.join(unknown)} (not found by the last discovery)",
                )
        fleet = (
            flt is not None
            or len(names) > 1
            or any(v is not None for v in (concurrency, batch_size, max_failures))
        )
        try:
            if not fleet:
                action, args = host_action(job, names[0], packages, services, timeout)
                return await self.world.trigger(action, by=by, **args)
            return await self.world.trigger(
                FleetJob,
                by=by,
                kind=job.value,
                hosts=names,
                filter=filter_json(flt) or None,
                packages=packages,
                services=services,
                concurrency=concurrency,
                batch_size=batch_size,
                max_failures=max_failures,
                timeout=timeout,
            )
        except InputError as exc:
            field, message = exc.problems[0]
            raise JobInputError(_form_field(field), message) from None

    async def rerun_failed(self, plan_id: str, *, by: str = "system") -> Plan:
        plan: Plan = await rerun_failed(self.world, plan_id, by=by)
        return plan

    async def discover(self, filter: str | None = None, *, timeout: float = 2.0) -> list[str]:
        """Run a discovery plan (the executor owns the broker) and return its hosts."""
        flt = parse_filter(filter)
        plan = await self.world.trigger(Discover, filter=filter_json(flt), timeout=timeout)
        done = await self.world.wait(
            plan.id, timeout=timeout + 60, until=frozenset({PlanState.STOPPED, PlanState.PAUSED})
        )
        if done.result is not PlanResult.SUCCESS:
            raise RuntimeError(f"discovery {done.id} ended {done.result.value}: {done.error}")
        step = next(s for s in await self.world.steps(plan.id) if s.action == Discover.name)
        return list((step.output or {}).get("hosts", []))


def _form_field(field: str) -> str:
    head = field.split(".", 1)[0]
    return {
        "packages": "parameter",
        "services": "parameter",
        "package": "parameter",
        "service": "parameter",
        "names": "parameter",
        "hostname": "hosts",
    }.get(head, head)


async def wait_with_progress(
    world: World, plan_id: str, callback: Any, interval: float = 0.25
) -> Plan:
    """Poll a plan until it stops or pauses, calling ``callback(plan)`` on each poll."""
    while True:
        plan = await world.get_plan(plan_id)
        callback(plan)
        if plan.state in (PlanState.STOPPED, PlanState.PAUSED):
            return plan
        await asyncio.sleep(interval)
