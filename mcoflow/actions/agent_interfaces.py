"""The agents' declared interfaces as the orchestrator reads them, and the operator's
inputs checked against them before anything is sent: ``key=value`` words (the command
line, the web form) typed by the interface, or JSON values (the REST API).

An interface is what ``Agent.describe()`` gives (``rpcutil.agent_interfaces`` sends
them); the checks are the agent's own (``ActionInterface.validate_inputs``), so what
passes here passes on the host, and an input the host would refuse is refused here with
the same words, naming the input.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mcoflow.agent.interface import ActionInterface, FieldType, InputError, InputSpec
from mcoflow.job_request import JobInputError

# the prefix of an input's field in errors: ``inputs.package``
INPUTS = "inputs"
TRUE_WORDS = frozenset({"true", "yes", "y", "1", "on"})
FALSE_WORDS = frozenset({"false", "no", "n", "0", "off"})


class InterfaceFormatError(ValueError):
    """An interface that is not what ``Agent.describe()`` gives."""


@dataclass(frozen=True)
class OutputField:
    name: str
    type: str
    description: str = ""


@dataclass(frozen=True)
class ActionSpec:
    """One action as its agent declares it."""

    agent: str
    name: str
    description: str
    read_only: bool
    idempotent: bool
    inputs: tuple[InputSpec, ...]
    outputs: tuple[OutputField, ...]

    @property
    def full_name(self) -> str:
        return f"{self.agent}.{self.name}"

    def input(self, name: str) -> InputSpec | None:
        return next((spec for spec in self.inputs if spec.name == name), None)

    def takes(self) -> str:
        """``package (string, required), version (string)``, or ``no inputs``."""
        if not self.inputs:
            return "no inputs"
        return ", ".join(
            f"{s.name} ({s.type.value}{', required' if s.required else ''})" for s in self.inputs
        )

    def checker(self) -> ActionInterface:
        return ActionInterface(self.name, self.description, inputs=self.inputs)


@dataclass(frozen=True)
class AgentSpec:
    name: str
    version: str
    description: str
    actions: Mapping[str, ActionSpec]

    @classmethod
    def from_description(cls, name: str, data: Any) -> AgentSpec:
        """From ``Agent.describe()``'s dictionary; InterfaceFormatError when it is not one."""
        try:
            actions = {
                action: _action(name, action, declared)
                for action, declared in dict(data["actions"]).items()
            }
            version, description = str(data.get("version") or ""), str(data.get("description", ""))
            return cls(name, version, description, actions)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InterfaceFormatError(f"agent {name}: malformed interface ({exc})") from None

    def describe(self) -> dict[str, Any]:
        """The interface as the agent sent it (``Agent.describe()``'s shape)."""
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "actions": {n: describe_action(a) for n, a in self.actions.items()},
        }


def describe_action(action: ActionSpec) -> dict[str, Any]:
    return {
        "description": action.description,
        "read_only": action.read_only,
        "idempotent": action.idempotent,
        "inputs": {
            s.name: {
                "type": s.type.value,
                "required": s.required,
                "pattern": s.pattern,
                "max_length": s.max_length,
                "description": s.description,
            }
            for s in action.inputs
        },
        "outputs": {o.name: {"type": o.type, "description": o.description} for o in action.outputs},
    }


def _action(agent: str, name: str, data: Mapping[str, Any]) -> ActionSpec:
    inputs = tuple(
        InputSpec(
            input_name,
            FieldType(spec.get("type", "string")),
            required=bool(spec.get("required", True)),
            pattern=spec.get("pattern"),
            max_length=spec.get("max_length"),
            description=str(spec.get("description") or ""),
        )
        for input_name, spec in dict(data.get("inputs") or {}).items()
    )
    outputs = tuple(
        OutputField(out, str(spec.get("type", "string")), str(spec.get("description") or ""))
        for out, spec in dict(data.get("outputs") or {}).items()
    )
    return ActionSpec(
        agent,
        name,
        str(data.get("description", "")),
        bool(data.get("read_only", False)),
        bool(data.get("idempotent", False)),
        inputs,
        outputs,
    )


def find_action(agents: Mapping[str, AgentSpec], agent: str, action: str) -> ActionSpec:
    """The declared action; JobInputError naming ``agent`` or ``action`` (and what is
    known instead) when there is none."""
    spec = agents.get(agent)
    if spec is None:
        known = ", ".join(sorted(agents)) or "none known yet"
        raise JobInputError("agent", f"unknown agent {agent!r} (the hosts serve: {known})")
    found = spec.actions.get(action)
    if found is None:
        known = ", ".join(sorted(spec.actions))
        raise JobInputError(
            "action", f"agent {agent} has no action {action!r} (its actions: {known})"
        )
    return found


def parse_assignments(words: Iterable[str]) -> dict[str, str]:
    """``key=value`` words -> {key: value}; each key once."""
    values: dict[str, str] = {}
    for word in words:
        key, equals, value = word.partition("=")
        key = key.strip()
        if not equals or not key:
            raise JobInputError(INPUTS, f"{word!r} is not key=value")
        if key in values:
            raise JobInputError(f"{INPUTS}.{key}", "given twice")
        values[key] = value
    return values


def typed_value(spec: InputSpec, text: str) -> Any:
    """The value of an input given as text, typed as its interface declares it."""
    field = f"{INPUTS}.{spec.name}"
    kind = spec.type
    if kind is FieldType.STRING:
        return text
    word = text.strip()
    if kind is FieldType.INTEGER:
        try:
            return int(word)
        except ValueError:
            raise JobInputError(field, f"must be an integer, got {text!r}") from None
    if kind is FieldType.NUMBER:
        try:
            number = int(word) if word.lstrip("+-").isdigit() else float(word)
        except ValueError:
            raise JobInputError(field, f"must be a number, got {text!r}") from None
        if not math.isfinite(number):
            raise JobInputError(field, "must be a finite number")
        return number
    if kind is FieldType.BOOLEAN:
        if word.lower() in TRUE_WORDS:
            return True
        if word.lower() in FALSE_WORDS:
            return False
        raise JobInputError(field, f"must be true or false, got {text!r}")
    if kind is FieldType.LIST:
        if word.startswith("["):
            return _json(field, word, list, "a JSON list")
        return [item.strip() for item in word.split(",") if item.strip()]
    return _json(field, word, dict, "a JSON object")


def _json(field: str, text: str, kind: type, what: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, kind):
        raise JobInputError(field, f"must be {what}, got {text!r}")
    return value


def check_inputs(action: ActionSpec, values: Mapping[str, Any], *, as_text: bool) -> dict[str, Any]:
    """The inputs for ``action``, checked as its host would check them; with
    ``as_text`` the values are text and typed first. JobInputError names the input."""
    for key in values:
        if action.input(key) is None:
            raise JobInputError(
                f"{INPUTS}.{key}",
                f"is not an input of {action.full_name} (it takes: {action.takes()})",
            )
    typed: dict[str, Any] = {}
    for key, value in values.items():
        spec = action.input(key)
        assert spec is not None
        typed[key] = typed_value(spec, value) if as_text and isinstance(value, str) else value
    try:
        return action.checker().validate_inputs(typed)
    except InputError as exc:
        raise JobInputError(
            f"{INPUTS}.{exc.field}", f"{exc.reason} ({action.full_name} takes: {action.takes()})"
        ) from None
