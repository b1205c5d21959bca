"""systemd services through systemctl (only when PID 1 is systemd)."""

from __future__ import annotations

from mcoflow.agent.providers.base import CommandServiceProvider, ServiceState, check_service_name


class SystemdProvider(CommandServiceProvider):
    name = "systemd"
    TOOL = "systemctl"

    async def status(self, service: str) -> ServiceState:
        check_service_name(service)
        result = await self._run(
            ("systemctl", "is-active", "--quiet", "--", service), self._time_limit, None
        )
        return ServiceState.RUNNING if result.ok else ServiceState.STOPPED

    def _argv(self, service: str, action: str) -> tuple[str, ...]:
        check_service_name(service)
        return ("systemctl", "--no-ask-password", action, "--", service)
