"""Fedora/RHEL packages: rpm for status, dnf (or yum) for changes."""

from __future__ import annotations

from collections.abc import Sequence

from mcoflow.agent.command import CommandRunner, run_command
from mcoflow.agent.providers.base import (
    CommandProvider,
    PackageProvider,
    PackageState,
    PackageStatus,
    ProviderError,
    check_package_name,
    check_package_version,
)

RPM_FORMAT = "%{EPOCHNUM}:%{VERSION}-%{RELEASE}\t%{ARCH}\n"


class DnfProvider(CommandProvider, PackageProvider):
    """dnf and yum take the same arguments for what the agent does; `tool` picks one."""

    TIME_LIMIT = 900.0

    def __init__(
        self,
        tool: str = "dnf",
        *,
        runner: CommandRunner = run_command,
        time_limit: float | None = None,
        check_root: bool = True,
    ) -> None:
        if tool not in ("dnf", "yum"):
            raise ValueError(f"unknown rpm package tool {tool!r}")
        super().__init__(runner=runner, time_limit=time_limit, check_root=check_root)
        self.name = tool

    async def status(self, package: str) -> PackageStatus:
        check_package_name(package)
        result = await self._run(("rpm", "-q", "--qf", RPM_FORMAT, "--", package), 60.0, None)
        if result.returncode == 1 and "is not installed" in result.stdout + result.stderr:
            return PackageStatus(package, PackageState.ABSENT)
        if not result.ok:
            raise ProviderError(f"rpm -q failed for {package}", result.output)
        line = result.stdout.splitlines()[0] if result.stdout else ""
        version, _, arch = line.partition("\t")
        if version.startswith("0:"):
            version = version[2:]
        return PackageStatus(package, PackageState.INSTALLED, version or None, arch or None)

    async def install(self, package: str, version: str | None) -> str:
        check_package_name(package)
        target = package if version is None else f"{package}-{check_package_version(version)}"
        return await self._tool(("install", "--", target), f"install {package}")

    async def uninstall(self, package: str) -> str:
        check_package_name(package)
        return await self._tool(("remove", "--", package), f"uninstall {package}")

    async def purge(self, package: str) -> str:
        # rpm has no separate configuration state: purge is a remove.
        return await self.uninstall(package)

    async def update(self, package: str) -> str:
        check_package_name(package)
        return await self._tool(("upgrade", "--", package), f"update {package}")

    async def _tool(self, args: Sequence[str], what: str) -> str:
        return await self._execute((self.name, "-y", "-q", *args), what, tool=self.name)
