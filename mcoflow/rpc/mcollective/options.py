"""What an orchestrator needs to know of an MCollective collective's security settings
(light to import: every process reads its settings)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol

from pydantic import SecretStr

__all__ = ["McollectiveOptions", "McollectiveSettings"]


class McollectiveSettings(Protocol):
    @property
    def mcollective_psk(self) -> SecretStr | None: ...
    @property
    def mcollective_callerid(self) -> str: ...


@dataclass(frozen=True)
class McollectiveOptions:
    """The security settings the nodes share: ``plugin.psk`` and what to send as the caller
    (``callerid``; MCollective's authorization plugins match it)."""

    psk: str = ""
    callerid: str = ""

    @classmethod
    def from_settings(cls, settings: McollectiveSettings) -> McollectiveOptions:
        psk = settings.mcollective_psk
        return cls(
            psk=psk.get_secret_value() if psk is not None else "",
            callerid=settings.mcollective_callerid,
        )

    def resolved_callerid(self) -> str:
        return self.callerid or f"uid={os.getuid()}"
