"""The agent daemon on each host, its agents (package, service, rpcutil) and OS providers.

Entry point for the CLI: ``run_agent(AgentConfig.load(path))``.
"""

from __future__ import annotations

from mcoflow.agent.config import AgentConfig, ConfigError
from mcoflow.agent.daemon import AgentDaemon, run_agent

__all__ = ["AgentConfig", "AgentDaemon", "ConfigError", "run_agent"]
