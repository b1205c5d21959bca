"""Fleet jobs: one of the four actions over many hosts, one sub-plan per host."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

from mcoflow.actions.inventory import (
    INVENTORY_ACTION,
    INVENTORY_AGENT,
    current_inventory,
    expected_hosts,
)
from mcoflow.actions.operations import host_action
from mcoflow.actions.remote import RPC_DESTINATION, event_reply, request_id
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
from mcoflow.engine.action import ActionNotRegistered, registered_action
from mcoflow.engine.child_status import FAILED
from mcoflow.engine.subplans import LazySubPlans
from mcoflow.engine.world import World
from mcoflow.job_request import HostName, JobKind, Name, host_count
from mcoflow.rpc.filters import Filter, FilterError
from mcoflow.rpc.messages import Reply
from mcoflow.rpc.targeting import group_names, parse

FILTER_TEXT_MAX = 1024


# the payload of the event that ends a discovery's grace period
GRACE_KEY = "discovery_grace"


class Discover(Action):
    """Broadcast ``rpcutil.inventory`` with a filter; the hosts that answer in time.

    The replies carry each host's facts, classes and agents into the host inventory (the
    reply router records them). It ends when the timeout passes, or earlier: once every
    host the inventory expects for this filter has answered, plus ``grace`` seconds for
    hosts it does not know yet. With nothing expected it waits the whole timeout."""

    name = "mcoflow.discover"
    idempotent = True
    weight = 0.0  # a fleet's progress is by hosts: finding them is no part of it

    class Input(BaseModel):
        filter: dict[str, Any] = Field(default_factory=dict)
        filter_text: str | None = Field(None, max_length=FILTER_TEXT_MAX)
        timeout: float = Field(2.0, gt=0, le=600)
        grace: float = Field(0.25, ge=0, le=60)

        @field_validator("filter")
        @classmethod
        def _filter_ok(cls, value: dict[str, Any]) -> dict[str, Any]:
            return _valid_filter(value) or {}

        @model_validator(mode="after")
        def _text_ok(self) -> Discover.Input:
            return _text_matches(self)  # type: ignore[no-any-return]

    class Output(BaseModel):
        hosts: list[str]

    @classmethod
    def describe(cls, args: Any) -> str:
        shown = filter_label(args.get("filter"), args.get("filter_text"))
        return f"Discover hosts{' matching ' + shown if shown else ''}"

    async def run(self, event: Event | None = None) -> None:
        if event is None:
            await self._broadcast()
        elif event.kind is EventKind.TIMEOUT or event.payload.get(GRACE_KEY):
            self.output["hosts"] = sorted(set(self.data["hosts"]))
            return
        else:
            self._answered(event_reply(event))
        self.suspend()

    async def _broadcast(self) -> None:
        rid = request_id(self.plan_id, self.step_id, 0)
        inventory = current_inventory()
        expected = (
            await expected_hosts(inventory, self.input.filter) if inventory is not None else []
        )
        self.data.update(request_id=rid, hosts=[], expected=expected, grace=False)
        self.send(
            RPC_DESTINATION,
            {
                "id": rid,
                "agent": INVENTORY_AGENT,
                "action": INVENTORY_ACTION,
                "data": {},
                "identities": None,
                "filter": self.input.filter,
                "ttl": self.input.timeout,
            },
        )
        self.schedule_timeout(self.input.timeout)

    def _answered(self, reply: Reply | None) -> None:
        if reply is None or reply.request_id != self.data["request_id"]:
            return
        # any answer counts: the host exists and its agent found the filter matching
        self.data["hosts"].append(reply.sender)
        if self.data.get("grace") or not self.data.get("expected"):
            return
        waiting = self._waiting()
        waiting.discard(reply.sender)
        if not waiting:
            self.data["grace"] = True
            self.schedule_event({GRACE_KEY: True}, after=self.input.grace)

    def _waiting(self) -> set[str]:
        # built once per run (a run gets a whole batch of replies), then kept up to date
        if self._expected_waiting is None:
            self._expected_waiting = set(self.data["expected"]) - set(self.data["hosts"])
        return self._expected_waiting

    _expected_waiting: set[str] | None = None


class FleetJob(WithSubPlans):
    """Run a job on many hosts (named, or found by discovery), one sub-plan per host:
    one of the four (``kind``), or any registered action taking a ``hostname``
    (``host_action`` with ``host_args``, e.g. an agent call or a job template)."""

    name = "mcoflow.fleet"
    noun = "hosts"

    class Input(BaseModel):
        kind: JobKind | None = None
        host_action: str | None = Field(None, max_length=255)
        host_args: dict[str, Any] = Field(default_factory=dict)
        # how the job reads in labels when it is not one of the four
        what: str | None = Field(None, max_length=FILTER_TEXT_MAX)
        hosts: list[HostName] = Field(default_factory=list)
        filter: dict[str, Any] | None = None
        # the filter as the operator wrote it, for labels; `filter` alone is rendered
        filter_text: str | None = Field(None, max_length=FILTER_TEXT_MAX)
        packages: list[Name] = Field(default_factory=list)
        services: list[Name] = Field(default_factory=list)
        concurrency: int | None = Field(None, ge=1)
        batch_size: str | None = None
        batch_sleep: float = Field(0.0, ge=0)
        max_failures: str | None = None
        discovery_timeout: float = Field(2.0, gt=0, le=600)
        timeout: float | None = Field(None, gt=0, le=86400)

        @field_validator("filter")
        @classmethod
        def _filter_ok(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
            return _valid_filter(value)

        @model_validator(mode="after")
        def _text_ok(self) -> FleetJob.Input:
            return _text_matches(self)  # type: ignore[no-any-return]

        @model_validator(mode="after")
        def _one_job(self) -> FleetJob.Input:
            if (self.kind is None) == (self.host_action is None):
                raise ValueError("give either kind or host_action")
            if self.host_action is not None:
                try:
                    registered_action(self.host_action)
                except ActionNotRegistered as exc:
                    raise ValueError(f"host_action: {exc}") from None
            return self

        @field_validator("batch_size", "max_failures", mode="before")
        @classmethod
        def _n_or_pct(cls, value: Any) -> Any:
            if value is not None:
                host_count(str(value), 100)
                return str(value)
            return value

    class Output(BaseModel):
        total: int
        success: int
        failed: int
        cancelled: int

    @classmethod
    def describe(cls, args: Any) -> str:
        where = (
            f"{len(args['hosts'])} hosts"
            if args.get("hosts")
            else f"hosts matching {filter_label(args.get('filter'), args.get('filter_text'))}"
        )
        if not args.get("kind"):
            return f"{args.get('what') or args.get('host_action')} on {where}"
        what = ",".join(args.get("packages") or []) or ""
        if args.get("services"):
            what += (";" if what else "") + ",".join(args["services"])
        return f"{JobKind(args['kind']).value} {what} on {where}"

    def plan(self, **args: Any) -> None:
        spec = self.Input.model_validate(args)
        if spec.hosts:
            self.plan_self(**args)
            return
        with self.sequence():
            found = self.plan_action(
                Discover,
                filter=spec.filter or {},
                filter_text=spec.filter_text,
                timeout=spec.discovery_timeout,
            )
            self.plan_self(**{**args, "hosts": found.output["hosts"]})

    def create_sub_plans(self) -> LazySubPlans:
        spec = self.input
        if spec.host_action is not None:
            action = registered_action(spec.host_action)
            extra = {"timeout": spec.timeout} if spec.timeout else {}

            def call(host: str) -> SubPlan:
                return SubPlan(action, {**spec.host_args, **extra, "hostname": host}, label=host)

            return LazySubPlans(spec.hosts, call)

        def one(host: str) -> SubPlan:
            action, args = host_action(spec.kind, host, spec.packages, spec.services, spec.timeout)
            return SubPlan(action, args, label=host)

        return LazySubPlans(spec.hosts, one)

    def _total(self) -> int:
        return int(self.data.get("total") or len(self.input.hosts))

    def concurrency_limit(self) -> int | None:
        return self.input.concurrency  # type: ignore[no-any-return]

    def batch_size(self) -> int | None:
        return host_count(self.input.batch_size, self._total(), "batch_size")

    def batch_sleep(self) -> float:
        return float(self.input.batch_sleep)

    def max_failures(self) -> int | None:
        return host_count(self.input.max_failures, self._total(), "max_failures")


@dataclass(frozen=True)
class HostOutcome:
    """How one host of a fleet job ended: its child plan (not one host's RPC reply)."""

    host: str
    plan_id: str
    state: PlanState
    result: PlanResult
    duration: float | None
    message: str


HOST_PAGE = 1000


async def host_pages(world: World, plan_id: str) -> AsyncIterator[list[HostOutcome]]:
    """Per-host outcome of a fleet job (one row per child plan), in host order, a page
    at a time: two queries per page, whatever the fleet's size."""
    after: tuple[str, str] | None = None
    while True:
        page = await world.store.child_page(plan_id, limit=HOST_PAGE, after=after)
        if not page.rows:
            return
        yield [
            HostOutcome(r.label, r.plan_id, r.state, r.result, r.duration, r.message)
            for r in page.rows
        ]
        if len(page.rows) < HOST_PAGE:
            return
        after = (page.rows[-1].label, page.rows[-1].plan_id)


async def host_results(world: World, plan_id: str) -> list[HostOutcome]:
    """Every host's outcome of a fleet job, in host order."""
    return [row async for rows in host_pages(world, plan_id) for row in rows]


async def rerun_failed(world: World, plan_id: str, *, by: str = "system") -> Any:
    """A new fleet job with the same parameters for the hosts that did not succeed.
    Raises PlanNotFound, or InvalidOperation when there is nothing to rerun."""
    plan = await world.get_plan(plan_id)
    if plan.action != FleetJob.name:
        raise InvalidOperation(f"plan {plan_id} is not a fleet job")
    # failed or never run; not those still running or that succeeded with a warning
    failed = sorted(set(await world.store.child_labels(plan.id, FAILED)))
    if not failed:
        raise InvalidOperation(f"plan {plan_id} has no failed hosts")
    args = {**plan.args, "hosts": failed, "filter": None, "filter_text": None}
    return await world.trigger(
        FleetJob, label=f"rerun on {len(failed)} failed hosts of {plan.label}", by=by, **args
    )


def filter_json(filter_: Filter | None) -> dict[str, Any]:
    return {} if filter_ is None else filter_.model_dump(mode="json")


def _valid_filter(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """A filter given as JSON (API, Python) is checked here, in the operator's words,
    rather than when discovery sends it."""
    if value is None:
        return None
    try:
        return filter_json(Filter.from_json(value))
    except FilterError as exc:
        raise ValueError(str(exc)) from None


def _text_matches(model: Any) -> Any:
    """``filter_text`` alone gives ``filter``; given both, they must say the same. A
    text naming saved groups (``@web``) is the operator's words for the label only:
    ``Jobs`` expanded it into ``filter`` when the job started (the groups may change
    since, and an action has no store to read them)."""
    if model.filter_text is None:
        return model
    if group_names(model.filter_text):
        if not model.filter:
            raise ValueError(
                "filter_text: names saved groups (@NAME); give the expanded filter too, "
                "or start the job through mcoflow.actions.Jobs"
            )
        return model
    try:
        parsed = parse(model.filter_text)
    except FilterError as exc:
        raise ValueError(f"filter_text: {exc}") from None
    if not model.filter:
        model.filter = filter_json(parsed)
    elif Filter.model_validate(model.filter) != parsed:
        raise ValueError("filter_text: says another filter than filter")
    return model


def filter_label(value: dict[str, Any] | None, text: str | None = None) -> str:
    """How a filter reads in labels: the operator's text, else the filter in the
    command-line grammar (never its JSON)."""
    if text and text.strip():
        return " ".join(text.split())
    if not value:
        return ""
    try:
        return Filter.model_validate(value).to_cli() or "(every host)"
    except ValueError:
        return str(value)
