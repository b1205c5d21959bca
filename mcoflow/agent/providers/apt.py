"""Debian/Ubuntu packages: dpkg-query for status, apt-get for changes."""

from __future__ import annotations

from collections.abc import Sequence

from mcoflow.agent.providers.base import (
    CommandProvider,
    PackageProvider,
    PackageState,
    PackageStatus,
    ProviderError,
    check_package_name,
    check_package_version,
)

APT_ENV = {"DEBIAN_FRONTEND": "noninteractive", "APT_LISTCHANGES_FRONTEND": "none"}
APT_GET = (
    "apt-get",
    "-y",
    "-q",
    "-o",
    "DPkg::Lock::Timeout=120",
    # Never stop on a configuration-file question: keep the host's files.
    "-o",
    "Dpkg::Options::=--force-confdef",
    "-o",
    "Dpkg::Options::=--force-confold",
)
STATUS_FORMAT = "${db:Status-Abbrev}\t${Version}\t${Architecture}\n"


class AptProvider(CommandProvider, PackageProvider):
    name = "apt"
    TIME_LIMIT = 900.0

    async def status(self, package: str) -> PackageStatus:
        check_package_name(package)
        result = await self._run(
            ("dpkg-query", "-W", "-f", STATUS_FORMAT, "--", package), 60.0, None
        )
        if result.returncode == 1 and "no packages found" in result.stderr:
            return PackageStatus(package, PackageState.ABSENT)
        if not result.ok:
            raise ProviderError(f"dpkg-query failed for {package}", result.output)
        return parse_dpkg_status(package, result.stdout)

    async def install(self, package: str, version: str | None) -> str:
        check_package_name(package)
        if version is None:
            return await self._apt(("install", "--", package), f"install {package}")
        # An exact version may be older than the installed one: that is what was asked.
        target = f"{package}={check_package_version(version)}"
        return await self._apt(
            ("install", "--allow-downgrades", "--", target), f"install {package}"
        )

    async def uninstall(self, package: str) -> str:
        check_package_name(package)
        return await self._apt(("remove", "--", package), f"uninstall {package}")

    async def purge(self, package: str) -> str:
        check_package_name(package)
        return await self._apt(("purge", "--", package), f"purge {package}")

    async def update(self, package: str) -> str:
        check_package_name(package)
        return await self._apt(("install", "--only-upgrade", "--", package), f"update {package}")

    async def _apt(self, args: Sequence[str], what: str) -> str:
        return await self._execute((*APT_GET, *args), what, tool="apt-get", env=APT_ENV)


def parse_dpkg_status(package: str, stdout: str) -> PackageStatus:
    """Read dpkg-query lines "<abbrev>\\t<version>\\t<arch>"; an installed line wins."""
    found = PackageStatus(package, PackageState.ABSENT)
    for line in stdout.splitlines():
        parts = line.split("\t")
        if len(parts) != 3 or len(parts[0]) < 2:
            continue
        abbrev, version, arch = parts
        current = abbrev[1]
        if current == "i":
            return PackageStatus(package, PackageState.INSTALLED, version or None, arch or None)
        if current == "c":
            found = PackageStatus(package, PackageState.CONFIG_FILES, None, arch or None)
    return found
