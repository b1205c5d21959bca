"""The operator's actions and the bridge between the engine and the broker."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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
