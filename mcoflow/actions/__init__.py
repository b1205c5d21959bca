"""The operator's actions and the bridge between the engine and the broker.

Exported by audience: what an action that calls the hosts' agents is built on, then the
operator's actions themselves, then what starts and follows jobs (the command line, the
web's ``JobsPort``), then the bridge a process wires between its executor and the broker.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mcoflow.actions.agent_call import AgentCall
from mcoflow.actions.agent_calls import AgentCalls, ReadOnlyAgentCall
from mcoflow.actions.fleet import (
    Discover,
    FleetJob,
    HostOutcome,
    host_results,
    rerun_failed,
)
from mcoflow.actions.jobs import Jobs, parse_filter, parse_hosts, parse_job_parameter
from mcoflow.actions.operations import (
    Install,
    InstallAndRestart,
    InstallPackages,
    Restart,
    RestartServices,
    Uninstall,
    UninstallPackages,
    host_action,
)
from mcoflow.actions.parameters import Parameter, parse_parameter
from mcoflow.actions.remote import NoResponseError, RemoteAction, RemoteError
from mcoflow.job_request import JobInputError, JobKind, JobRequest

if TYPE_CHECKING:
    from mcoflow.actions.bridge import LostRequests, ReplyRouter, RpcPublisher


def __getattr__(name: str) -> Any:
    """The bridge on first use: it needs the RPC client and its signing, which a process
    that only triggers and reads plans (the command line) does not load."""
    if name not in {"LostRequests", "ReplyRouter", "RpcPublisher"}:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module("mcoflow.actions.bridge"), name)
    globals()[name] = value
    return value


__all__ = [
    # writing an action that calls the hosts' agents
    "RemoteAction",
    "RemoteError",
    "NoResponseError",
    # the operator's actions, on one host or a fleet, and their parameter
    "Install",
    "Uninstall",
    "Restart",
    "InstallAndRestart",
    "InstallPackages",
    "UninstallPackages",
    "RestartServices",
    "AgentCall",
    "ReadOnlyAgentCall",
    "AgentCalls",
    "FleetJob",
    "Discover",
    "host_action",
    "Parameter",
    "parse_parameter",
    # starting and following jobs
    "Jobs",
    "JobRequest",
    "JobKind",
    "JobInputError",
    "host_results",
    "HostOutcome",
    "rerun_failed",
    "parse_hosts",
    "parse_filter",
    "parse_job_parameter",
    # the bridge between an executor and the broker (imported on first use)
    "LostRequests",
    "ReplyRouter",
    "RpcPublisher",
]
