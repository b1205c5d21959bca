"""OS providers for the package and service agents, and their detection."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

from mcoflow.agent.providers.apt import AptProvider
from mcoflow.agent.providers.base import (
    PackageProvider,
    PackageState,
    PackageStatus,
    ProviderError,
    ServiceProvider,
    ServiceState,
)
from mcoflow.agent.providers.dnf import DnfProvider
from mcoflow.agent.providers.simulated import SimulatedFleet, SimulationSettings
from mcoflow.agent.providers.systemd import SystemdProvider
from mcoflow.agent.providers.sysv import SysVProvider

__all__ = [
    "PackageChoice",
    "PackageProvider",
    "PackageState",
    "PackageStatus",
    "ProviderError",
    "ServiceChoice",
    "ServiceProvider",
    "ServiceState",
    "SimulatedFleet",
    "SimulationSettings",
    "detect_package_provider",
    "detect_service_provider",
    "pid1_is_systemd",
]


class PackageChoice(StrEnum):
    AUTO = "auto"
    APT = "apt"
    DNF = "dnf"
    YUM = "yum"
    SIMULATED = "simulated"
    NONE = "none"


class ServiceChoice(StrEnum):
    AUTO = "auto"
    SYSTEMD = "systemd"
    SYSV = "sysv"
    SIMULATED = "simulated"
    NONE = "none"


Which = Callable[[str], str | None]


def detect_package_provider(
    choice: PackageChoice = PackageChoice.AUTO,
    *,
    which: Which = shutil.which,
    time_limit: float | None = None,
) -> PackageProvider | None:
    """The provider asked for, or the OS's own one for AUTO (None when there is none);
    ``time_limit`` per change command, the provider's own default when None."""
    if choice is PackageChoice.SIMULATED:
        raise ValueError("the simulated provider is made per identity from a SimulatedFleet")
    if choice is PackageChoice.APT:
        return AptProvider(time_limit=time_limit)
    if choice in (PackageChoice.DNF, PackageChoice.YUM):
        return DnfProvider(choice.value, time_limit=time_limit)
    if choice is PackageChoice.NONE:
        return None
    if which("dpkg-query") and which("apt-get"):
        return AptProvider(time_limit=time_limit)
    if which("rpm"):
        if which("dnf"):
            return DnfProvider("dnf", time_limit=time_limit)
        if which("yum"):
            return DnfProvider("yum", time_limit=time_limit)
    return None


def pid1_is_systemd(comm: Path = Path("/proc/1/comm")) -> bool:
    try:
        return comm.read_text(encoding="utf-8").strip() == "systemd"
    except OSError:
        return False


def detect_service_provider(
    choice: ServiceChoice = ServiceChoice.AUTO,
    *,
    which: Which = shutil.which,
    pid1_comm: Path = Path("/proc/1/comm"),
    init_dir: Path = Path("/etc/init.d"),
    time_limit: float | None = None,
) -> ServiceProvider | None:
    if choice is ServiceChoice.SIMULATED:
        raise ValueError("the simulated provider is made per identity from a SimulatedFleet")
    if choice is ServiceChoice.SYSTEMD:
        return SystemdProvider(time_limit=time_limit)
    if choice is ServiceChoice.SYSV:
        return SysVProvider(init_dir=init_dir, time_limit=time_limit)
    if choice is ServiceChoice.NONE:
        return None
    # systemctl exists in many containers where systemd is not running: ask PID 1.
    if pid1_is_systemd(pid1_comm) and which("systemctl"):
        return SystemdProvider(time_limit=time_limit)
    if init_dir.is_dir():
        return SysVProvider(init_dir=init_dir, time_limit=time_limit)
    return None
