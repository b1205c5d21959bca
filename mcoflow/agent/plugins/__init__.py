"""The agents a host can serve, by name."""

from __future__ import annotations

from mcoflow.agent.plugins.base import ActionFailed, Agent, AgentAction, HostContext
from mcoflow.agent.plugins.package import PackageAgent
from mcoflow.agent.plugins.rpcutil import RpcUtilAgent
from mcoflow.agent.plugins.service import ServiceAgent

__all__ = [
    "AGENT_CLASSES",
    "ActionFailed",
    "Agent",
    "AgentAction",
    "HostContext",
    "PackageAgent",
    "RpcUtilAgent",
    "ServiceAgent",
    "make_agents",
]

AGENT_CLASSES: dict[str, type[Agent]] = {
    cls.name: cls for cls in (RpcUtilAgent, PackageAgent, ServiceAgent)
}


def make_agents(names: tuple[str, ...] | list[str]) -> dict[str, Agent]:
    """Instances of the named agents; rpcutil is always served (discovery needs it)."""
    unknown = [name for name in names if name not in AGENT_CLASSES]
    if unknown:
        raise ValueError(
            f"unknown agents: {', '.join(unknown)} (known: {', '.join(AGENT_CLASSES)})"
        )
    wanted = dict.fromkeys(["rpcutil", *names])
    # rpcutil describes the agents served beside it (itself included)
    agents: dict[str, Agent] = {}
    agents["rpcutil"] = RpcUtilAgent(agents)
    agents.update({name: AGENT_CLASSES[name]() for name in wanted if name != "rpcutil"})
    return agents
