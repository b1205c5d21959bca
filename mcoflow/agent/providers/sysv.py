"""SysV init services: `service NAME action`, or the /etc/init.d script itself."""

from __future__ import annotations

import shutil
from pathlib import Path

from mcoflow.agent.command import CommandRunner, run_command
from mcoflow.agent.providers.base import (
    CommandServiceProvider,
    ProviderError,
    ServiceState,
    check_service_name,
)


class SysVProvider(CommandServiceProvider):
    name = "sysv"

    def __init__(
        self,
        *,
        init_dir: Path = Path("/etc/init.d"),
        runner: CommandRunner = run_command,
        time_limit: float | None = None,
        check_root: bool = True,
        use_service_command: bool | None = None,
    ) -> None:
        super().__init__(runner=runner, time_limit=time_limit, check_root=check_root)
        self._init_dir = init_dir
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
