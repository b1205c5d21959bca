"""Agent calls to hosts that cannot describe their agents (MCollective nodes: their
rpcutil has no ``agent_interfaces``).

The package, service and rpcutil agents have the interfaces of mcoflow's own agents of
those names (mcoflow's match the MCollective agents': same actions, same inputs), so their
inputs are checked here as for mcoflow's hosts. Any other agent or action is called with
the inputs as given (text from the command line or the form, JSON values from the API):
the node checks them against its DDL, and its refusal (statuscode 4) is the step's error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from typing import Any

from mcoflow.actions.agent_interfaces import INPUTS, ActionSpec, AgentSpec
from mcoflow.agent.plugins import AGENT_CLASSES, make_agents
from mcoflow.job_request import JobInputError

# a Ruby Symbol the node's DDL can name
_INPUT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


@cache
def own_agents() -> Mapping[str, AgentSpec]:
    """mcoflow's own agents' interfaces, by agent (what a host of its own would send)."""
    agents = make_agents(list(AGENT_CLASSES))
    return {n: AgentSpec.from_description(n, a.describe()) for n, a in agents.items()}


def own_action(agent: str, action: str) -> ActionSpec | None:
    """mcoflow's interface of ``agent.action``; None when mcoflow has no such action."""
    spec = own_agents().get(agent)
    return spec.actions.get(action) if spec is not None else None


def undeclared_inputs(values: Mapping[str, Any]) -> dict[str, Any]:
    """Inputs for an action no interface is known of: as given, names checked only."""
    for key in values:
        if not _INPUT_NAME.match(key):
            raise JobInputError(f"{INPUTS}.{key}", "is not an input name (letters, digits, _)")
    return dict(values)
