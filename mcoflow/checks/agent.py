"""`mcoflow agent --check`: the agent's config file, its key and trusted caller keys, and
the broker, without serving."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from mcoflow.checks import (
    Area,
    Checklist,
    Problem,
    broker_answers,
    check_transport_url,
    private_key,
    trusted_keys,
    validation_message,
)

if TYPE_CHECKING:
    from mcoflow.agent.settings import AgentSettings


def check_agent(config: Path | None) -> int:
    """Print one line per check; the exit status (0: ready to run)."""
    checklist = Checklist("mcoflow agent --check")
    settings = checklist.value(Area.SETTINGS, "config", lambda: _load(config))
    if settings is None:
        return checklist.finish((Area.KEYS, Area.BROKER))
    url = settings.broker_url
    plan = (
        (
            Area.SETTINGS,
            (
                (
                    "broker_url",
                    lambda: check_transport_url("broker_url", url, settings, agent=True),
                ),
                ("agents", lambda: _agents(settings)),
                ("policy_file", lambda: _policy(settings)),
                ("facts", lambda: _facts(settings)),
                ("journal_file", lambda: _journal(settings)),
                ("providers", lambda: _providers(settings)),
            ),
        ),
        (
            Area.KEYS,
            (
                ("key_file", lambda: _host_key(settings)),
                ("trusted_keys", lambda: _trusted(settings)),
            ),
        ),
        (Area.BROKER, (("broker", lambda: broker_answers("broker_url", url, settings)),)),
    )
    return asyncio.run(checklist.areas(plan))


def _load(config: Path | None) -> tuple[AgentSettings, str]:
    from pydantic import ValidationError

    from mcoflow.agent.settings import AgentSettings, ConfigError

    source = str(config) if config else "no file (MCOFLOW_AGENT_CONFIG unset)"
    try:
        settings = AgentSettings.load(config)
    except ConfigError as exc:
        cause = exc.__cause__
        if isinstance(cause, ValidationError):
            raise Problem(f"{source}: {validation_message(cause)}") from None
        raise Problem(str(exc)) from None
    identities = settings.host_identities()
    who = identities[0] if len(identities) == 1 else f"{len(identities)} identities"
    return settings, f"{source}: {who} in collective {settings.collective}"


def _agents(settings: AgentSettings) -> str:
    from mcoflow.agent.plugins import make_agents

    try:
        return ", ".join(make_agents(list(settings.agents)))
    except ValueError as exc:
        raise Problem(f"agents: {exc}") from None


def _policy(settings: AgentSettings) -> str:
    from mcoflow.agent.policy import Policy, PolicyError

    if settings.policy_file is None:
        return "none: every trusted caller may call every action"
    try:
        policy = Policy.from_file(settings.policy_file)
    except PolicyError as exc:
        raise Problem(f"policy_file: {exc}") from None
    return f"{settings.policy_file}: {len(policy.rules)} rules"


def _facts(settings: AgentSettings) -> str:
    from mcoflow.agent.facts import FactsError, load_classes_file, load_facts_file

    facts, classes = dict(settings.facts), list(settings.classes)
    files = (("facts_file", settings.facts_file), ("classes_file", settings.classes_file))
    for setting, path in files:
        if path is None:
            continue
        try:
            if setting == "facts_file":
                facts.update(load_facts_file(path))
            else:
                classes.extend(load_classes_file(path))
        except FactsError as exc:
            raise Problem(f"{setting}: {exc}") from None
    return f"{len(facts)} configured facts, {len(set(classes))} classes"


def _journal(settings: AgentSettings) -> str:
    """The journal can be written: the file, or the folder it would be created in."""
    path = settings.journal_file
    if path is None:
        return "none: requests are not remembered across a restart"
    target = path if path.exists() else path.parent
    while not target.exists():  # the agent creates the missing folders
        target = target.parent
    if not os.access(target, os.W_OK | (os.X_OK if target.is_dir() else 0)):
        raise Problem(f"journal_file: {path}: {target} is not writable for this user")
    return f"{path} writable"


def _providers(settings: AgentSettings) -> str:
    """The package and service providers the agent would use, and their commands."""
    from mcoflow.agent.command import SAFE_PATH
    from mcoflow.agent.providers import detect_package_provider, detect_service_provider

    package, service = settings.package_provider.value, settings.service_provider.value
    if package not in _NOT_REAL:
        found = detect_package_provider(settings.package_provider)
        package = found.name if found is not None else "none found"
    if service not in _NOT_REAL:
        found_service = detect_service_provider(settings.service_provider)
        service = found_service.name if found_service is not None else "none found"
    for setting, name in (("package_provider", package), ("service_provider", service)):
        command = _COMMANDS.get(name)
        if command is not None and shutil.which(command, path=SAFE_PATH) is None:
            raise Problem(f"{setting}: {name}: {command} is not on {SAFE_PATH}")
    return f"packages: {package}, services: {service}"


_NOT_REAL = ("simulated", "none")
# the command a provider runs (sysv: each service's own init script)
_COMMANDS = {"apt": "apt-get", "dnf": "dnf", "yum": "yum", "systemd": "systemctl"}


def _host_key(settings: AgentSettings) -> str:
    private_key(
        "key_file",
        settings.key_file,
        "create it here, readable by root only (`openssl genpkey -algorithm ed25519 -out "
        "FILE`, its public half trusted where keys_dir is with `mcoflow keys host NAME "
        "--public-key`), or copy host-keys/NAME.key that `mcoflow keys host NAME` made there",
    )
    return f"{settings.key_file} signs replies as {settings.key_name or settings.key_file.stem!r}"


def _trusted(settings: AgentSettings) -> str:
    names = trusted_keys(
        "trusted_keys",
        settings.trusted_keys,
        "copy the orchestrator's keys_dir/callers/*.pub here: without them every request "
        "is refused",
    )
    return f"{settings.trusted_keys}: {', '.join(sorted(names))}"
