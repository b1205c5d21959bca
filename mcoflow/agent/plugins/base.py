"""What an agent is: named actions, each with a declared interface and a handler."""

from __future__ import annotations

import asyncio
import re
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from mcoflow.agent.facts import Facts
from mcoflow.agent.interface import ActionInterface, InputSpec
from mcoflow.agent.providers.base import MAX_NAME_LENGTH, PackageProvider, ServiceProvider


class ActionFailed(Exception):
    """The action ran and failed (status 1); ``data`` holds whatever outputs it has."""

    def __init__(self, message: str, data: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.data = dict(data or {})


@dataclass
class HostContext:
    """One identity served by the daemon, with what its agents act upon."""

    identity: str
    collective: str
    facts: Facts
    classes: tuple[str, ...]
    agents: tuple[str, ...]
    package_provider: PackageProvider | None = None
    service_provider: ServiceProvider | None = None
    # One change at a time per host: package managers hold a global lock anyway.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


P = TypeVar("P", PackageProvider, ServiceProvider)


def required_provider(host: HostContext, provider: P | None, kind: str) -> P:
    """``provider`` of ``host``; an action needing one the host lacks fails."""
    if provider is None:
        raise ActionFailed(f"no {kind} provider on {host.identity}")
    return provider


Handler = Callable[[HostContext, dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class AgentAction:
    interface: ActionInterface
    handler: Handler
    # Read-only actions change nothing; running them twice is harmless, so they are
    # not written to the idempotency journal.
    read_only: bool = False


class Agent(ABC):
    name: ClassVar[str]
    version: ClassVar[str] = "1.0"
    description: ClassVar[str] = ""

    def __init__(self) -> None:
        self._actions: dict[str, AgentAction] = dict(self.declare())

    @abstractmethod
    def declare(self) -> Mapping[str, AgentAction]:
        """The agent's actions by name."""

    @property
    def actions(self) -> Mapping[str, AgentAction]:
        return self._actions

    def action(self, name: str) -> AgentAction | None:
        return self._actions.get(name)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "actions": {
                name: a.interface.describe() | {"read_only": a.read_only}
                for name, a in self._actions.items()
            },
        }


def text_input(inputs: Mapping[str, Any], name: str) -> str:
    value = inputs[name]
    if not isinstance(value, str):  # the interface guarantees it; this keeps mypy honest
        raise TypeError(f"{name} is not a string")
    return value


def optional_text(inputs: Mapping[str, Any], name: str) -> str | None:
    return text_input(inputs, name) if inputs.get(name) is not None else None


def provider_checked_input(
    name: str, rule: re.Pattern[str], description: str, *, required: bool = True
) -> InputSpec:
    """A text input refused by the same rule (pattern and length) as the providers refuse
    it, so a bad name is a reply's INVALID_DATA, never a command."""
    return InputSpec(
        name,
        required=required,
        pattern=rule.pattern,
        max_length=MAX_NAME_LENGTH,
        description=description,
    )
