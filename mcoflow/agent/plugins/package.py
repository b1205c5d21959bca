"""The package agent: install, uninstall, purge, update, status.

Every action is idempotent in effect, so re-run after the agent stopped in the middle of
it: install, uninstall and purge each bring the package to one state (installed, absent,
absent without configuration) and do nothing when it is there already; update brings an
installed package to the newest version, which a second run leaves as it is. A re-run's
``changed`` describes the re-run alone."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mcoflow.agent.interface import ActionInterface, FieldType, InputSpec, OutputSpec
from mcoflow.agent.plugins.base import (
    ActionFailed,
    Agent,
    AgentAction,
    HostContext,
    optional_text,
    provider_checked_input,
    required_provider,
    text_input,
)
from mcoflow.agent.providers.base import (
    PACKAGE_NAME,
    PACKAGE_VERSION,
    PackageProvider,
    PackageState,
    PackageStatus,
)

PACKAGE_INPUT = provider_checked_input("package", PACKAGE_NAME, "package name")
VERSION_INPUT = provider_checked_input(
    "version",
    PACKAGE_VERSION,
    "exact version to install; the newest when absent",
    required=False,
)
OUTPUTS = (
    OutputSpec("ensure", default="unknown", description="installed, absent or config-files"),
    OutputSpec("version", default=None),
    OutputSpec("arch", default=None),
    OutputSpec("provider", default=None),
    OutputSpec("changed", FieldType.BOOLEAN, default=False),
    OutputSpec("output", default=""),
)


def _interface(name: str, description: str, *inputs: InputSpec) -> ActionInterface:
    return ActionInterface(
        name, description, inputs=(PACKAGE_INPUT, *inputs), outputs=OUTPUTS, idempotent=True
    )


class PackageAgent(Agent):
    name = "package"
    description = "Install, remove and query OS packages"

    def declare(self) -> Mapping[str, AgentAction]:
        return {
            "install": AgentAction(
                _interface("install", "install a package", VERSION_INPUT), self.install
            ),
            "uninstall": AgentAction(_interface("uninstall", "remove a package"), self.uninstall),
            "purge": AgentAction(
                _interface("purge", "remove a package and its configuration"), self.purge
            ),
            "update": AgentAction(
                _interface("update", "upgrade an installed package"), self.update
            ),
            "status": AgentAction(
                _interface("status", "report a package's state"), self.status, read_only=True
            ),
        }

    async def install(self, host: HostContext, inputs: dict[str, Any]) -> dict[str, Any]:
        package, version = text_input(inputs, "package"), optional_text(inputs, "version")
        applied = await _apply(
            host,
            package,
            already=lambda s: s.installed and version in (None, s.version),
            already_says="already installed",
            change=lambda provider: provider.install(package, version),
        )
        after = applied.after
        if not after.installed or (version is not None and after.version != version):
            wanted = package if version is None else f"{package} {version}"
            raise ActionFailed(f"{wanted} is not installed after the install", applied.outputs())
        return applied.outputs()

    async def uninstall(self, host: HostContext, inputs: dict[str, Any]) -> dict[str, Any]:
        return await _remove(host, text_input(inputs, "package"), purge=False)

    async def purge(self, host: HostContext, inputs: dict[str, Any]) -> dict[str, Any]:
        return await _remove(host, text_input(inputs, "package"), purge=True)

    async def update(self, host: HostContext, inputs: dict[str, Any]) -> dict[str, Any]:
        package = text_input(inputs, "package")
        provider = _provider(host)
        async with host.lock:
            before = await provider.status(package)
            if not before.installed:
                raise ActionFailed(
                    f"{package} is not installed: nothing to update",
                    _outputs(provider, before, changed=False, output=""),
                )
            output = await provider.update(package)
            after = await provider.status(package)
        return _outputs(provider, after, changed=after.version != before.version, output=output)

    async def status(self, host: HostContext, inputs: dict[str, Any]) -> dict[str, Any]:
        provider = _provider(host)
        current = await provider.status(text_input(inputs, "package"))
        return _outputs(provider, current, changed=False, output="")


def _provider(host: HostContext) -> PackageProvider:
    return required_provider(host, host.package_provider, "package")


async def _remove(host: HostContext, package: str, *, purge: bool) -> dict[str, Any]:
    """Uninstall (the configuration files may stay) or purge (nothing stays)."""

    def gone(status: PackageStatus) -> bool:
        return status.state is PackageState.ABSENT if purge else not status.installed

    applied = await _apply(
        host,
        package,
        already=gone,
        already_says="not installed",
        change=lambda provider: provider.purge(package) if purge else provider.uninstall(package),
    )
    if not gone(applied.after):
        verb = "purge" if purge else "uninstall"
        # A failed uninstall reports no change; a failed purge may have removed the package.
        raise ActionFailed(
            f"{package} is still {applied.after.state.value} after the {verb}",
            applied.outputs() if purge else applied.outputs(changed=False),
        )
    return applied.outputs()


@dataclass(frozen=True)
class _Applied:
    """A change brought about under the host's lock, or found already done."""

    provider: PackageProvider
    before: PackageStatus
    after: PackageStatus
    output: str

    def outputs(self, *, changed: bool | None = None) -> dict[str, Any]:
        """The action's outputs; ``changed`` is whether the status moved, unless given."""
        moved = self.after != self.before if changed is None else changed
        return _outputs(self.provider, self.after, changed=moved, output=self.output)


async def _apply(
    host: HostContext,
    package: str,
    *,
    already: Callable[[PackageStatus], bool],
    already_says: str,
    change: Callable[[PackageProvider], Awaitable[str]],
) -> _Applied:
    """Run ``change`` unless the package is ``already`` where it would bring it (then
    nothing runs and the output is ``already_says``)."""
    provider = _provider(host)
    async with host.lock:
        before = await provider.status(package)
        if already(before):
            return _Applied(provider, before, before, already_says)
        output = await change(provider)
        return _Applied(provider, before, await provider.status(package), output)


def _outputs(
    provider: PackageProvider, status: PackageStatus, *, changed: bool, output: str
) -> dict[str, Any]:
    return {
        "ensure": status.state.value,
        "version": status.version,
        "arch": status.arch,
        "provider": provider.name,
        "changed": changed,
        "output": output,
    }
