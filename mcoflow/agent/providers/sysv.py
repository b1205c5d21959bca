"""SysV init services: `service NAME action`, or the /etc/init.d script itself."""

from __future__ import annotations

import shutil
from pathlib import Path

from mcoflow.agent.command import CommandRunner, run_command
from mcoflow.agent.providers.base import (
    ProviderError,
    ServiceProvider,
    ServiceState,
    check_service_name,
    require_root,
)


class SysVProvider(ServiceProvider):
    name = "sysv"

    def __init__(
        self,
        *,
        init_dir: Path = Path("/etc/init.d"),
        runner: CommandRunner = run_command,
        time_limit: float = 120.0,
        check_root: bool = True,
        use_service_command: bool | None = None,
    ) -> None:
        self._init_dir = init_dir
        self._run = runner
        self._time_limit = time_limit
        self._check_root = check_root
        if use_service_command is None:
            use_service_command = shutil.which("service") is not None
        self._use_service = use_service_command

    def _argv(self, service: str, action: str) -> tuple[str, ...]:
        check_service_name(service)
        script = self._init_dir / service
        if not script.is_file():
            raise ProviderError(f"unknown service {service}: no {script}")
        if self._use_service:
            return ("service", service, action)
        return (str(script), action)

    async def status(self, service: str) -> ServiceState:
        result = await self._run(self._argv(service, "status"), self._time_limit, None)
        # LSB: 0 running, 3 not running; anything else is not a running service either.
        return ServiceState.RUNNING if result.ok else ServiceState.STOPPED

    async def start(self, service: str) -> str:
        return await self._change(service, "start")

    async def stop(self, service: str) -> str:
        return await self._change(service, "stop")

    async def restart(self, service: str) -> str:
        return await self._change(service, "restart")

    async def _change(self, service: str, action: str) -> str:
        argv = self._argv(service, action)
        if self._check_root:
            require_root(f"{action} {service}")
        result = await self._run(argv, self._time_limit, None)
        if not result.ok:
            raise ProviderError(
                f"{action} {service} failed (exit {result.returncode})", result.output
            )
        return result.output
