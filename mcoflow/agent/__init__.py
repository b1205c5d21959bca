"""The agent daemon on each host, its plugins (package, service, rpcutil) and OS providers.

Exported by audience: what runs an agent (``run_agent(AgentSettings.load(path))``, as the
``mcoflow agent`` command does), then what embeds a daemon in another process. A plugin's
author starts from ``mcoflow.agent.plugins``.

The daemon and its settings load on first use: the orchestrator reads the agents'
declared interfaces (``mcoflow.agent.interface``) without the daemon's broker and signing
libraries.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mcoflow.agent.daemon import AgentDaemon, run_agent
    from mcoflow.agent.settings import AgentSettings, ConfigError

_HOMES = {
    "run_agent": "mcoflow.agent.daemon",
    "AgentDaemon": "mcoflow.agent.daemon",
    "AgentSettings": "mcoflow.agent.settings",
    "ConfigError": "mcoflow.agent.settings",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


__all__ = [
    # running an agent from its settings file
    "run_agent",
    "AgentSettings",
    "ConfigError",
    # embedding a daemon in another process (the orchestrator's local agent, tests)
    "AgentDaemon",
]
