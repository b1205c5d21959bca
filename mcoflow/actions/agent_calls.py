"""Any agent action on hosts, as `mcoflow rpc`, the "Run an action" page and
``POST /api/v1/rpc`` ask for it: the action's declared interface (cached, fetched from a
host when not known), the inputs checked against it before anything is sent, one
durable step per host, and each host's reply.

A read-only action (one that changes nothing) runs as ``ReadOnlyAgentCall``: each time
it sends, it sends a fresh request, and when a host does not answer it asks again
(``retries``) before failing; asking twice is harmless. Any other action runs as
``AgentCall``: a resend keeps its request id, so the host answers it from its journal
rather than acting twice.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from mcoflow.actions.agent_call import AgentCall
from mcoflow.actions.agent_interfaces import (
    ActionSpec,
    AgentSpec,
    InterfaceFormatError,
    check_inputs,
    find_action,
)
from mcoflow.actions.fleet import FleetJob, host_results
from mcoflow.actions.inventory import matching_hosts
from mcoflow.actions.jobs import Jobs
from mcoflow.actions.undescribed import own_action, own_agents, undeclared_inputs
from mcoflow.engine import Event, EventKind, Plan, PlanResult, PlanState
from mcoflow.engine.child_status import status_of
from mcoflow.engine.store.interfaces import AgentInterfaceRecord, CallStep
from mcoflow.job_request import JobInputError, parse_hosts
from mcoflow.rpc.messages import StatusCode

INTERFACES_AGENT, INTERFACES_ACTION = "rpcutil", "agent_interfaces"
FETCH_TIMEOUT = 10.0


class ReadOnlyAgentCall(AgentCall):
    """An agent call that changes nothing on the host: a fresh request id on every send
    (the host keeps no journal of read-only requests, so an id it saw gets no answer),
    and up to ``retries`` more requests when the host does not answer in time."""

    name = "mcoflow.agent_call.read_only"

    class Input(AgentCall.Input):
        retries: int = Field(2, ge=0, le=10)

    def run(self, event: Event | None = None) -> None:
        if event is None:
            self._fresh_request()
            return
        current = event.payload.get("request_id") == self.data.get("request_id")
        if event.kind is EventKind.TIMEOUT and current:
            asked = int(self.data.get("retried", 0))
            if asked < self.input.retries:
                self.data["retried"] = asked + 1
                self._fresh_request()
                return
        super().run(event)

    def _fresh_request(self) -> None:
        # RemoteAction moves to the next attempt (a new id) when told the host answered
        self.data["answered"] = "attempt" in self.data
        super().run(None)


CALL_ACTIONS = (AgentCall.name, ReadOnlyAgentCall.name)


class InterfacesUnavailable(RuntimeError):
    """The interfaces could not be fetched: no executor runs, no host is known to serve
    the agent (NoHostToAsk), or the host did not answer."""


class NoHostToAsk(InterfacesUnavailable):
    """No host of the inventory to ask for its agents' interfaces (discover first)."""


class CannotDescribe(InterfacesUnavailable):
    """The host has no ``rpcutil.agent_interfaces`` (an MCollective node)."""


@dataclass(frozen=True)
class CallResult:
    """One host's outcome of an agent call: its plan's state and result, the reply's data
    (the declared outputs) and, when it failed, why."""

    host: str
    plan_id: str
    state: PlanState
    result: PlanResult
    message: str
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return status_of(self.state, self.result).value

    @property
    def failed(self) -> bool:
        return self.status != "success" and self.status != "warning"

    def as_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "plan_id": self.plan_id,
            "state": self.state.value,
            "result": self.result.value,
            "status": self.status,
            "message": self.message,
            "data": dict(self.data),
        }


class AgentCalls:
    """Agent actions on hosts, for the command line, the web page and the API."""

    def __init__(self, jobs: Jobs, *, fetch_timeout: float = FETCH_TIMEOUT) -> None:
        self.jobs = jobs
        self.world = jobs.world
        self.fetch_timeout = fetch_timeout

    # ---- interfaces ---------------------------------------------------------------

    async def known(self) -> dict[str, AgentSpec]:
        """The cached interfaces by agent (those that read back malformed are left out);
        where the hosts cannot describe their agents, mcoflow's own package, service and
        rpcutil interfaces stand in for theirs."""
        agents = {} if self.jobs.transport.describes_agents else dict(own_agents())
        for record in await self.world.store.list_agent_interfaces():
            try:
                agents[record.agent] = AgentSpec.from_description(record.agent, record.interface)
            except InterfaceFormatError:
                continue
        return agents

    async def cached_records(self) -> list[AgentInterfaceRecord]:
        records: list[AgentInterfaceRecord] = await self.world.store.list_agent_interfaces()
        return records

    async def fetch(self, host: str | None = None, *, by: str = "system") -> dict[str, AgentSpec]:
        """Ask ``host`` (else a host of the inventory) for its agents' interfaces, through
        a plan, and cache them. InterfacesUnavailable when that cannot be done."""
        if not self.jobs.transport.describes_agents:
            raise CannotDescribe(
                "MCollective nodes cannot describe their agents (their rpcutil has no "
                "agent_interfaces): the package, service and rpcutil actions are checked "
                "against mcoflow's own interfaces, any other action by the nodes' DDL"
            )
        if host is None:
            host = await self._serving_host(None, [], None)
        if not await self.world.executors():
            raise InterfacesUnavailable(
                "no executor is running to ask a host for its agents' interfaces: "
                "start `mcoflow serve`"
            )
        plan = await self.jobs.start_on_hosts(
            ReadOnlyAgentCall,
            {"agent": INTERFACES_AGENT, "action": INTERFACES_ACTION, "retries": 0},
            hosts=[host],
            timeout=self.fetch_timeout,
            by=by,
        )
        done = await self.world.wait(plan.id, timeout=self.fetch_timeout + 30)
        steps = await self.world.store.call_steps(plan.id, CALL_ACTIONS)
        reply = steps[0].output if steps else None
        if done.result is not PlanResult.SUCCESS or not isinstance(reply, Mapping):
            if done.state is PlanState.PAUSED:
                await self.world.cancel(plan.id, by=by)  # nothing for an operator to resume
            why = (steps[0].error or {}).get("message") if steps else None
            unavailable = CannotDescribe if _unknown_action(steps) else InterfacesUnavailable
            raise unavailable(
                f"{host} did not send its agents' interfaces: {why or done.error or 'no reply'}"
            )
        return await self._cache(host, reply.get("agents"))

    async def _cache(self, host: str, described: Any) -> dict[str, AgentSpec]:
        if not isinstance(described, Mapping):
            raise InterfacesUnavailable(f"{host} sent no interfaces")
        agents: dict[str, AgentSpec] = {}
        for name, data in described.items():
            try:
                agents[str(name)] = AgentSpec.from_description(str(name), data)
            except InterfaceFormatError:
                continue  # one agent's odd interface does not hide the others
        now = time.time()
        await self.world.store.save_agent_interfaces(
            [AgentInterfaceRecord(n, a.version, a.describe(), host, now) for n, a in agents.items()]
        )
        return agents

    async def _serving_host(self, agent: str | None, names: list[str], flt: Any) -> str:
        """The host to ask for interfaces: the first one named, else the first one the
        filter selects in the inventory (serving ``agent`` when it says), else any."""
        if names:
            return names[0]
        hosts = await matching_hosts(self.world.store, flt)
        if flt is not None and not hosts:
            hosts = await matching_hosts(self.world.store, None)
        serving = [h for h in hosts if agent is None or agent in h.agents]
        chosen = serving or hosts
        if not chosen:
            raise NoHostToAsk(
                "no host is known to ask for its agents' interfaces: run `mcoflow discover`"
            )
        return chosen[0].identity

    async def action_spec(
        self,
        agent: str,
        action: str,
        *,
        hosts: Sequence[str] = (),
        filter: str | None = None,
        by: str = "system",
    ) -> ActionSpec | None:
        """The declared action from the cache; fetched from a target host when the
        agent or the action is not cached (the cache may be older than the agents).
        Where the hosts cannot describe their agents (MCollective nodes): mcoflow's own
        interface of the action, else None (the node checks the inputs itself)."""
        known = await self.known()
        with contextlib.suppress(JobInputError):  # not cached: ask a host below
            return find_action(known, agent, action)
        if not self.jobs.transport.describes_agents:
            return own_action(agent, action)
        names = parse_hosts(hosts)
        host = await self._serving_host(agent, names, await self.jobs.parse_filter(filter))
        try:
            fetched = await self.fetch(host, by=by)
        except CannotDescribe:
            return own_action(agent, action)
        return find_action(fetched, agent, action)

    # ---- calls --------------------------------------------------------------------

    async def start(
        self,
        agent: str,
        action: str,
        inputs: Mapping[str, Any],
        *,
        as_text: bool,
        hosts: Sequence[str] = (),
        filter: str | None = None,
        concurrency: int | None = None,
        batch_size: str | None = None,
        max_failures: str | None = None,
        timeout: float | None = None,
        by: str = "system",
    ) -> Plan:
        """Check the inputs against the declared interface, then start one durable step
        per host. JobInputError for what the operator must fix (``agent``, ``action``,
        ``inputs.NAME``, ``hosts``, ...); InterfacesUnavailable when the interface is not
        cached and cannot be fetched."""
        names = parse_hosts(hosts)
        if not names and not (filter or "").strip():
            raise JobInputError("hosts", "name at least one host, or give a filter")
        if names and (filter or "").strip():
            raise JobInputError("filter", "give host names or a filter, not both")
        await self.jobs.target_filter(filter)  # a bad filter is the operator's to fix first
        spec = await self.action_spec(agent, action, hosts=names, filter=filter, by=by)
        if spec is None:
            # nothing known of the action: it may change the host, so no read-only retries
            data, call, what = undeclared_inputs(inputs), AgentCall, f"{agent}.{action}"
        else:
            data = check_inputs(spec, inputs, as_text=as_text)
            call = ReadOnlyAgentCall if spec.read_only else AgentCall
            what = spec.full_name
        return await self.jobs.start_on_hosts(
            call,
            {"agent": agent, "action": action, "data": data},
            hosts=names,
            filter=filter,
            concurrency=concurrency,
            batch_size=batch_size,
            max_failures=max_failures,
            timeout=timeout,
            what=what,
            by=by,
        )

    async def results(self, plan_id: str) -> list[CallResult]:
        """Each host's outcome and reply, in host order (one row for a one-host call)."""
        plan = await self.world.get_plan(plan_id)
        steps = {s.plan_id: s for s in await self.world.store.call_steps(plan_id, CALL_ACTIONS)}
        if plan.action != FleetJob.name:
            step = steps.get(plan_id)
            host = str((step.input if step else {}).get("hostname") or plan.args.get("hostname"))
            error = (step.error or {}).get("message") if step else None
            data = _reply_data(step)
            return [
                CallResult(host, plan.id, plan.state, plan.result, error or plan.error or "", data)
            ]
        rows = []
        for outcome in await host_results(self.world, plan_id):
            data = _reply_data(steps.get(outcome.plan_id))
            rows.append(
                CallResult(
                    outcome.host,
                    outcome.plan_id,
                    outcome.state,
                    outcome.result,
                    outcome.message,
                    data,
                )
            )
        return rows


def _unknown_action(steps: list[CallStep]) -> bool:
    """The host does not know the action: "unknown action", or (asked with no inputs, so
    none can be wrong) "invalid data", which MCollective answers for an action its DDL
    does not declare."""
    reply = (steps[0].data or {}).get("reply") if steps else None
    code = reply.get("statuscode") if isinstance(reply, Mapping) else None
    return code in (StatusCode.UNKNOWN_ACTION, StatusCode.INVALID_DATA)


def _reply_data(step: CallStep | None) -> Mapping[str, Any]:
    """The step's output; for a failed call, the outputs the host's refusal carried."""
    if step is None:
        return {}
    if step.output:
        return step.output
    reply = (step.data or {}).get("reply")
    data = reply.get("data") if isinstance(reply, Mapping) else None
    return data if isinstance(data, Mapping) else {}
