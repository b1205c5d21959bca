"""Simulated providers: one process stands in for many hosts (benchmarks, demos, tests).

Every identity has its own in-memory package and service set, created on first use.
Never chosen automatically: a configuration has to ask for it.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mcoflow.agent.providers.base import (
    PackageProvider,
    PackageState,
    PackageStatus,
    ProviderError,
    ServiceProvider,
    ServiceState,
    check_package_name,
    check_package_version,
    check_service_name,
)
from mcoflow.rpc.filters import compile_pattern, is_regex, match_name

# A package name (as the providers accept them), optionally @ one host's identity.
_PACKAGE_RULE = re.compile(r"[a-z0-9][a-z0-9+.-]*(@[A-Za-z0-9_][A-Za-z0-9_.:@-]*)?")


# A service name (unit names may hold "@" themselves), optionally @ one host's identity.
_SERVICE_RULE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:@-]*")


def _listed(rules: tuple[str, ...], identity: str, package: str) -> bool:
    return package in rules or f"{package}@{identity}" in rules


class SimulationSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    delay: float = Field(0.0, ge=0.0, description="seconds each change takes")
    jitter: float = Field(0.0, ge=0.0, description="up to this many seconds added at random")
    failure_rate: float = Field(0.0, ge=0.0, le=1.0)
    seed: int = 0
    packages: dict[str, str] = Field(
        default_factory=dict, description="packages every host starts with: name -> version"
    )
    services: dict[str, ServiceState] = Field(
        default_factory=dict, description="services every host starts with"
    )
    broken_packages: tuple[str, ...] = Field(
        (),
        description="packages whose install always fails (a broken repository); "
        "NAME@IDENTITY: on that host only",
    )
    flaky_packages: tuple[str, ...] = Field(
        (),
        description="packages whose first install on each host fails and the next one "
        "works (to try Resume); NAME@IDENTITY: on that host only",
    )
    broken_services: tuple[str, ...] = Field(
        (),
        description="services that crash right after they start: the start's own look "
        "finds them running, later looks stopped (a failed health check) until "
        "broken_services_recover_after; NAME@IDENTITY: on that host only",
    )
    broken_services_recover_after: float | None = Field(
        None,
        ge=0.0,
        description="seconds after its start at which a broken service runs again (as a "
        "supervisor would bring it back); none: it stays stopped",
    )
    host_facts: dict[str, dict[str, str | int | float | bool]] = Field(
        default_factory=dict,
        description="facts some hosts report on top of the common ones: IDENTITY (exact or "
        "/regex/) -> {fact: value}; every rule that matches adds its facts, later ones win",
    )
    host_classes: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description="classes some hosts report: IDENTITY (exact or /regex/) -> [class, …]",
    )
    default_version: str = "1.0-1"
    arch: str = "amd64"
    stats_file: Path | None = Field(
        None,
        description="the daemon writes the calls per identity here as JSON (see "
        "SimulatedFleet.write_stats), so other processes can count them",
    )
    stats_interval: float = Field(1.0, gt=0, description="seconds between stats writes")

    @field_validator("broken_packages", "flaky_packages")
    @classmethod
    def _package_rules(cls, rules: tuple[str, ...]) -> tuple[str, ...]:
        for rule in rules:
            if _PACKAGE_RULE.fullmatch(rule) is None:
                raise ValueError(f"{rule!r}: expected a package name, or NAME@IDENTITY")
        return rules

    @field_validator("broken_services")
    @classmethod
    def _service_rules(cls, rules: tuple[str, ...]) -> tuple[str, ...]:
        for rule in rules:
            if _SERVICE_RULE.fullmatch(rule) is None:
                raise ValueError(f"{rule!r}: expected a service name, or NAME@IDENTITY")
        return rules

    @field_validator("host_facts", "host_classes")
    @classmethod
    def _identity_rules(cls, rules: dict[str, Any]) -> dict[str, Any]:
        for rule in rules:
            if is_regex(rule):
                compile_pattern(rule[1:-1])  # ValueError naming the pattern
        return rules

    def facts_of(self, identity: str) -> dict[str, str | int | float | bool]:
        """The facts ``host_facts`` gives ``identity``."""
        facts: dict[str, str | int | float | bool] = {}
        for rule, values in self.host_facts.items():
            if match_name(rule, identity):
                facts.update(values)
        return facts

    def classes_of(self, identity: str) -> tuple[str, ...]:
        """The classes ``host_classes`` gives ``identity``, each once."""
        found = (c for r, cs in self.host_classes.items() if match_name(r, identity) for c in cs)
        return tuple(dict.fromkeys(found))


@dataclass
class _SimHost:
    packages: dict[str, str]
    services: dict[str, ServiceState]
    # broken services started: when, and whether a look (the start's own) saw them yet
    crashing: dict[str, tuple[float, bool]] = field(default_factory=dict)


@dataclass
class SimulatedFleet:
    settings: SimulationSettings = field(default_factory=SimulationSettings)
    calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    changes: int = 0  # bumped on every call: a stats writer skips a write when unchanged
    _hosts: dict[str, _SimHost] = field(default_factory=dict)
    _flaked: set[tuple[str, str]] = field(default_factory=set)
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.settings.seed)

    def host(self, identity: str) -> _SimHost:
        sim = self._hosts.get(identity)
        if sim is None:
            sim = _SimHost(dict(self.settings.packages), dict(self.settings.services))
            self._hosts[identity] = sim
        return sim

    def install_count(self, identity: str) -> int:
        """How many installs were executed on this identity (attempts, failed ones too)."""
        return self.calls[(identity, "install")]

    def total(self, operation: str) -> int:
        return sum(n for (_, op), n in self.calls.items() if op == operation)

    def stats(self) -> dict[str, dict[str, int]]:
        """Calls per identity and operation: ``{"sim-00001": {"install": 1}}``."""
        out: dict[str, dict[str, int]] = {}
        for (identity, operation), n in sorted(self.calls.items()):
            out.setdefault(identity, {})[operation] = n
        return out

    def write_stats(self, path: Path) -> None:
        """Write the calls as JSON, atomically (a reader never sees half a file)."""
        document = {"pid": os.getpid(), "written_at": time.time(), "calls": self.stats()}
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        partial.write_text(json.dumps(document, separators=(",", ":")), encoding="utf-8")
        os.replace(partial, path)

    async def execute(self, identity: str, operation: str) -> None:
        """Count the call, take the configured time, fail at the configured rate."""
        self.calls[(identity, operation)] += 1
        self.changes += 1
        s = self.settings
        pause = s.delay + (self._rng.uniform(0.0, s.jitter) if s.jitter else 0.0)
        failed = s.failure_rate > 0 and self._rng.random() < s.failure_rate
        if pause:
            await asyncio.sleep(pause)
        if failed:
            raise ProviderError(f"simulated failure of {operation} on {identity}")

    def install_failure(self, identity: str, package: str) -> str | None:
        """Why installing ``package`` on ``identity`` fails now (None: it works)."""
        if _listed(self.settings.broken_packages, identity, package):
            return f"simulated: package {package} is broken in the repository"
        flaky = _listed(self.settings.flaky_packages, identity, package)
        if flaky and (identity, package) not in self._flaked:
            self._flaked.add((identity, package))
            return f"simulated: download of {package} failed (it works the next time)"
        return None

    def package_provider(self, identity: str) -> SimulatedPackageProvider:
        return SimulatedPackageProvider(self, identity)

    def service_provider(self, identity: str) -> SimulatedServiceProvider:
        return SimulatedServiceProvider(self, identity)


def read_stats(path: Path) -> dict[str, Any]:
    """What ``SimulatedFleet.write_stats`` wrote: ``{"pid", "written_at", "calls"}``."""
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


class _OnSimulatedHost:
    """One identity of a simulated fleet, as its package and service providers see it."""

    name = "simulated"

    def __init__(self, fleet: SimulatedFleet, identity: str) -> None:
        self._fleet = fleet
        self._identity = identity


class SimulatedPackageProvider(_OnSimulatedHost, PackageProvider):
    async def status(self, package: str) -> PackageStatus:
        check_package_name(package)
        version = self._fleet.host(self._identity).packages.get(package)
        if version is None:
            return PackageStatus(package, PackageState.ABSENT)
        return PackageStatus(package, PackageState.INSTALLED, version, self._fleet.settings.arch)

    async def install(self, package: str, version: str | None) -> str:
        check_package_name(package)
        if version is not None:
            check_package_version(version)
        await self._fleet.execute(self._identity, "install")
        failure = self._fleet.install_failure(self._identity, package)
        if failure is not None:
            raise ProviderError(failure)
        chosen = version or self._fleet.settings.default_version
        self._fleet.host(self._identity).packages[package] = chosen
        return f"simulated: installed {package} {chosen}"

    async def uninstall(self, package: str) -> str:
        check_package_name(package)
        await self._fleet.execute(self._identity, "uninstall")
        self._fleet.host(self._identity).packages.pop(package, None)
        return f"simulated: removed {package}"

    async def purge(self, package: str) -> str:
        check_package_name(package)
        await self._fleet.execute(self._identity, "purge")
        self._fleet.host(self._identity).packages.pop(package, None)
        return f"simulated: purged {package}"

    async def update(self, package: str) -> str:
        check_package_name(package)
        await self._fleet.execute(self._identity, "update")
        packages = self._fleet.host(self._identity).packages
        if package in packages:
            packages[package] = self._fleet.settings.default_version
        return f"simulated: updated {package}"


class SimulatedServiceProvider(_OnSimulatedHost, ServiceProvider):
    """Any valid service name exists; one not configured starts out stopped."""

    async def status(self, service: str) -> ServiceState:
        check_service_name(service)
        host = self._fleet.host(self._identity)
        crashing = host.crashing.get(service)
        if crashing is None:
            return host.services.get(service, ServiceState.STOPPED)
        started, seen = crashing
        if not seen:  # the look its start makes: it has not crashed yet
            host.crashing[service] = (started, True)
            return ServiceState.RUNNING
        recover = self._fleet.settings.broken_services_recover_after
        if recover is not None and time.monotonic() - started >= recover:
            del host.crashing[service]
            return ServiceState.RUNNING
        return ServiceState.STOPPED

    async def start(self, service: str) -> str:
        return await self._set(service, "start", ServiceState.RUNNING)

    async def stop(self, service: str) -> str:
        return await self._set(service, "stop", ServiceState.STOPPED)

    async def restart(self, service: str) -> str:
        return await self._set(service, "restart", ServiceState.RUNNING)

    async def _set(self, service: str, operation: str, state: ServiceState) -> str:
        check_service_name(service)
        await self._fleet.execute(self._identity, operation)
        host = self._fleet.host(self._identity)
        host.services[service] = state
        broken = _listed(self._fleet.settings.broken_services, self._identity, service)
        if broken and state is ServiceState.RUNNING:
            host.crashing[service] = (time.monotonic(), False)
        else:
            host.crashing.pop(service, None)
        return f"simulated: {operation} {service}"
