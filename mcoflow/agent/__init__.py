"""The agent daemon on each host, its plugins (package, service, rpcutil) and OS providers.

Exported by audience: what runs an agent (``run_agent(AgentSettings.load(path))``, as the
``mcoflow agent`` command does), then what embeds a daemon in another process. A plugin's
author starts from ``mcoflow.agent.plugins``.
"""

from __future__ import annotations

from mcoflow.agent.daemon import AgentDaemon, run_agent
from mcoflow.agent.settings import AgentSettings, ConfigError

__all__ = [
    # running an agent from its settings file
    "run_agent",
    "AgentSettings",
    "ConfigError",
    # embedding a daemon in another process (the orchestrator's local agent, tests)
    "AgentDaemon",
]
