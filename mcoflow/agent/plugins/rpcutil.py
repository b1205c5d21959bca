"""The rpcutil agent: ping (discovery), inventory, get_fact, agent_interfaces (the
declared interfaces of the host's agents, as MCollective's DDL: what `mcoflow rpc` and
job templates check inputs against before sending)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from mcoflow.agent.facts import mcoflow_version
from mcoflow.agent.interface import ActionInterface, FieldType, InputSpec, OutputSpec
from mcoflow.agent.plugins.base import ActionFailed, Agent, AgentAction, HostContext, text_input

FACT_INPUT = InputSpec("fact", pattern=r"[A-Za-z0-9_][A-Za-z0-9_.:-]*", max_length=255)
AGENT_INPUT = InputSpec(
    "agent",
    required=False,
    pattern=r"[a-z][a-z0-9_]*",
    max_length=64,
    description="only this agent's interface; all of the host's agents when absent",
)


class RpcUtilAgent(Agent):
    name = "rpcutil"
    description = "Discovery and host inventory"

    def __init__(self, peers: Mapping[str, Agent] | None = None) -> None:
        """``peers``: the agents served beside this one, by name (make_agents gives them
        all); without them it describes itself only."""
        super().__init__()
        self.peers: Mapping[str, Agent] = peers if peers is not None else {self.name: self}

    def declare(self) -> Mapping[str, AgentAction]:
        return {
            "ping": AgentAction(
                ActionInterface(
                    "ping",
                    "answer with the host's time",
                    outputs=(OutputSpec("pong", FieldType.NUMBER),),
                    idempotent=True,
                ),
                self.ping,
                read_only=True,
            ),
            "inventory": AgentAction(
                ActionInterface(
                    "inventory",
                    "agents, facts, classes and version of the host",
                    outputs=(
                        OutputSpec("agents", FieldType.LIST, default=[]),
                        OutputSpec("facts", FieldType.DICT, default={}),
                        OutputSpec("classes", FieldType.LIST, default=[]),
                        OutputSpec("version", default=""),
                        OutputSpec("collective", default=""),
                    ),
                    idempotent=True,
                ),
                self.inventory,
                read_only=True,
            ),
            "get_fact": AgentAction(
                ActionInterface(
                    "get_fact",
                    "the value of one fact (null when the host lacks it)",
                    inputs=(FACT_INPUT,),
                    outputs=(OutputSpec("fact"), OutputSpec("value", default=None)),
                    idempotent=True,
                ),
                self.get_fact,
                read_only=True,
            ),
            "agent_interfaces": AgentAction(
                ActionInterface(
                    "agent_interfaces",
                    "the declared interfaces of the host's agents: actions, inputs, outputs",
                    inputs=(AGENT_INPUT,),
                    outputs=(OutputSpec("agents", FieldType.DICT, default={}),),
                    idempotent=True,
                ),
                self.agent_interfaces,
                read_only=True,
            ),
        }

    async def ping(self, host: HostContext, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"pong": time.time()}

    async def inventory(self, host: HostContext, inputs: dict[str, Any]) -> dict[str, Any]:
        return {
            "agents": list(host.agents),
            "facts": dict(host.facts),
            "classes": list(host.classes),
            "version": mcoflow_version(),
            "collective": host.collective,
        }

    async def get_fact(self, host: HostContext, inputs: dict[str, Any]) -> dict[str, Any]:
        fact = text_input(inputs, "fact")
        return {"fact": fact, "value": host.facts.get(fact)}

    async def agent_interfaces(self, host: HostContext, inputs: dict[str, Any]) -> dict[str, Any]:
        wanted = inputs.get("agent")
        names = [n for n in host.agents if n in self.peers and wanted in (None, n)]
        if wanted is not None and not names:
            raise ActionFailed(f"{host.identity} serves no agent {wanted}")
        return {"agents": {name: self.peers[name].describe() for name in names}}
