"""Starting the operator's jobs from operator input (CLI, web form, REST API)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict, Unpack

from mcoflow.actions.fleet import Discover, FleetJob, filter_json, rerun_failed
from mcoflow.actions.inventory import matching_hosts
from mcoflow.actions.operations import host_action
from mcoflow.actions.parameters import parse_names, parse_parameter
from mcoflow.actions.schedule import start_window
from mcoflow.engine import Action, InputError, Plan, PlanResult, PlanState, World
from mcoflow.engine.store import HostRecord
from mcoflow.job_request import JobInputError, JobKind, JobRequest, host_count, parse_hosts
from mcoflow.rpc.filters import Filter, FilterError
from mcoflow.rpc.targeting import group_names, parse
from mcoflow.rpc.transport import Transport

__all__ = [
    "JobLaunch",
    "JobRequest",
    "Jobs",
    "job_input_error",
    "filter_text",
    "never_seen_message",
    "parse_filter",
    "parse_hosts",
    "parse_job_parameter",
    "wait_with_progress",
]


def parse_filter(
    text: str | None, *, field: str = "filter", groups: Mapping[str, str] | None = None
) -> Filter | None:
    """``class:web and (os_family=debian or not identity:/^db/)`` -> Filter (the grammar
    of mcoflow.rpc.targeting); blank -> None. ``@NAME`` needs ``groups`` (name -> filter
    text): ``Jobs`` loads them from the store."""
    if text is None or not text.strip():
        return None
    try:
        return parse(text, groups)
    except FilterError as exc:
        raise JobInputError(field, str(exc)) from None


def filter_text(text: str | None) -> str | None:
    """The operator's filter as they wrote it (blanks collapsed), kept for labels."""
    return " ".join(text.split()) if text and text.strip() else None


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


@dataclass(frozen=True)
class JobLaunch:
    """What starting a job comes to once its input is checked: an action and its
    arguments, started now (``window`` None) or in a start window. Schedules keep the
    job and plan it at each occurrence (``Jobs.prepare`` / ``prepare_on_hosts``)."""

    action: type[Action]
    args: dict[str, Any]
    window: tuple[float, float | None] | None = None


def job_input_error(exc: InputError) -> JobInputError:
    """An action's refused input as the operator's field and message."""
    field, message = exc.problems[0]
    return JobInputError(_form_field(field), message)


class HostTarget(TypedDict, total=False):
    """Where and how ``Jobs.prepare_on_hosts`` runs an action (its keyword arguments)."""

    hosts: Sequence[str]
    filter: str | None
    concurrency: int | None
    batch_size: str | None
    max_failures: str | None
    timeout: float | None
    what: str | None
    start_at: Any
    start_before: Any


class Jobs:
    """The one way jobs get started; the web and the CLI both use it."""

    def __init__(
        self,
        world: World,
        *,
        check_hosts: bool = True,
        transport: type[Transport] | None = None,
    ) -> None:
        """``transport``: the kind of transport the jobs go out on, for what its hosts
        can do (filters they apply, interfaces they describe); default: the configured
        one (the settings' transport_url)."""
        self.world = world
        self.check_hosts = check_hosts
        self._transport = transport

    @property
    def transport(self) -> type[Transport]:
        if self._transport is None:
            self._transport = configured_transport()
        return self._transport

    async def known_hosts(self) -> set[str]:
        """Every host of the inventory: seen by a discovery or answering a request."""
        return {h.identity for h in await self.world.store.list_hosts()}

    async def hosts(self, filter: str | None = None) -> list[HostRecord]:
        """The inventory's hosts, those ``filter`` selects when given (as agents would)."""
        return await matching_hosts(self.world.store, await self.parse_filter(filter))

    async def parse_filter(self, text: str | None, *, field: str = "filter") -> Filter | None:
        """``parse_filter`` with the saved host groups (read only when ``@`` names one)."""
        groups: dict[str, str] | None = None
        if text and group_names(text):
            groups = {g.name: g.filter for g in await self.world.store.list_groups()}
        return parse_filter(text, field=field, groups=groups)

    async def target_filter(self, text: str | None, *, field: str = "filter") -> Filter | None:
        """``parse_filter``, refusing what the hosts cannot apply (a compound filter on
        MCollective nodes) before anything is started or published."""
        flt = await self.parse_filter(text, field=field)
        if flt is not None:
            try:
                self.transport.check_filter(flt)
            except FilterError as exc:
                raise JobInputError(field, str(exc)) from None
        return flt

    async def _refuse_never_seen(self, names: list[str]) -> None:
        unknown = await self.world.store.never_seen(names)
        if unknown:
            raise JobInputError("hosts", never_seen_message(unknown))

    async def trigger(
        self,
        kind: str,
        *,
        hosts: Sequence[str] | str = (),
        timeout: float | None = None,
        by: str = "system",
        **fields: Any,
    ) -> Plan:
        """``start`` with the request's fields as keywords (``hosts`` may be one string
        of names separated by commas or blanks, the times epoch seconds)."""
        request = JobRequest.parse(kind=kind, hosts=parse_hosts(hosts), **fields)
        return await self.start(request, timeout=timeout, by=by)

    async def start(
        self, request: JobRequest, *, timeout: float | None = None, by: str = "system"
    ) -> Plan:
        """Plan and start a job now, or (``start_at`` / ``start_before``) a delayed one
        that starts at ``start_at`` and is given up if not started by ``start_before``.
        ``timeout``: the seconds each host may take (the command line's ``--timeout``)."""
        return await self._launch(await self.prepare(request, timeout=timeout), by=by)

    async def prepare(self, request: JobRequest, *, timeout: float | None = None) -> JobLaunch:
        """``start``'s checks of ``request`` and what it would start, without starting it."""
        job = JobKind(request.kind)
        packages, services = parse_job_parameter(job, request.parameter)
        names = request.hosts
        flt = await self._target(names, request.filter)
        window = start_window(request.start_at, request.start_before)
        if names and self.check_hosts:
            await self._refuse_never_seen(names)
        limits = (request.concurrency, request.batch_size, request.max_failures)
        action: type[Action] = FleetJob
        if not _is_fleet(names, flt, limits):
            action, args = host_action(job, names[0], packages, services, timeout)
        else:
            args = {
                "kind": job.value,
                **_fleet_target(names, flt, request.filter),
                "packages": packages,
                "services": services,
                "concurrency": request.concurrency,
                "batch_size": request.batch_size,
                "max_failures": request.max_failures,
                "timeout": timeout,
            }
        return JobLaunch(action, args, window)

    async def start_on_hosts(
        self,
        action: type[Action],
        host_args: dict[str, Any],
        *,
        by: str = "system",
        **target: Unpack[HostTarget],
    ) -> Plan:
        """Run ``action`` (one that takes a ``hostname``) with ``host_args`` on named
        hosts or those a filter selects: on one named host with no fleet option as that
        action itself, else as a fleet job with one sub-plan per host. ``what``: how the
        fleet job reads in labels ("package.status", a template's name)."""
        launch = await self.prepare_on_hosts(action, host_args, **target)
        return await self._launch(launch, by=by)

    async def prepare_on_hosts(
        self,
        action: type[Action],
        host_args: dict[str, Any],
        *,
        hosts: Sequence[str] = (),
        filter: str | None = None,
        concurrency: int | None = None,
        batch_size: str | None = None,
        max_failures: str | None = None,
        timeout: float | None = None,
        what: str | None = None,
        start_at: Any = None,
        start_before: Any = None,
    ) -> JobLaunch:
        """``start_on_hosts``'s checks and what it would start, without starting it."""
        names = parse_hosts(hosts)
        flt = await self._target(names, filter)
        window = start_window(start_at, start_before)
        if names and self.check_hosts:
            await self._refuse_never_seen(names)
        for field_name, count in (("batch_size", batch_size), ("max_failures", max_failures)):
            host_count(count, 100, field_name)
        extra: dict[str, Any] = {"timeout": timeout} if timeout else {}
        if not _is_fleet(names, flt, (concurrency, batch_size, max_failures)):
            return JobLaunch(action, {**host_args, **extra, "hostname": names[0]}, window)
        args = {
            "host_action": action.name,
            "host_args": host_args,
            "what": what,
            **_fleet_target(names, flt, filter),
            "concurrency": concurrency,
            "batch_size": batch_size,
            "max_failures": max_failures,
            "timeout": timeout,
        }
        return JobLaunch(FleetJob, args, window)

    async def _target(self, names: list[str], text: str | None) -> Filter | None:
        flt = await self.target_filter(text)
        if not names and flt is None:
            raise JobInputError("hosts", "name at least one host, or give a filter")
        if names and flt is not None:
            raise JobInputError("filter", "give host names or a filter, not both")
        return flt

    async def _launch(self, launch: JobLaunch, *, by: str) -> Plan:
        action, args, window = launch.action, launch.args, launch.window
        try:
            if window is None:
                return await self.world.trigger(action, by=by, **args)
            at, before = window
            return await self.world.delay(action, start_at=at, start_before=before, by=by, **args)
        except InputError as exc:
            raise job_input_error(exc) from None

    async def rerun_failed(self, plan_id: str, *, by: str = "system") -> Plan:
        plan: Plan = await rerun_failed(self.world, plan_id, by=by)
        return plan

    async def discover(self, filter: str | None = None, *, timeout: float = 2.0) -> list[str]:
        """Run a discovery plan (the executor owns the broker) and return its hosts."""
        flt = await self.target_filter(filter)
        plan = await self.world.trigger(
            Discover,
            filter=filter_json(flt),
            filter_text=filter_text(filter) if flt is not None else None,
            timeout=timeout,
        )
        done = await self.world.wait(
            plan.id, timeout=timeout + 60, until=frozenset({PlanState.STOPPED, PlanState.PAUSED})
        )
        if done.result is not PlanResult.SUCCESS:
            raise RuntimeError(f"discovery {done.id} ended {done.result.value}: {done.error}")
        step = next(s for s in await self.world.steps(plan.id) if s.action == Discover.name)
        return list((step.output or {}).get("hosts", []))


def configured_transport() -> type[Transport]:
    """The kind of transport the settings name (the base Transport, which refuses no
    filter, when the settings cannot be read: starting the job reports that)."""
    from mcoflow.rpc.transports import transport_class
    from mcoflow.settings import SettingsError, load_settings

    try:
        return transport_class(load_settings().transport_url)
    except (SettingsError, ValueError):
        return Transport


def _is_fleet(names: list[str], flt: Filter | None, limits: tuple[object, ...]) -> bool:
    """A job runs as a fleet job unless it is for one named host with no fleet option."""
    return flt is not None or len(names) > 1 or any(v is not None for v in limits)


def _fleet_target(names: list[str], flt: Filter | None, text: str | None) -> dict[str, Any]:
    return {
        "hosts": names,
        "filter": filter_json(flt) or None,
        "filter_text": filter_text(text) if flt is not None else None,
    }


def never_seen_message(unknown: list[str]) -> str:
    many = len(unknown) > 1
    more = len(unknown) - 10
    shown = ", ".join(unknown[:10]) + (f" and {more} more" if more > 0 else "")
    return (
        f"unknown host{'s' if many else ''} {shown}: never seen by a discovery or a reply; "
        f"run `mcoflow discover` if {'they are' if many else 'it is'} new, or set "
        "allow_unknown_hosts to send anyway (a host that does not exist then ends as "
        '"no response")'
    )


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
    world: World, plan_id: str, callback: Any, interval: float = 0.25, first: float = 0.02
) -> Plan:
    """Poll a plan until it stops or pauses, calling ``callback(plan)`` on each poll:
    every ``first`` seconds at the start, growing to every ``interval``, so that a plan
    done in a moment is seen done in a moment and a long one costs few reads."""
    pause = min(first, interval)
    while True:
        plan = await world.get_plan(plan_id)
        callback(plan)
        if plan.state in (PlanState.STOPPED, PlanState.PAUSED):
            return plan
        await asyncio.sleep(pause)
        pause = min(pause * 1.5, interval)
