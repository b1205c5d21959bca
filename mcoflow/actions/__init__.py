"""The operator's actions and the bridge between the engine and the broker."""

from __future__ import annotations

from mcoflow.actions.bridge import LostRequests, ReplyRouter, RpcPublisher
from mcoflow.actions.fleet import (
    Discover,
    FleetJob,
    HostResult,
    JobKind,
    host_action,
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
)
from mcoflow.actions.parameters import JobInputError, Parameter, parse_parameter
from mcoflow.actions.remote import NoResponseError, RemoteAction, RemoteError

__all__ = [
    "Discover",
    "FleetJob",
    "HostResult",
    "Install",
    "InstallAndRestart",
    "InstallPackages",
    "JobInputError",
    "JobKind",
    "Jobs",
    "LostRequests",
    "NoResponseError",
    "Parameter",
    "RemoteAction",
    "RemoteError",
    "ReplyRouter",
    "Restart",
    "RestartServices",
    "RpcPublisher",
    "Uninstall",
    "UninstallPackages",
    "host_action",
    "host_results",
    "parse_filter",
    "parse_hosts",
    "parse_job_parameter",
    "parse_parameter",
    "rerun_failed",
]
