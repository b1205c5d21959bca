"""A job template as the loader builds it: typed inputs, fleet defaults, and a tree of
steps (agent actions in sequences and concurrences) whose inputs may hold references.

The model is plain data; ``mcoflow.templates.loader`` builds it from YAML (and checks
everything it can there), ``mcoflow.templates.job`` plans it on a host."""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from mcoflow.engine import RescueStrategy
from mcoflow.job_request import JobInputError

InputType = Literal["string", "integer", "boolean", "list"]
INPUT_TYPES: tuple[str, ...] = ("string", "integer", "boolean", "list")
# the longest text a string input (or a list item) may be; the agents' own limit
MAX_TEXT = 4096
MAX_LIST_ITEMS = 1000
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})
_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")
_JSON_TYPE = {"string": "string", "integer": "integer", "boolean": "boolean", "list": "array"}


class TemplateNotFound(LookupError):
    """No template of that name in the library; the message lists close names."""


class TemplateInput(BaseModel):
    """One input of a template, as the operator gives it."""

    model_config = ConfigDict(frozen=True)

    name: str
    type: InputType = "string"
    required: bool = False
    default: Any = None
    # a full-match regular expression for a string, or for each item of a list
    pattern: str | None = None
    description: str = ""

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": _JSON_TYPE[self.type]}
        if self.type == "list":
            schema["items"] = {"type": "string"}
            if self.pattern is not None:
                schema["items"]["pattern"] = _anchored(self.pattern)
            if self.required:
                schema["minItems"] = 1
        elif self.pattern is not None:
            schema["pattern"] = _anchored(self.pattern)
        if self.default is not None:
            schema["default"] = self.default
        if self.description:
            schema["description"] = self.description
        return schema

    def parse(self, value: Any) -> Any:
        """``value`` (JSON-typed, or a CLI/form string) as this input's type; raises
        ValueError with what is wrong."""
        if self.type == "string":
            if not isinstance(value, str):
                raise ValueError(f"must be a string, got {_kind(value)}")
            return self._text(value, "")
        if self.type == "integer":
            if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
                return int(value.strip())
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"must be a whole number, got {_shown(value)}")
            return value
        if self.type == "boolean":
            if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
                return value.strip().lower() in _TRUE
            if not isinstance(value, bool):
                raise ValueError(f"must be true or false, got {_shown(value)}")
            return value
        if isinstance(value, str):
            value = [word.strip() for word in value.split(",") if word.strip()]
        if not isinstance(value, list | tuple):
            raise ValueError(f"must be a list (or names separated by commas), got {_kind(value)}")
        if len(value) > MAX_LIST_ITEMS:
            raise ValueError(f"has more than {MAX_LIST_ITEMS} items")
        items = []
        for n, item in enumerate(value):
            if not isinstance(item, str):
                raise ValueError(f"item {n + 1} must be a string, got {_kind(item)}")
            items.append(self._text(item, f"item {n + 1} "))
        if self.required and not items:
            raise ValueError("needs at least one item")
        return items

    def _text(self, value: str, what: str) -> str:
        if len(value) > MAX_TEXT:
            raise ValueError(f"{what}is longer than {MAX_TEXT} characters")
        if self.pattern is not None and re.fullmatch(self.pattern, value) is None:
            raise ValueError(f"{what}{_shown(value)} does not match {self.pattern}")
        return value


class FleetDefaults(BaseModel):
    """Fleet options a template suggests, used when the operator gives none."""

    model_config = ConfigDict(frozen=True)

    concurrency: int | None = None
    batch_size: str | None = None  # "n" or "n%", as a job request spells it
    max_failures: str | None = None


# ---- the steps ---------------------------------------------------------------------


class RefKind(enum.StrEnum):
    INPUT = "inputs"  # ${inputs.NAME}
    ITEM = "item"  # ${item}: the current item of a for_each step
    STEP = "steps"  # ${steps.NAME.OUTPUT}


@dataclass(frozen=True)
class Ref:
    """A ``${...}`` reference inside a step's inputs."""

    kind: RefKind
    name: str = ""
    output: str = ""

    def __str__(self) -> str:
        if self.kind is RefKind.ITEM:
            return "${item}"
        if self.kind is RefKind.INPUT:
            return f"${{inputs.{self.name}}}"
        return f"${{steps.{self.name}.{self.output}}}"


@dataclass(frozen=True)
class Interpolation:
    """Text with references inside (``"${inputs.package}=1.2"``): inputs and items only,
    so it is known when the step is planned."""

    parts: tuple[str | Ref, ...]


class ConditionKind(enum.StrEnum):
    CHANGED = "changed"  # any run of the named steps changed the host
    OUTPUT = "output"  # an earlier step's output equals (or not) a value
    INPUT = "input"  # a template input is true (or equals a value): decided when planned


@dataclass(frozen=True)
class Condition:
    kind: ConditionKind
    steps: tuple[str, ...] = ()  # CHANGED
    step: str = ""  # OUTPUT
    output: str = ""  # OUTPUT
    input: str = ""  # INPUT
    equals: Any = None
    not_equals: Any = None
    has_equals: bool = False
    has_not_equals: bool = False

    def text(self) -> str:
        if self.kind is ConditionKind.CHANGED:
            return f"any of {', '.join(self.steps)} changed the host"
        subject = f"{self.step}.{self.output}" if self.kind is ConditionKind.OUTPUT else self.input
        if self.has_equals:
            return f"{subject} equals {self.equals!r}"
        if self.has_not_equals:
            return f"{subject} is not {self.not_equals!r}"
        return f"{subject} is true"


@dataclass(frozen=True)
class Until:
    """Call the action again every ``interval`` seconds until ``output`` equals (or is
    no longer) a value; fail once ``max_wait`` seconds passed."""

    output: str
    interval: float
    max_wait: float
    equals: Any = None
    not_equals: Any = None
    has_equals: bool = False

    def text(self) -> str:
        if self.has_equals:
            return f"{self.output} equals {self.equals!r}"
        return f"{self.output} is not {self.not_equals!r}"


@dataclass(frozen=True)
class Step:
    """One agent action; with ``for_each`` once per item of a list input, concurrently."""

    name: str
    agent: str
    action: str
    line: int
    inputs: Mapping[str, Any] = field(default_factory=dict)  # values may hold Ref
    for_each: Ref | None = None
    when: Condition | None = None
    rescue: RescueStrategy = RescueStrategy.PAUSE
    timeout: float | None = None
    until: Until | None = None
    # whether ``inputs`` holds any Ref or Interpolation (if not, it is used as it is)
    dynamic: bool = False


@dataclass(frozen=True)
class Block:
    """Steps in sequence ("S") or in concurrence ("C")."""

    kind: Literal["S", "C"]
    children: tuple[Step | Block, ...]


def walk_steps(nodes: tuple[Step | Block, ...]) -> list[Step]:
    """Every step, in the order the file lists them."""
    found: list[Step] = []
    for node in nodes:
        found.extend(walk_steps(node.children) if isinstance(node, Block) else [node])
    return found


# ---- the template ------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """A loaded, checked job template. ``source`` is its file's path, or
    ``mcoflow:NAME.yaml`` for one mcoflow ships; ``digest`` identifies its text."""

    name: str
    description: str
    inputs: tuple[TemplateInput, ...]
    source: str
    defaults: FleetDefaults = field(default_factory=FleetDefaults)
    steps: tuple[Step | Block, ...] = ()
    digest: str = ""

    def input_schema(self) -> dict[str, Any]:
        """The inputs as a JSON Schema object (for the API and the web form)."""
        return {
            "type": "object",
            "title": self.name,
            "description": self.description,
            "properties": {i.name: i.json_schema() for i in self.inputs},
            "required": [i.name for i in self.inputs if i.required and i.default is None],
            "additionalProperties": False,
        }

    def parse_inputs(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Inputs given as JSON values or as text (CLI, form) checked and typed, with the
        defaults of those not given; raises JobInputError naming ``inputs.NAME``."""
        if not isinstance(raw, Mapping):
            raise JobInputError(
                "inputs", f"expected a mapping of names to values, got {_kind(raw)}"
            )
        known = {i.name for i in self.inputs}
        for key in raw:
            if key not in known:
                listed = ", ".join(sorted(known)) or "none"
                raise JobInputError(
                    f"inputs.{_printable(key)}",
                    f"not an input of template {self.name} (its inputs: {listed})",
                )
        parsed: dict[str, Any] = {}
        for spec in self.inputs:
            value = raw.get(spec.name)
            if value is None or value == "":
                if spec.default is not None:
                    parsed[spec.name] = _copy(spec.default)
                elif spec.required:
                    raise JobInputError(f"inputs.{spec.name}", "is required")
                else:
                    parsed[spec.name] = [] if spec.type == "list" else None
                continue
            try:
                parsed[spec.name] = spec.parse(value)
            except ValueError as exc:
                raise JobInputError(f"inputs.{spec.name}", str(exc)) from None
        return parsed

    def step_names(self) -> list[str]:
        return [s.name for s in walk_steps(self.steps)]

    def outline(self) -> list[str]:
        """The steps as lines of text, indented by block (for ``templates show``)."""
        return _outline(self.steps, 0)


def _outline(nodes: tuple[Step | Block, ...], depth: int) -> list[str]:
    lines: list[str] = []
    pad = "  " * depth
    for node in nodes:
        if isinstance(node, Block):
            word = "in sequence" if node.kind == "S" else "concurrently"
            lines.append(f"{pad}{word}:")
            lines.extend(_outline(node.children, depth + 1))
            continue
        text = f"{pad}{node.name}: {node.agent}.{node.action}"
        args = ", ".join(f"{k}={value_text(v)}" for k, v in node.inputs.items())
        text += f"({args})"
        if node.for_each is not None:
            text += f" for each of {node.for_each}, concurrently"
        if node.when is not None:
            text += f"; only if {node.when.text()}"
        if node.until is not None:
            until = node.until
            text += (
                f"; until {until.text()} (every {until.interval:g} s, at most {until.max_wait:g} s)"
            )
        if node.timeout is not None:
            text += f"; time limit {node.timeout:g} s"
        if node.rescue is not RescueStrategy.PAUSE:
            text += f"; on error: {node.rescue.value}"
        lines.append(text)
    return lines


def value_text(value: Any) -> str:
    """A step input's value as the template writes it."""
    if isinstance(value, Interpolation):
        return "".join(str(p) for p in value.parts)
    return str(value)


def _anchored(pattern: str) -> str:
    """JSON Schema patterns search; ours match the whole value."""
    return f"^(?:{pattern})$"


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 64 else text[:61] + "..."


def _printable(key: object) -> str:
    text = key if isinstance(key, str) else repr(key)
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= 64 else text[:64] + "…"
