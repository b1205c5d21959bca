"""A fake JobsPort on the real engine: test actions that act like remote package and
service steps (a delay, then a host's reply), for the web app's integration tests.

Package names steer the outcome: ``fail-once*`` fails its first attempt (resume then
succeeds), ``broken*`` always fails (skip it), ``html-output`` replies with HTML; a
name ending ``@HOST`` behaves so on HOST only and succeeds elsewhere.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from mcoflow.actions.inventory import matching_hosts
from mcoflow.actions.jobs import parse_filter
from mcoflow.actions.schedule import start_window
from mcoflow.engine import (
    Action,
    Event,
    InvalidOperation,
    Plan,
    PlanResult,
    PlanState,
    SubPlan,
    WithSubPlans,
    World,
)
from mcoflow.engine.store import HostRecord
from mcoflow.job_request import JobInputError, JobRequest, host_count

HOSTS = [f"web-{i:02d}" for i in range(1, 13)] + ["db-01", "db-02"]
DELAY = {"seconds": 0.3}  # how long a "host" takes to answer
FAILED_ONCE: set[tuple[str, str]] = set()
HTML_OUTPUT = "<b>bold</b><img src=x onerror=alert(2)>"


class RemoteStep(Action):
    """Waits DELAY like a request to a host, then finishes with the host's reply."""

    abstract = True
    verb = ""

    class Input(BaseModel):
        host: str
        name: str
        after: list[Any] = []

    def run(self, event: Event | None = None) -> None:
        if event is None:
            self.set_progress(0.3)
            self.schedule_event({"reply": True}, after=DELAY["seconds"])
            self.suspend()
            return
        host, name = self.input.host, self.input.name
        key = (host, name)
        rule, _, only_on = name.partition("@")
        failing = (not only_on or only_on == host) and (
            rule.startswith("broken") or (rule.startswith("fail-once") and key not in FAILED_ONCE)
        )
        if failing:
            FAILED_ONCE.add(key)
            message = f"E: Unable to locate package {name}"
            # broken-quiet*: the host says nothing on its output
            output = "" if rule.startswith("broken-quiet") else message
            self.data["reply"] = _reply(host, 1, f"{self.verb} failed", output)
            raise RuntimeError(f"{self.verb} {name} on {host} failed: {message}")
        text = HTML_OUTPUT if name == "html-output" else f"{self.verb} {name}: done"
        self.output["changed"] = True
        self.output["reply"] = _reply(host, 0, "OK", text)


def _reply(host: str, code: int, message: str, output: str) -> dict[str, Any]:
    return {
        "sender": host,
        "statuscode": code,
        "statusmsg": message,
        "data": {"output": output, "exitcode": 0 if code == 0 else 100},
    }


class FakeInstall(RemoteStep):
    verb = "install"


class FakeUninstall(RemoteStep):
    verb = "uninstall"


class FakeRestart(RemoteStep):
    verb = "restart"


class HostJob(Action):
    """One host: the packages concurrently, then the services."""

    class Input(BaseModel):
        kind: str
        host: str
        packages: list[str] = []
        services: list[str] = []

    def plan(self, **args: Any) -> None:
        job = self.Input.model_validate(args)
        step = {"install": FakeInstall, "uninstall": FakeUninstall}.get(job.kind, FakeInstall)
        with self.sequence():
            installs = []
            with self.concurrence():
                for name in job.packages:
                    installs.append(self.plan_action(step, host=job.host, name=name))
            with self.concurrence():
                refs = [i.output["changed"] for i in installs]
                for name in job.services:
                    self.plan_action(FakeRestart, host=job.host, name=name, after=refs)

    @classmethod
    def describe(cls, args: Any) -> str:
        return f"{args['kind']} {','.join(args['packages'] + args['services'])} on {args['host']}"


class FleetJob(WithSubPlans):
    class Input(BaseModel):
        kind: str
        hosts: list[str]
        packages: list[str] = []
        services: list[str] = []
        concurrency: int | None = None
        max_failures: int | None = None

    def create_sub_plans(self) -> list[SubPlan]:
        job = self.input
        return [
            SubPlan(
                HostJob,
                {"kind": job.kind, "host": h, "packages": job.packages, "services": job.services},
                label=h,
            )
            for h in job.hosts
        ]

    def concurrency_limit(self) -> int | None:
        limit: int | None = self.input.concurrency
        return limit

    def max_failures(self) -> int | None:
        limit: int | None = self.input.max_failures
        return limit

    @classmethod
    def describe(cls, args: Any) -> str:
        what = ",".join(args["packages"] + args["services"])
        return f"{args['kind']} {what} on {len(args['hosts'])} hosts"


def parse_parameter(kind: str, parameter: str) -> tuple[list[str], list[str]]:
    def names(text: str, what: str) -> list[str]:
        items = [n.strip() for n in text.split(",")]
        if not text.strip() or any(not n for n in items):
            raise JobInputError("parameter", f"an empty {what} name in {text!r}")
        return items

    if kind == "install-and-restart":
        packages, _, services = parameter.partition(";")
        return names(packages, "package"), names(services, "service") if services else []
    if ";" in parameter:
        raise JobInputError("parameter", "';' separates services, only for install and restart")
    if kind == "restart":
        return [], names(parameter, "service")
    return names(parameter, "package"), []


class FakeJobs:
    """The JobsPort of these tests: HOSTS answer, everything else is unknown."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.triggered: list[dict[str, Any]] = []

    async def discover(self, filter: str | None) -> list[str]:
        # the real filter syntax (identity:/^web-/, class:web, os_family=debian)
        parsed = parse_filter(filter)
        if parsed is None:
            return list(HOSTS)
        return [
            host
            for host in HOSTS
            if parsed.matches(
                identity=host,
                facts={"os_family": "debian"},
                classes=[host.split("-")[0]],
                agents=["package", "service", "rpcutil"],
            )
        ]

    async def hosts(self, filter: str | None) -> list[HostRecord]:
        # the real inventory of the engine's store (tests record sightings into it)
        return await matching_hosts(self.world.store, parse_filter(filter))

    async def trigger(self, kind: str, *, by: str, **fields: Any) -> Plan:
        """``start`` with the request's fields as keywords, as ``Jobs.trigger``."""
        return await self.start(JobRequest.parse(kind=kind, **fields), by=by)

    async def start(self, request: JobRequest, *, by: str) -> Plan:
        kind, hosts, filter = request.kind, request.hosts, request.filter
        self.triggered.append({"kind": kind, "hosts": hosts, "filter": filter, "by": by})
        # the real checks, as Jobs makes them
        window = start_window(request.start_at, request.start_before)
        if filter:
            hosts = await self.discover(filter)
            if not hosts:
                raise JobInputError("filter", f"no host matches {filter!r}")
        if not hosts:
            raise JobInputError("hosts", "give at least one host or a filter")
        unknown = [h for h in hosts if h not in HOSTS]
        if unknown:
            raise JobInputError("hosts", f"unknown host: {', '.join(unknown)}")
        packages, services = parse_parameter(kind, request.parameter)
        failures = host_count(request.max_failures, len(hosts), "max_failures")
        action: type[Action] = FleetJob
        args: dict[str, Any] = {
            "kind": kind,
            "hosts": hosts,
            "packages": packages,
            "services": services,
            "concurrency": request.concurrency,
            "max_failures": failures,
        }
        if len(hosts) == 1 and filter is None:
            action = HostJob
            args = {"kind": kind, "host": hosts[0], "packages": packages, "services": services}
        if window is not None:
            at, before = window
            return await self.world.delay(action, start_at=at, start_before=before, by=by, **args)
        return await self.world.trigger(action, by=by, **args)

    async def rerun_failed(self, plan_id: str, *, by: str) -> Plan:
        plan = await self.world.get_plan(plan_id)
        children = await self.world.store.child_plans(plan_id)
        if not children:
            raise InvalidOperation(f"plan {plan_id} is not a fleet job: it has no hosts")
        failed = [
            c.label
            for c in children
            if c.state is PlanState.PAUSED or c.result in (PlanResult.ERROR, PlanResult.CANCELLED)
        ]
        if not failed:
            raise InvalidOperation("no host failed in this job")
        args = dict(plan.args) | {"hosts": failed}
        return await self.world.trigger(FleetJob, by=by, **args)
