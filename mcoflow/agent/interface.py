"""Declared interfaces of agent actions, and validation of inputs against them.

Nothing runs before the inputs passed this check: a missing required input is status 3,
anything else wrong (type, pattern, length, unknown input) is status 4, naming the field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

MAX_STRING_LENGTH = 4096


class FieldType(StrEnum):
    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    LIST = "list"
    DICT = "dict"


class InputError(Exception):
    """An input does not satisfy the action's interface."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name
        self.reason = reason


class MissingInput(InputError):
    def __init__(self, field_name: str) -> None:
        super().__init__(field_name, "is required")


class InvalidInput(InputError):
    pass


@dataclass(frozen=True)
class InputSpec:
    name: str
    type: FieldType = FieldType.STRING
    required: bool = True
    pattern: str | None = None
    max_length: int | None = None
    description: str = ""

    def validate(self, value: object) -> object:
        if self.type is FieldType.STRING:
            if not isinstance(value, str):
                raise InvalidInput(self.name, f"must be a string, got {_kind(value)}")
            limit = self.max_length or MAX_STRING_LENGTH
            if len(value) > limit:
                raise InvalidInput(self.name, f"is longer than {limit} characters")
            if self.pattern is not None and re.fullmatch(self.pattern, value) is None:
                raise InvalidInput(self.name, f"does not match {self.pattern}")
            return value
        if self.type is FieldType.INTEGER:
            # bool is an int subclass: True is not a valid count.
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidInput(self.name, f"must be an integer, got {_kind(value)}")
            return value
        if self.type is FieldType.NUMBER:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidInput(self.name, f"must be a number, got {_kind(value)}")
            if not math.isfinite(value):
                raise InvalidInput(self.name, "must be a finite number")
            return value
        if self.type is FieldType.BOOLEAN:
            if not isinstance(value, bool):
                raise InvalidInput(self.name, f"must be a boolean, got {_kind(value)}")
            return value
        if self.type is FieldType.LIST:
            if not isinstance(value, list):
                raise InvalidInput(self.name, f"must be a list, got {_kind(value)}")
            if self.max_length is not None and len(value) > self.max_length:
                raise InvalidInput(self.name, f"has more than {self.max_length} items")
            return value
        if not isinstance(value, dict):
            raise InvalidInput(self.name, f"must be a mapping, got {_kind(value)}")
        return value


@dataclass(frozen=True)
class OutputSpec:
    name: str
    type: FieldType = FieldType.STRING
    default: Any = None
    description: str = ""


@dataclass(frozen=True)
class ActionInterface:
    name: str
    description: str = ""
    inputs: tuple[InputSpec, ...] = ()
    outputs: tuple[OutputSpec, ...] = ()
    # Idempotent in effect: running it again leaves the host as running it once does.
    # Only such an action is run again after the agent stopped in the middle of it.
    idempotent: bool = False
    _by_name: Mapping[str, InputSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {spec.name: spec for spec in self.inputs})

    def validate_inputs(self, data: object) -> dict[str, object]:
        """Return the validated inputs or raise MissingInput / InvalidInput."""
        if not isinstance(data, Mapping):
            raise InvalidInput("data", f"must be a mapping, got {_kind(data)}")
        for key in data:
            if not isinstance(key, str) or key not in self._by_name:
                raise InvalidInput(_printable(key), f"is not an input of {self.name}")
        result: dict[str, object] = {}
        for spec in self.inputs:
            value = data.get(spec.name)
            if value is None:
                if spec.required:
                    raise MissingInput(spec.name)
                continue
            result[spec.name] = spec.validate(value)
        return result

    def complete_outputs(self, data: Mapping[str, object]) -> dict[str, object]:
        """The declared outputs, each set to its default unless the action wrote it."""
        result = {spec.name: spec.default for spec in self.outputs}
        result.update(data)
        return result

    def describe(self) -> dict[str, object]:
        return {
            "description": self.description,
            "idempotent": self.idempotent,
            "inputs": {
                s.name: {
                    "type": s.type.value,
                    "required": s.required,
                    "pattern": s.pattern,
                    "max_length": s.max_length,
                    "description": s.description,
                }
                for s in self.inputs
            },
            "outputs": {
                s.name: {"type": s.type.value, "default": s.default, "description": s.description}
                for s in self.outputs
            },
        }


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _printable(key: object) -> str:
    text = key if isinstance(key, str) else repr(key)
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= 64 else text[:64] + "…"
