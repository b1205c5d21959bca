"""Settings of the orchestrator side (CLI, executor, web): environment and file.

Every setting can come from an environment variable ``MCOFLOW_<NAME>`` or from a YAML
file named by ``MCOFLOW_CONFIG`` (default ``./mcoflow.yaml`` when it exists); the
environment wins. With nothing set, everything is the embedded default: a SQLite file
in the working directory and the in-process broker.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

# NAME of a "NAME:HASH" web_users / web_api_tokens entry: who acts, in a plan's history
WEB_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}")


class SettingsError(ValueError):
    pass


def config_file() -> Path | None:
    named = os.environ.get("MCOFLOW_CONFIG")
    if named:
        return Path(named)
    local = Path("mcoflow.yaml")
    return local if local.exists() else None


class _YamlSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        self.path = path

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        if self.path is None:
            return {}
        try:
            data = yaml.safe_load(self.path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise SettingsError(f"config file {self.path}: {exc}") from exc
        if not isinstance(data, dict):
            raise SettingsError(f"config file {self.path}: expected a mapping at the top")
        return data


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MCOFLOW_", extra="forbid", frozen=True)

    database_url: str = "sqlite:///mcoflow.db"
    transport_url: str = "memory://"
    collective: str = "mcoflow"
    keys_dir: Path = Path(".mcoflow/keys")
    state_dir: Path = Field(Path(".mcoflow"), description="agent journals of the embedded default")
    caller: str = Field("mcoflow", pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.@-]*$")
    reply_to: str = Field("mcoflow.replies", pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.:@-]*$")
    listen: str = Field("127.0.0.1:9292", description="host:port of the web console")
    imports: tuple[str, ...] = Field(
        default=(), description="modules to import so their actions are registered"
    )
    batch_size: int = Field(500, ge=1, le=10_000)
    poll_interval: float = Field(0.5, gt=0)
    heartbeat_interval: float = Field(2.0, gt=0)
    dead_after: float = Field(20.0, gt=0)
    retention_days: float = Field(30.0, gt=0)
    web_users: tuple[str, ...] = Field(
        default=(), description="'NAME:HASH' lines of `mcoflow web hash-password NAME`"
    )
    web_api_tokens: tuple[str, ...] = Field(
        default=(), description="'NAME:HASH' lines of `mcoflow web new-token --name NAME`"
    )
    web_secret: SecretStr | None = Field(
        default=None,
        description="signs the web session cookies; unset: a random one kept in "
        "state_dir/web-secret",
    )
    # checked by `serve` (mcoflow.agent.providers.SimulationSettings): importing the
    # agent here would slow down every command
    simulation: dict[str, Any] = Field(
        default_factory=dict,
        description="how the hosts of `serve --simulate-hosts` behave: delay, "
        "broken_packages, flaky_packages, packages, … (SimulationSettings)",
    )

    @field_validator("web_users", "web_api_tokens")
    @classmethod
    def _name_and_hash(cls, entries: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        scheme = "scrypt$" if info.field_name == "web_users" else "sha256$"
        command = "hash-password NAME" if scheme == "scrypt$" else "new-token --name NAME"
        for entry in entries:
            name, _, digest = entry.partition(":")
            if WEB_NAME.fullmatch(name) is None or not digest.startswith(scheme):
                # name only: a pasted plain password must not end up in a log
                raise ValueError(
                    f"entry {name[:64]!r}: expected 'NAME:{scheme}…' as printed by "
                    f"`mcoflow web {command}`"
                )
        return entries

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _YamlSource(settings_cls, config_file())


def load_settings(**overrides: Any) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise SettingsError(f"invalid settings: {validation_problems(exc)}") from None


def validation_problems(exc: ValidationError) -> str:
    """Each refused field and why, on one line: ``a.b: reason; c: reason``."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
