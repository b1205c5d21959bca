"""The service agent: start, stop, restart, status.

Every action is idempotent in effect, so re-run after the agent stopped in the middle of
it: start and stop bring the service to one state and do nothing when it is there; a
restart ends with the service running afresh on its current configuration, which a second
restart (one more brief interruption) leaves the same, and which is what an operator
would do on finding the first one interrupted."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mcoflow.agent.interface import ActionInterface, FieldType, OutputSpec
from mcoflow.agent.plugins.base import (
    ActionFailed,
    Agent,
    AgentAction,
    HostContext,
    provider_checked_input,
    required_provider,
    text_input,
)
from mcoflow.agent.providers.base import SERVICE_NAME, ServiceProvider, ServiceState

SERVICE_INPUT = provider_checked_input("service", SERVICE_NAME, "service name")
OUTPUTS = (
    OutputSpec("status", default="unknown", description="running or stopped"),
    OutputSpec("changed", FieldType.BOOLEAN, default=False),
    OutputSpec("provider", default=None),
    OutputSpec("output", default=""),
)


def _interface(name: str, description: str) -> ActionInterface:
    return ActionInterface(
        name, description, inputs=(SERVICE_INPUT,), outputs=OUTPUTS, idempotent=True
    )


class ServiceAgent(Agent):
    name = "service"
    description = "Start, stop, restart and query OS services"

    def declare(self) -> Mapping[str, AgentAction]:
        return {
            "start": AgentAction(_interface("start", "start a service"), self.start),
            "stop": AgentAction(_interface("stop", "stop a service"), self.stop),
            "restart": AgentAction(_interface("restart", "restart a service"), self.restart),
            "status": AgentAction(
                _interface("status", "report whether a service runs"), self.status, read_only=True
            ),
        }

    async def start(self, host: HostContext, inputs: dict[str, Any]) -> dict[str, Any]:
        return await self._ensure(host, text_input(inputs, "service"), ServiceState.RUNNING)

    async def stop(self, host: HostContext, inputs: dict[str, Any]) -> dict[str, Any]:
        return await self._ensure(host, text_input(inputs, "service"), ServiceState.STOPPED)

    async def restart(self, host: HostContext, inputs: dict[str, Any]) -> dict[str, Any]:
        service = text_input(inputs, "service")
        provider = _provider(host)
        async with host.lock:
            output = await provider.restart(service)
            after = await provider.status(service)
        result = _outputs(provider, after, changed=True, output=output)
        if after is not ServiceState.RUNNING:
            raise ActionFailed(f"{service} is not running after the restart", result)
        return result

    async def status(self, host: HostContext, inputs: dict[str, Any]) -> dict[str, Any]:
        provider = _provider(host)
        state = await provider.status(text_input(inputs, "service"))
        return _outputs(provider, state, changed=False, output="")

    async def _ensure(
        self, host: HostContext, service: str, wanted: ServiceState
    ) -> dict[str, Any]:
        provider = _provider(host)
        async with host.lock:
            before = await provider.status(service)
            if before is wanted:
                return _outputs(provider, before, changed=False, output=f"already {wanted.value}")
            if wanted is ServiceState.RUNNING:
                output = await provider.start(service)
            else:
                output = await provider.stop(service)
            after = await provider.status(service)
        result = _outputs(provider, after, changed=after is not before, output=output)
        if after is not wanted:
            raise ActionFailed(f"{service} is {after.value}, not {wanted.value}", result)
        return result


def _provider(host: HostContext) -> ServiceProvider:
    return required_provider(host, host.service_provider, "service")


def _outputs(
    provider: ServiceProvider, state: ServiceState, *, changed: bool, output: str
) -> dict[str, Any]:
    return {"status": state.value, "changed": changed, "provider": provider.name, "output": output}
