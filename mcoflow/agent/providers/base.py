"""What a package or service provider offers to the agents, independent of the OS."""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum

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
