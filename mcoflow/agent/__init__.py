"""The agent daemon on each host, its agents (package, service, rpcutil) and OS providers.

Entry point for the CLI: ``run_agent(AgentSettings.load(path))``.
"""

from __future__ import annotations

from mcoflow.agent.daemon import AgentDaemon, run_agent
from mcoflow.agent.settings import AgentSettings, ConfigError

__all__ = ["AgentDaemon", "AgentSettings", "ConfigError", "run_agent"]
