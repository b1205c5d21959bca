"""systemd services through systemctl (only when PID 1 is systemd)."""

from __future__ import annotations

from mcoflow.agent.command import CommandRunner, run_command
from mcoflow.agent.providers.base import (
    ProviderError,
    ServiceProvider,
    ServiceState,
    check_service_name,
    require_root,
)


class SystemdProvider(ServiceProvider):
    name = "systemd"

    def __init__(
        self,
        *,
        runner: CommandRunner = run_command,
        time_limit: float = 120.0,
        check_root: bool = True,
    ) -> None:
        self._run = runner
        self._time_limit = time_limit
        self._check_root = check_root

    async def status(self, service: str) -> ServiceState:
        check_service_name(service)
        result = await self._run(
            ("systemctl", "is-active", "--quiet", "--", service), self._time_limit, None
        )
        return ServiceState.RUNNING if result.ok else ServiceState.STOPPED

    async def start(self, service: str) -> str:
        return await self._change(service, "start")

    async def stop(self, service: str) -> str:
        return await self._change(service, "stop")

    async def restart(self, service: str) -> str:
        return await self._change(service, "restart")

    async def _change(self, service: str, action: str) -> str:
        check_service_name(service)
        if self._check_root:
            require_root(f"{action} {service}")
        result = await self._run(
            ("systemctl", "--no-ask-password", action, "--", service), self._time_limit, None
        )
        if not result.ok:
            raise ProviderError(
                f"{action} {service} failed (systemctl exit {result.returncode})", result.output
            )
        return result.output
