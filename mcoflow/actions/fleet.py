"""Fleet jobs: one of the four actions over many hosts, one sub-plan per host."""

from __future__ import annotations

import enum
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field, field_validator

from mcoflow.actions.operations import (
    HostName,
    Install,
    InstallAndRestart,
    InstallPackages,
    Name,
    Restart,
    RestartServices,
    Uninstall,
    UninstallPackages,
)
from mcoflow.actions.remote import REPLY_KEY, RPC_DESTINATION, request_id
from mcoflow.engine import (
    Action,
    Event,
    EventKind,
    InvalidOperation,
    PlanResult,
    PlanState,
    SubPlan,
    WithSubPlans,
)
from mcoflow.engine.world import World
from mcoflow.rpc.filters import Filter


class JobKind(enum.StrEnum):
    INSTALL = "install"
    UNINSTALL = "uninstall"
    RESTART = "restart"
    INSTALL_AND_RESTART = "install-and-restart"


def _count(value: str | None, total: int, what: str) -> int | None:
    """``n`` or ``n%`` of ``total`` (at least 1)."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    try:
        if text.endswith("%"):
            pct = float(text[:-1])
            if not 0 < pct <= 100:
                raise ValueError
            return max(1, math.ceil(total * pct / 100))
        n = int(text)
        if n < 1:
            raise ValueError
        return n
    except ValueError:
        raise ValueError(
            f"{what}: expected a whole number ≥ 1 or a percentage, got {value!r}"
        ) from None


class Discover(Action):
    """Broadcast ``rpcutil.ping`` with a filter; the hosts that answer in time."""

    name = "mcoflow.discover"
    idempotent = True

    class Input(BaseModel):
        filter: dict[str, Any] = Field(default_factory=dict)
        timeout: float = Field(2.0, gt=0, le=600)

    class Output(BaseModel):
        hosts: list[str]

    @classmethod
    def describe(cls, args: Any) -> str:
        return f"Discover hosts{' matching ' + str(args['filter']) if args.get('filter') else ''}"

    def run(self, event: Event | None = None) -> None:
        if event is None:
            rid = request_id(self.plan_id, self.step_id, 0)
            self.data.update(request_id=rid, hosts=[])
            self.send(
                RPC_DESTINATION,
                {
                    "id": rid,
                    "agent": "rpcutil",
                    "action": "ping",
                    "data": {},
                    "identities": None,
                    "filter": self.input.filter,
                    "ttl": self.input.timeout,
                },
            )
            self.schedule_timeout(self.input.timeout)
            self.suspend()
            return
        if event.kind is EventKind.TIMEOUT:
            self.output["hosts"] = sorted(set(self.data["hosts"]))
            return
        reply = event.payload.get(REPLY_KEY)
        ours = isinstance(reply, dict) and reply.get("request_id") == self.data["request_id"]
        if ours and reply.get("statuscode") == 0:  # type: ignore[union-attr]
            self.data["hosts"].append(reply["sender"])  # type: ignore[index]
        self.suspend()


class FleetJob(WithSubPlans):
    """Run one of the four actions on many hosts (named, or found by discovery)."""

    name = "mcoflow.fleet"

    class Input(BaseModel):
        kind: JobKind
        hosts: list[HostName] = Field(default_factory=list)
        filter: dict[str, Any] | None = None
        packages: list[Name] = Field(default_factory=list)
        services: list[Name] = Field(default_factory=list)
        concurrency: int | None = Field(None, ge=1)
        batch_size: str | None = None
        batch_sleep: float = Field(0.0, ge=0)
        max_failures: str | None = None
        discovery_timeout: float = Field(2.0, gt=0, le=600)
        timeout: float | None = Field(None, gt=0, le=86400)

        @field_validator("batch_size", "max_failures", mode="before")
        @classmethod
        def _n_or_pct(cls, value: Any) -> Any:
            if value is not None:
                _count(str(value), 100, "value")
                return str(value)
            return value

    class Output(BaseModel):
        total: int
        success: int
        failed: int
        cancelled: int

    @classmethod
    def describe(cls, args: Any) -> str:
        what = ",".join(args.get("packages") or []) or ""
        if args.get("services"):
            what += (";" if what else "") + ",".join(args["services"])
        where = (
            f"{len(args['hosts'])} hosts"
            if args.get("hosts")
            else f"hosts matching {args.get('filter')}"
        )
        return f"{JobKind(args['kind']).value} {what} on {where}"

    def plan(self, **args: Any) -> None:
        spec = self.Input.model_validate(args)
        if spec.hosts:
            self.plan_self(**args)
            return
        with self.sequence():
            found = self.plan_action(
                Discover, filter=spec.filter or {}, timeout=spec.discovery_timeout
            )
            self.plan_self(**{**args, "hosts": found.output["hosts"]})

    def create_sub_plans(self) -> Iterator[SubPlan]:
        spec = self.input
        for host in spec.hosts:
            action, args = host_action(spec.kind, host, spec.packages, spec.services, spec.timeout)
            yield SubPlan(action, args, label=host)

    def _total(self) -> int:
        return int(self.data.get("total") or len(self.input.hosts))

    def concurrency_limit(self) -> int | None:
        return self.input.concurrency  # type: ignore[no-any-return]

    def batch_size(self) -> int | None:
        return _count(self.input.batch_size, self._total(), "batch_size")

    def batch_sleep(self) -> float:
        return float(self.input.batch_sleep)

    def max_failures(self) -> int | None:
        return _count(self.input.max_failures, self._total(), "max_failures")


def host_action(
    kind: JobKind, host: str, packages: list[str], services: list[str], timeout: float | None
) -> tuple[type[Action], dict[str, Any]]:
    """The action and arguments that do ``kind`` on one host."""
    extra: dict[str, Any] = {"timeout": timeout} if timeout else {}
    if kind is JobKind.INSTALL_AND_RESTART:
        return InstallAndRestart, {
            "hostname": host,
            "packages": packages,
            "services": services,
            **extra,
        }
    if kind is JobKind.RESTART:
        if len(services) == 1:
            return Restart, {"hostname": host, "service": services[0], **extra}
        return RestartServices, {"hostname": host, "names": services, **extra}
    single, many = (
        (Install, InstallPackages) if kind is JobKind.INSTALL else (Uninstall, UninstallPackages)
    )
    if len(packages) == 1:
        return single, {"hostname": host, "package": packages[0], **extra}
    return many, {"hostname": host, "names": packages, **extra}


@dataclass(frozen=True)
class HostResult:
    host: str
    plan_id: str
    state: PlanState
    result: PlanResult
    duration: float | None
    message: str


async def host_results(world: World, plan_id: str) -> list[HostResult]:
    """Per-host outcome of a fleet job (one row per child plan)."""
    out = []
    for child in await world.store.child_plans(plan_id):
        message = child.error or ""
        if child.result not in (PlanResult.SUCCESS, PlanResult.PENDING) and not message:
            failed = [s for s in await world.steps(child.id) if s.error]
            message = failed[0].error.get("message", "") if failed and failed[0].error else ""
        out.append(
            HostResult(child.label, child.id, child.state, child.result, child.duration, message)
        )
    return out


async def rerun_failed(world: World, plan_id: str, *, by: str = "system") -> Any:
    """A new fleet job with the same parameters for the hosts that did not succeed.
    Raises PlanNotFound, or InvalidOperation when there is nothing to rerun."""
    plan = await world.get_plan(plan_id)
    if plan.action != FleetJob.name:
        raise InvalidOperation(f"plan {plan_id} is not a fleet job")
    failed = sorted(
        {r.host for r in await host_results(world, plan_id) if r.result is not PlanResult.SUCCESS}
    )
    if not failed:
        raise InvalidOperation(f"plan {plan_id} has no failed hosts")
    args = {**plan.args, "hosts": failed, "filter": None}
    return await world.trigger(
        FleetJob, label=f"rerun on {len(failed)} failed hosts of {plan.label}", by=by, **args
    )


def filter_json(filter_: Filter | None) -> dict[str, Any]:
    return {} if filter_ is None else filter_.model_dump(mode="json")
