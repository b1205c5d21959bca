"""Settings of the orchestrator side (CLI, executor, web): environment and file.

Every setting can come from an environment variable ``MCOFLOW_<NAME>`` or from a YAML
file named by ``MCOFLOW_CONFIG`` (default ``./mcoflow.yaml`` when it exists); the
environment wins. With nothing set, everything is the embedded default: a SQLite file
in the working directory and the in-process broker.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import types
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mcoflow.rpc.cluster import QueueType

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


def _from_file(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SettingsError(f"config file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise SettingsError(f"config file {path}: expected a mapping at the top")
    return data


class Settings(BaseModel):
    """The settings, as ``load_settings`` reads them: not through pydantic-settings,
    whose import was a large part of every command's start-up."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    database_url: str = "sqlite:///mcoflow.db"
    transport_url: str = "memory://"
    broker_tls_ca: Path | None = Field(
        None,
        description="CA file the broker's certificate is checked against (amqps://, "
        "tls://); unset: the system's CAs",
    )
    broker_tls_cert: Path | None = Field(None, description="client certificate for the broker")
    broker_tls_key: Path | None = Field(None, description="its key; unset: in broker_tls_cert")
    broker_tls_verify_hostname: bool = Field(
        True, description="check that the broker's certificate names the URL's host"
    )
    nats_replicas: int = Field(
        1,
        ge=1,
        le=5,
        description="servers of a NATS cluster that store each JetStream stream (3 on "
        "three nodes survives the loss of one)",
    )
    amqp_queue_type: QueueType = Field(
        QueueType.CLASSIC,
        description="classic or quorum: the type of the durable RabbitMQ queues (hosts', "
        "replies'); quorum on a cluster",
    )
    mcollective_psk: SecretStr | None = Field(
        None,
        description="stomp+mcollective:// only: the nodes' plugin.psk (the psk security "
        "scheme signs every request and reply with it)",
    )
    mcollective_callerid: str = Field(
        "",
        pattern=r"^(\w+=[\w.-]+)?$",
        description="stomp+mcollective:// only: the caller id the nodes see and authorize "
        "(kind=name, e.g. user=deploy); unset: uid=<this process's uid>, as mco sends",
    )
    collective: str = "mcoflow"
    keys_dir: Path = Path(".mcoflow/keys")
    state_dir: Path = Field(Path(".mcoflow"), description="agent journals of the embedded default")
    caller: str = Field("mcoflow", pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.@-]*$")
    reply_to: str = Field("mcoflow.replies", pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.:@-]*$")
    listen: str = Field("127.0.0.1:9292", description="host:port of the web console")
    imports: tuple[str, ...] = Field(
        default=(), description="modules to import so their actions are registered"
    )
    templates_dir: Path | None = Field(
        None,
        description="a folder of job templates (*.yaml) beside the ones mcoflow ships",
    )
    batch_size: int = Field(500, ge=1, le=10_000)
    poll_interval: float = Field(0.5, gt=0)
    heartbeat_interval: float = Field(2.0, gt=0)
    dead_after: float = Field(20.0, gt=0)
    retention_days: float = Field(30.0, gt=0)
    allow_unknown_hosts: bool = Field(
        False,
        description="send jobs to host names never seen by a discovery or a reply (one "
        "that does not exist then ends as 'no response')",
    )
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
    trusted_proxies: tuple[str, ...] = Field(
        default=(),
        description="IP addresses or networks (10.0.0.5, 10.0.0.0/24) of reverse proxies "
        "in front of the web console whose X-Forwarded-Proto/-For/-Host are believed; "
        "empty: none",
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

    @model_validator(mode="after")
    def _broker_tls(self) -> Settings:
        if (
            self.broker_tls_ca
            or self.broker_tls_cert
            or self.broker_tls_key
            or (not self.broker_tls_verify_hostname)
        ):  # imported only then: most commands never need ssl
            from mcoflow.rpc.tls import TlsOptions, check_tls_url

            check_tls_url(self.transport_url, TlsOptions.from_settings(self))
        return self

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, entries: tuple[str, ...]) -> tuple[str, ...]:
        for entry in entries:
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address or network (10.0.0.5, 10.0.0.0/24, ::1)"
                ) from None
        return entries


def _structured(annotation: Any) -> bool:
    """Whether a setting of this type is given as JSON in its environment variable."""
    if get_origin(annotation) in (Union, types.UnionType):
        return any(_structured(a) for a in get_args(annotation) if a is not type(None))
    kind = get_origin(annotation) or annotation
    return kind in (list, tuple, dict, set, frozenset) or (
        isinstance(kind, type) and issubclass(kind, BaseModel)
    )


def _from_environment() -> dict[str, Any]:
    """``MCOFLOW_<NAME>`` (any case) of each setting; lists and mappings as JSON."""
    environment = {key.lower(): value for key, value in os.environ.items()}
    values: dict[str, Any] = {}
    for name, field in Settings.model_fields.items():
        raw = environment.get(f"mcoflow_{name}")
        if raw is None:
            continue
        if not _structured(field.annotation):
            values[name] = raw
            continue
        try:
            values[name] = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise SettingsError(f"MCOFLOW_{name.upper()}: expected JSON: {exc}") from None
    return values


def load_settings(**overrides: Any) -> Settings:
    """The settings: ``overrides`` (None: not given), else the environment, else the
    config file, else the defaults."""
    values = {
        **_from_file(config_file()),
        **_from_environment(),
        **{k: v for k, v in overrides.items() if v is not None},
    }
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        raise SettingsError(f"invalid settings: {validation_problems(exc)}") from None


def validation_problems(exc: ValidationError) -> str:
    """Each refused field and why, on one line: ``a.b: reason; c: reason``."""
    problems = ((".".join(str(p) for p in e["loc"]), e["msg"]) for e in exc.errors())
    return "; ".join(f"{where}: {msg}" if where else msg for where, msg in problems)
