"""The package agent: install, uninstall, purge, update, status.

Every action is idempotent in effect, so re-run after the agent stopped in the middle of
it: install, uninstall and purge each bring the package to one state (installed, absent,
absent without configuration) and do nothing when it is there already; update brings an
installed package to the newest version, which a second run leaves as it is. A re-run's
``changed`` describes the re-run alone."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mcoflow.agent.interface import ActionInterface, FieldType, InputSpec, OutputSpec
from mcoflow.agent.plugins.base import (
    ActionFailed,
    Agent,
    AgentAction,
    HostContext,
    optional_text,
    text_input,
)
from mcoflow.agent.providers.base import (
    MAX_NAME_LENGTH,
    PACKAGE_NAME,
    PACKAGE_VERSION,
    PackageProvider,
    PackageState,
    PackageStatus,
)

PACKAGE_INPUT = InputSpec(
    "package", pattern=PACKAGE_NAME.pattern, max_length=MAX_NAME_LENGTH, description="package name"
)
VERSION_INPUT = InputSpec(
    "version",
    required=False,
    pattern=PACKAGE_VERSION.pattern,
    max_length=MAX_NAME_LENGTH,
    description="exact version to install; the newest when absent",
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
        provider = _provider(host)
        async with host.lock:
            before = await provider.status(package)
            if before.installed and version in (None, before.version):
                return _outputs(provider, before, changed=False, output="already installed")
            output = await provider.install(package, version)
            after = await provider.status(package)
        if not after.installed or (version is not None and after.version != version):
            wanted = package if version is None else f"{package} {version}"
            raise ActionFailed(
                f"{wanted} is not installed after the install",
                _outputs(provider, after, changed=after != before, output=output),
            )
        return _outputs(provider, after, changed=after != before, output=output)

    async def uninstall(self, host: HostContext, inputs: dict[str, Any]) -> dict[str, Any]:
        package = text_input(inputs, "package")
        provider = _provider(host)
        async with host.lock:
            before = await provider.status(package)
            if not before.installed:
                return _outputs(provider, before, changed=False, output="not installed")
            output = await provider.uninstall(package)
            after = await provider.status(package)
        if after.installed:
            raise ActionFailed(
                f"{package} is still installed after the uninstall",
                _outputs(provider, after, changed=False, output=output),
            )
        return _outputs(provider, after, changed=True, output=output)

    async def purge(self, host: HostContext, inputs: dict[str, Any]) -> dict[str, Any]:
        package = text_input(inputs, "package")
        provider = _provider(host)
        async with host.lock:
            before = await provider.status(package)
            if before.state is PackageState.ABSENT:
                return _outputs(provider, before, changed=False, output="not installed")
            output = await provider.purge(package)
            after = await provider.status(package)
        if after.state is not PackageState.ABSENT:
            raise ActionFailed(
                f"{package} is still {after.state.value} after the purge",
                _outputs(provider, after, changed=after != before, output=output),
            )
        return _outputs(provider, after, changed=True, output=output)

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
    if host.package_provider is None:
        raise ActionFailed(f"no package provider on {host.identity}")
    return host.package_provider


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
