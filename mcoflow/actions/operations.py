"""The operator's four actions (DESIGN §6): Install, Uninstall, Restart,
InstallAndRestart on one host, and ``host_action``: which of them does a job there."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from mcoflow.actions.remote import RemoteAction
from mcoflow.engine import Action
from mcoflow.job_request import HostName, JobKind, Name
from mcoflow.rpc.messages import Reply, StatusCode

# The answers of MCollective's package agent (mcollective-package-agent) when it finds
# nothing to do: it raises them, which MCollective answers with status 5 (1 where wrapped)
NOTHING_TO_DO = frozenset({"Package is already installed", "Package is not present on the system"})
NOTHING_TO_DO_CODES = frozenset({StatusCode.ABORTED, StatusCode.UNKNOWN_ERROR})


class PackageOutput(BaseModel):
    ensure: str = ""
    version: str | None = None
    arch: str | None = None
    provider: str | None = None
    changed: bool = False
    output: str = ""


class Install(RemoteAction):
    """Install a package. Output says whether it changed the host."""

    name = "mcoflow.install"
    agent = "package"
    rpc_action = "install"

    class Input(BaseModel):
        hostname: HostName
        package: Name
        version: str | None = Field(None, max_length=255)
        timeout: float | None = Field(None, gt=0, le=86400)

    Output = PackageOutput

    def hostname(self) -> str:
        return str(self.input.hostname)

    @classmethod
    def describe(cls, args: Any) -> str:
        return f"{cls.__name__} {args.get('package')} on {args.get('hostname')}"

    def request_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"package": self.input.package}
        if self.input.version:
            data["version"] = self.input.version
        return data

    def settled_failure(self, reply: Reply) -> dict[str, Any] | None:
        # MCollective's package agent fails what it finds nothing to do for; done here
        message = reply.statusmsg.strip()
        if reply.statuscode in NOTHING_TO_DO_CODES and message in NOTHING_TO_DO:
            return {**reply.data, "changed": False, "unchanged": message}
        return None

    def on_reply(self, data: dict[str, Any]) -> None:
        # MCollective's package agent: nil outputs (its DDL's default) and no "changed",
        # which its success of install/uninstall/update means
        data = {key: value for key, value in data.items() if value is not None}
        data.setdefault("changed", True)
        if data.get("unchanged") and int(self.data.get("sends", 1)) > 1:
            # "nothing to do" after a request sent again, to a host that keeps no journal
            # (MCollective): the earlier send may have been what did it, so count it as a
            # change (a needless restart is harmless; a missed one is not)
            data["changed"] = True
        super().on_reply(data)


class Uninstall(Install):
    name = "mcoflow.uninstall"
    rpc_action = "uninstall"


class ServiceOutput(BaseModel):
    status: str = ""
    changed: bool = False
    restarted: bool = False
    reason: str = ""


class Restart(RemoteAction):
    """Restart a service, only if a referenced install changed the host or if no
    installs were referenced; otherwise finish as "not needed"."""

    name = "mcoflow.restart"
    agent = "service"
    rpc_action = "restart"

    class Input(BaseModel):
        hostname: HostName
        service: Name
        installations: list[dict[str, Any] | None] = Field(default_factory=list)
        timeout: float | None = Field(None, gt=0, le=86400)

    Output = ServiceOutput

    def hostname(self) -> str:
        return str(self.input.hostname)

    @classmethod
    def describe(cls, args: Any) -> str:
        return f"Restart {args.get('service')} on {args.get('hostname')}"

    def request_data(self) -> dict[str, Any]:
        return {"service": self.input.service}

    def skip_remote(self) -> bool:
        installs = [i for i in self.input.installations if i is not None]
        if not installs or any(i.get("changed") for i in installs):
            return False
        self.output.update(
            status="not needed",
            changed=False,
            restarted=False,
            reason="no installation changed the host",
        )
        return True

    def on_reply(self, data: dict[str, Any]) -> None:
        self.output.update(
            status=data.get("status", ""),
            changed=bool(data.get("changed", True)),
            restarted=True,
        )


class InstallAndRestart(Action):
    """Install packages concurrently, then restart services if anything changed."""

    name = "mcoflow.install_and_restart"

    class Input(BaseModel):
        hostname: HostName
        packages: list[Name] = Field(min_length=1)
        services: list[Name] = Field(default_factory=list)
        timeout: float | None = Field(None, gt=0, le=86400)

    def plan(self, **args: Any) -> None:
        spec = self.Input.model_validate(args)
        timeout = {"timeout": spec.timeout} if spec.timeout else {}
        with self.sequence():
            with self.concurrence():
                installs = [
                    self.plan_action(Install, hostname=spec.hostname, package=p, **timeout)
                    for p in spec.packages
                ]
            with self.concurrence():
                for service in spec.services:
                    self.plan_action(
                        Restart,
                        hostname=spec.hostname,
                        service=service,
                        installations=[i.output for i in installs],
                        **timeout,
                    )

    @classmethod
    def describe(cls, args: Any) -> str:
        services = ",".join(args.get("services") or [])
        tail = f";{services}" if services else ""
        return f"Install and restart {','.join(args['packages'])}{tail} on {args['hostname']}"


class _OnHost(Action):
    """Several packages or services on one host, concurrently."""

    abstract = True
    child: type[Action]
    field: str

    class Input(BaseModel):
        hostname: HostName
        names: list[Name] = Field(min_length=1)
        timeout: float | None = Field(None, gt=0, le=86400)

    def plan(self, **args: Any) -> None:
        spec = self.Input.model_validate(args)
        timeout = {"timeout": spec.timeout} if spec.timeout else {}
        with self.concurrence():
            for item in spec.names:
                self.plan_action(
                    self.child, hostname=spec.hostname, **{self.field: item}, **timeout
                )

    @classmethod
    def describe(cls, args: Any) -> str:
        verb = cls.child.__name__
        return f"{verb} {','.join(args['names'])} on {args['hostname']}"


class InstallPackages(_OnHost):
    name = "mcoflow.install_packages"
    child = Install
    field = "package"


class UninstallPackages(_OnHost):
    name = "mcoflow.uninstall_packages"
    child = Uninstall
    field = "package"


class RestartServices(_OnHost):
    name = "mcoflow.restart_services"
    child = Restart
    field = "service"


def host_action(
    kind: JobKind, host: str, packages: list[str], services: list[str], timeout: float | None
) -> tuple[type[Action], dict[str, Any]]:
    """The action and arguments that do ``kind`` on one host."""
    extra: dict[str, Any] = {"timeout": timeout} if timeout else {}
    if kind is JobKind.INSTALL_AND_RESTART:
        return InstallAndRestart, {
            "hostname": host,
            "packages": packages,
            "services": services,
            **extra,
        }
    if kind is JobKind.RESTART:
        if len(services) == 1:
            return Restart, {"hostname": host, "service": services[0], **extra}
        return RestartServices, {"hostname": host, "names": services, **extra}
    single, many = (
        (Install, InstallPackages) if kind is JobKind.INSTALL else (Uninstall, UninstallPackages)
    )
    if len(packages) == 1:
        return single, {"hostname": host, "package": packages[0], **extra}
    return many, {"hostname": host, "names": packages, **extra}
