"""What a package or service provider offers to the agents, independent of the OS."""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from mcoflow.agent.command import CommandRunner, run_command

PACKAGE_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]*")
# Debian versions may carry an epoch and "~"; RPM versions "-release". No spaces, no options.
PACKAGE_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+~:_-]*")
SERVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@:-]*")
MAX_NAME_LENGTH = 255


class ProviderError(Exception):
    """The provider could not do what was asked (the action ran and failed)."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


class PackageState(StrEnum):
    INSTALLED = "installed"
    ABSENT = "absent"
    # Removed but its configuration files are left (dpkg "rc"): purge still changes the host.
    CONFIG_FILES = "config-files"


class ServiceState(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"


@dataclass(frozen=True)
class PackageStatus:
    name: str
    state: PackageState
    version: str | None = None
    arch: str | None = None

    @property
    def installed(self) -> bool:
        return self.state is PackageState.INSTALLED


def check_package_name(name: str) -> str:
    if len(name) > MAX_NAME_LENGTH or PACKAGE_NAME.fullmatch(name) is None:
        raise ProviderError(f"invalid package name {name[:80]!r}")
    return name


def check_package_version(version: str) -> str:
    if len(version) > MAX_NAME_LENGTH or PACKAGE_VERSION.fullmatch(version) is None:
        raise ProviderError(f"invalid package version {version[:80]!r}")
    return version


def check_service_name(name: str) -> str:
    if len(name) > MAX_NAME_LENGTH or SERVICE_NAME.fullmatch(name) is None:
        raise ProviderError(f"invalid service name {name[:80]!r}")
    return name


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise ProviderError(f"{what} needs root: the agent runs as uid {os.geteuid()}")


class CommandProvider:
    """What the providers that run OS commands share: the runner, a time limit per
    command, the root check before a change, and a failed command as a ProviderError."""

    TIME_LIMIT: ClassVar[float] = 120.0

    def __init__(
        self,
        *,
        runner: CommandRunner = run_command,
        time_limit: float | None = None,
        check_root: bool = True,
    ) -> None:
        self._run = runner
        self._time_limit = self.TIME_LIMIT if time_limit is None else time_limit
        self._check_root = check_root

    async def _execute(
        self,
        argv: Sequence[str],
        what: str,
        *,
        tool: str | None,
        env: Mapping[str, str] | None = None,
    ) -> str:
        """Run a change (as root unless told not to check); its output, or ProviderError
        naming ``what`` and the exit code of ``tool``."""
        if self._check_root:
            require_root(what)
        result = await self._run(argv, self._time_limit, env)
        if not result.ok:
            exit_of = "exit" if tool is None else f"{tool} exit"
            raise ProviderError(f"{what} failed ({exit_of} {result.returncode})", result.output)
        return result.output


class PackageProvider(ABC):
    name: str

    @abstractmethod
    async def status(self, package: str) -> PackageStatus: ...

    @abstractmethod
    async def install(self, package: str, version: str | None) -> str:
        """Install (or move to) the package version; return the command output."""

    @abstractmethod
    async def uninstall(self, package: str) -> str: ...

    @abstractmethod
    async def purge(self, package: str) -> str: ...

    @abstractmethod
    async def update(self, package: str) -> str:
        """Upgrade an installed package to the newest version available."""


class ServiceProvider(ABC):
    name: str

    @abstractmethod
    async def status(self, service: str) -> ServiceState: ...

    @abstractmethod
    async def start(self, service: str) -> str: ...

    @abstractmethod
    async def stop(self, service: str) -> str: ...

    @abstractmethod
    async def restart(self, service: str) -> str: ...


class CommandServiceProvider(CommandProvider, ServiceProvider):
    """A service provider whose changes are one command each, built by ``_argv``."""

    TOOL: ClassVar[str | None] = None  # named in a failure's exit code

    @abstractmethod
    def _argv(self, service: str, action: str) -> tuple[str, ...]:
        """The command for ``action``; validates ``service`` first."""

    async def start(self, service: str) -> str:
        return await self._change(service, "start")

    async def stop(self, service: str) -> str:
        return await self._change(service, "stop")

    async def restart(self, service: str) -> str:
        return await self._change(service, "restart")

    async def _change(self, service: str, action: str) -> str:
        argv = self._argv(service, action)
        return await self._execute(argv, f"{action} {service}", tool=self.TOOL)
