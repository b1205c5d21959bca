"""Configuration of the agent daemon: a YAML file, overridden by MCOFLOW_AGENT_* variables.

Example (every key optional except the two key settings)::

    identity: web1.example.com        # default: this machine's hostname
    collective: mcoflow
    broker_url: amqp://guest:guest@127.0.0.1:5672/
    # broker_url: amqps://mcoflow:secret@broker.example.com:5671/   # TLS:
    # broker_tls_ca: /etc/mcoflow/tls/ca.pem
    # broker_tls_cert: /etc/mcoflow/tls/web1.pem
    # broker_tls_key: /etc/mcoflow/tls/web1.key
    # broker_url: nats://n1:4222,nats://n2:4222,nats://n3:4222   # a cluster's nodes
    # nats_replicas: 3                        # as the orchestrator's (NATS cluster)
    # amqp_queue_type: quorum                 # as the orchestrator's (RabbitMQ cluster)
    key_file: /etc/mcoflow/keys/web1.key       # signs replies
    trusted_keys: /etc/mcoflow/trusted         # *.pub of the callers allowed to sign requests
    trusted_keys_reload: 2.0                   # s between checks for added/revoked keys
    policy_file: /etc/mcoflow/policy.yaml      # absent: every trusted caller is allowed
    journal_file: /var/lib/mcoflow/agent/journal.sqlite
    agents: [package, service]                 # rpcutil is always served
    facts_file: /etc/mcoflow/facts.yaml
    facts: {role: web}
    classes_file: /etc/mcoflow/classes.txt
    classes: [webserver]
    package_provider: auto                     # auto | apt | dnf | yum | simulated | none
    service_provider: auto                     # auto | systemd | sysv | simulated | none
    metrics_listen: 127.0.0.1:9293             # Prometheus /metrics (refusals); unset: none

For benchmarks and demos one process can stand in for many hosts::

    simulate_hosts: 10000                      # identities sim-00001 … sim-10000
    simulate_pattern: "sim-{n:05d}"
    simulation: {delay: 0.05, failure_rate: 0.01, seed: 7}
    # stats_file (relative: to this file): the calls per identity as JSON, rewritten
    # every stats_interval s while they change and at stop, for tests and benchmarks
    # that count them from outside the process:
    #   simulation: {stats_file: sim-stats.json, stats_interval: 0.5}
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from mcoflow.agent.providers import PackageChoice, ServiceChoice, SimulationSettings
from mcoflow.rpc.cluster import QueueType
from mcoflow.rpc.tls import TlsOptions, check_tls_url

DEFAULT_AGENTS = ("rpcutil", "package", "service")


class ConfigError(ValueError):
    """The agent configuration is unusable; the message says why."""


def config_path_from_env() -> Path | None:
    """The file named by MCOFLOW_AGENT_CONFIG, if set."""
    value = os.environ.get("MCOFLOW_AGENT_CONFIG")
    return Path(value) if value else None


def default_journal_file() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/mcoflow/agent/journal.sqlite")
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "mcoflow" / "agent" / "journal.sqlite"


_REAL_PACKAGES = frozenset(
    {PackageChoice.AUTO, PackageChoice.APT, PackageChoice.DNF, PackageChoice.YUM}
)
_REAL_SERVICES = frozenset({ServiceChoice.AUTO, ServiceChoice.SYSTEMD, ServiceChoice.SYSV})


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MCOFLOW_AGENT_", frozen=True, extra="forbid")

    identity: str = Field(default_factory=socket.gethostname)
    identities: tuple[str, ...] = ()
    simulate_hosts: int = Field(0, ge=0, le=1_000_000)
    simulate_pattern: str = "sim-{n:05d}"
    collective: str = "mcoflow"
    broker_url: str = "memory://"
    # TLS of an amqps:// or tls:// broker_url: the CA its certificate is checked against
    # (unset: the system's), this host's client certificate and key (unset: in the cert)
    broker_tls_ca: Path | None = None
    broker_tls_cert: Path | None = None
    broker_tls_key: Path | None = None
    broker_tls_verify_hostname: bool = True
    # a clustered broker (broker_url lists its nodes, comma-separated): the servers that
    # store each NATS stream, the type of the RabbitMQ host queues; as the orchestrator's
    nats_replicas: int = Field(1, ge=1, le=5)
    amqp_queue_type: QueueType = QueueType.CLASSIC
    key_file: Path
    key_name: str | None = None
    trusted_keys: Path
    # seconds between looks at trusted_keys for added, removed and revoked keys (also
    # read again on SIGHUP): the longest a revoked key is still accepted
    trusted_keys_reload: float = Field(2.0, gt=0, le=3600)
    policy_file: Path | None = None
    journal_file: Path | None = Field(default_factory=default_journal_file)
    journal_retention: float = Field(8 * 24 * 3600.0, gt=0)
    agents: tuple[str, ...] = DEFAULT_AGENTS
    facts_file: Path | None = None
    facts: dict[str, str | int | float | bool] = Field(default_factory=dict)
    classes_file: Path | None = None
    classes: tuple[str, ...] = ()
    package_provider: PackageChoice = PackageChoice.AUTO
    service_provider: ServiceChoice = ServiceChoice.AUTO
    simulation: SimulationSettings = Field(default_factory=SimulationSettings)
    command_timeout: float = Field(900.0, gt=0)
    clock_skew: float = Field(60.0, ge=0)
    shutdown_grace: float = Field(300.0, ge=0, description="seconds running actions get at stop")
    # Replies ready together (a broadcast answered by many identities of this process)
    # share one signed envelope of up to this many; 1 sends each alone. Default: 256
    # for several identities, 1 for a single one.
    reply_batch: int | None = Field(None, ge=1, le=10_000)
    # The queue that receives broadcasts once for all identities of a multi-host process.
    fanout_name: str = Field(default_factory=lambda: f"{socket.gethostname()}-fanout")
    # Prometheus /metrics of `mcoflow agent` (refused messages by reason), unauthenticated:
    # keep it on loopback unless the network is trusted. Unset: not served.
    metrics_listen: str | None = Field(
        None, pattern=r"^\S+:[0-9]{1,5}$", examples=["127.0.0.1:9293"]
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's values arrive as init arguments; the environment overrides them.
        return (env_settings, init_settings)

    @model_validator(mode="before")
    @classmethod
    def _simulation_is_explicit(cls, values: Any) -> Any:
        # Asking for simulated hosts is asking for simulated providers.
        if isinstance(values, dict) and int(values.get("simulate_hosts") or 0) > 0:
            values = dict(values)
            for key in ("package_provider", "service_provider"):
                values.setdefault(key, "simulated")
        return values

    @model_validator(mode="after")
    def _check(self) -> AgentSettings:
        names = self.host_identities()
        if len(set(names)) != len(names):
            raise ValueError("identities must be unique")
        if len(names) > 1 and self.changes_the_host:
            raise ValueError(
                "several identities in one process need package_provider and "
                "service_provider 'simulated' (or 'none'): they cannot share one real OS"
            )
        return self

    @model_validator(mode="after")
    def _broker_tls(self) -> AgentSettings:
        check_tls_url(self.broker_url, TlsOptions.from_settings(self))
        return self

    @property
    def changes_the_host(self) -> bool:
        """Whether a provider acts on this machine (not simulated, not none)."""
        return self.package_provider in _REAL_PACKAGES or self.service_provider in _REAL_SERVICES

    def reply_batch_size(self) -> int:
        if self.reply_batch is not None:
            return self.reply_batch
        return 256 if len(self.host_identities()) > 1 else 1

    def host_identities(self) -> tuple[str, ...]:
        if self.simulate_hosts:
            return tuple(
                self.simulate_pattern.format(n=n) for n in range(1, self.simulate_hosts + 1)
            )
        return self.identities or (self.identity,)

    @classmethod
    def load(cls, path: Path | None = None) -> AgentSettings:
        """Read the YAML file (if any); MCOFLOW_AGENT_* variables override its values."""
        values: dict[str, Any] = {}
        if path is not None:
            try:
                raw = yaml.safe_load(path.read_text(encoding="utf-8"))
            except (OSError, yaml.YAMLError) as exc:
                raise ConfigError(f"cannot read agent config {path}: {exc}") from exc
            if raw is not None and not isinstance(raw, dict):
                raise ConfigError(f"agent config {path}: a mapping is expected")
            values.update(_relative_to(raw or {}, path.parent))
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ConfigError(f"invalid agent config: {exc}") from exc


_PATH_KEYS = (
    "broker_tls_ca",
    "broker_tls_cert",
    "broker_tls_key",
    "key_file",
    "trusted_keys",
    "policy_file",
    "journal_file",
    "facts_file",
    "classes_file",
)


def _relative_to(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    """Relative paths in a config file are relative to the file's folder."""
    result = dict(raw)
    for key in _PATH_KEYS:
        value = result.get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            result[key] = str(base / value)
    simulation = result.get("simulation")
    if isinstance(simulation, dict):
        stats = simulation.get("stats_file")
        if isinstance(stats, str) and stats and not Path(stats).is_absolute():
            result["simulation"] = {**simulation, "stats_file": str(base / stats)}
    return result
