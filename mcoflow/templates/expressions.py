"""The parts of a template step the loader reads besides its call: values with
``${...}`` references, for_each, when, until, rescue and durations. A mixin of the
loader: it needs the inputs and the steps read so far."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, NoReturn

import yaml

from mcoflow.agent.interface import ActionInterface, FieldType
from mcoflow.engine import RescueStrategy
from mcoflow.templates.model import (
    Condition,
    ConditionKind,
    Interpolation,
    Ref,
    RefKind,
    Step,
    TemplateInput,
    Until,
    value_text,
)
from mcoflow.templates.nodes import Reader

WHEN_FIELDS = ("changed", "step", "output", "input", "equals", "not_equals")
UNTIL_FIELDS = ("output", "equals", "not_equals", "interval", "max_wait")
REFERENCE = re.compile(r"\$\{([^{}]*)\}")
_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)?\s*")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
# a template input's type, and the agent input types it may fill
_FITS = {
    "string": {FieldType.STRING},
    "integer": {FieldType.INTEGER, FieldType.NUMBER},
    "boolean": {FieldType.BOOLEAN},
    "list": {FieldType.LIST},
}


@dataclass
class Declared:
    """A step already read: what later steps may refer to."""

    step: Step
    interface: ActionInterface

    @property
    def call(self) -> str:
        return f"{self.step.agent}.{self.step.action}"


@dataclass
class StepParts:
    read: Reader
    inputs: dict[str, TemplateInput] = field(default_factory=dict)
    declared: dict[str, Declared] = field(default_factory=dict)
    all_names: set[str] = field(default_factory=set)

    def fail(self, node: yaml.Node | None, where: str, problem: str) -> NoReturn:
        self.read.fail(node, where, problem)

    def _value(self, raw: Any, node: yaml.Node, where: str, step: str, for_each: Ref | None) -> Any:
        if isinstance(raw, str):
            return self._expression(raw, node, where, step, for_each)
        if isinstance(raw, list):
            return [self._value(v, node, where, step, for_each) for v in raw]
        if isinstance(raw, dict):
            return {k: self._value(v, node, where, step, for_each) for k, v in raw.items()}
        return raw

    def _expression(
        self, text: str, node: yaml.Node, where: str, step: str, for_each: Ref | None
    ) -> Any:
        if "${" not in text:
            return text
        parts: list[str | Ref] = []
        end = 0
        for match in REFERENCE.finditer(text):
            if match.start() > end:
                parts.append(text[end : match.start()])
            parts.append(self._reference(match.group(1), node, where, step, for_each))
            end = match.end()
        rest = text[end:]
        if "${" in rest or any("${" in p for p in parts if isinstance(p, str)):
            self.fail(
                node,
                where,
                "a '${' without its '}' "
                "(references read ${inputs.NAME}, ${item}, ${steps.NAME.OUTPUT})",
            )
        if rest:
            parts.append(rest)
        if len(parts) == 1 and isinstance(parts[0], Ref):
            return parts[0]
        if any(isinstance(p, Ref) and p.kind is RefKind.STEP for p in parts):
            self.fail(
                node,
                where,
                "a step's output can only be a whole value (key: ${steps.NAME.OUTPUT}), "
                "not part of a text",
            )
        return Interpolation(tuple(parts))

    def _reference(
        self, body: str, node: yaml.Node, where: str, step: str, for_each: Ref | None
    ) -> Ref:
        words = body.strip().split(".")
        if words == ["item"]:
            if for_each is None:
                self.fail(node, where, "${item} is only known in a step with for_each")
            return Ref(RefKind.ITEM)
        if len(words) == 2 and words[0] == "inputs":
            if words[1] not in self.inputs:
                listed = ", ".join(self.inputs) or "none"
                self.fail(
                    node, where, f"no input {words[1][:64]!r} (the template's inputs: {listed})"
                )
            return Ref(RefKind.INPUT, words[1])
        if len(words) == 3 and words[0] == "steps":
            producer = self._earlier(words[1], node, where, step)
            outputs = {o.name for o in producer.interface.outputs}
            if words[2] not in outputs:
                listed = ", ".join(sorted(outputs)) or "none"
                self.fail(
                    node,
                    where,
                    f"step {words[1]!r} ({producer.call}) has no output "
                    f"{words[2][:64]!r} (its outputs: {listed})",
                )
            return Ref(RefKind.STEP, words[1], words[2])
        return self.fail(
            node,
            where,
            f"${{{body[:64]}}}: a reference reads ${{inputs.NAME}}, ${{item}} "
            "or ${steps.NAME.OUTPUT}",
        )

    def _earlier(self, name: str, node: yaml.Node, where: str, step: str) -> Declared:
        """The step ``name``, which must come before the step being read."""
        if name == step:
            self.fail(node, where, f"step {name!r} refers to its own output (a cycle)")
        found = self.declared.get(name)
        if found is None:
            if name in self.all_names:
                self.fail(
                    node,
                    where,
                    f"step {name!r} comes later: a step may only use the outputs of "
                    "steps before it (no cycles)",
                )
            listed = ", ".join(self.declared) or "none yet"
            self.fail(node, where, f"no step named {name[:64]!r} (steps before this one: {listed})")
        return found

    def _check_fits(self, value: Any, wanted: FieldType, node: yaml.Node, where: str) -> None:
        if isinstance(value, Interpolation):
            kind = "string"
        elif isinstance(value, Ref) and value.kind is RefKind.INPUT:
            kind = self.inputs[value.name].type
        elif isinstance(value, Ref) and value.kind is RefKind.ITEM:
            kind = "string"
        elif isinstance(value, Ref):
            producer = self.declared[value.name]
            if producer.step.for_each is not None:
                kind = "list"
            else:
                out = next(o for o in producer.interface.outputs if o.name == value.output)
                if out.type is wanted or wanted in (FieldType.DICT,):
                    return
                kind = {
                    FieldType.STRING: "string",
                    FieldType.BOOLEAN: "boolean",
                    FieldType.LIST: "list",
                }.get(out.type, "integer")
        else:
            return  # a list or mapping holding references: the agent checks it
        if wanted not in _FITS[kind]:
            self.fail(
                node, where, f"{value_text(value)} is a {kind}; this input takes a {wanted.value}"
            )

    def _for_each(self, node: yaml.Node, where: str) -> Ref:
        text = self.read.text(node, where)
        match = REFERENCE.fullmatch(text.strip())
        words = match.group(1).strip().split(".") if match else []
        if len(words) != 2 or words[0] != "inputs":
            self.fail(node, where, "for_each takes a list input: ${inputs.NAME}")
        spec = self.inputs.get(words[1])
        if spec is None:
            self.fail(node, where, f"no input {words[1][:64]!r}")
        elif spec.type != "list":
            self.fail(node, where, f"input {spec.name!r} is a {spec.type}, not a list")
        return Ref(RefKind.INPUT, words[1])

    def _when(self, node: yaml.Node, where: str, step: str) -> Condition:
        spec = self.read.mapping(node, where, WHEN_FIELDS)
        subjects = [k for k in ("changed", "step", "input") if k in spec]
        if len(subjects) != 1:
            self.fail(
                node, where, "give one of changed: [STEPS], step: NAME with output:, or input: NAME"
            )
        has_equals, has_not = "equals" in spec, "not_equals" in spec
        if has_equals and has_not:
            self.fail(
                spec["not_equals"], f"{where}.not_equals", "give equals or not_equals, not both"
            )
        equals = self._compared(spec["equals"], f"{where}.equals") if has_equals else None
        not_equals = self._compared(spec["not_equals"], f"{where}.not_equals") if has_not else None
        if subjects == ["changed"]:
            for extra in ("output", "equals", "not_equals"):
                if extra in spec:
                    self.fail(spec[extra], f"{where}.{extra}", "changed: takes no other field")
            names_node = spec["changed"]
            names = (
                [
                    self.read.text(n, f"{where}.changed[{i}]")
                    for i, n in enumerate(self.read.sequence(names_node, f"{where}.changed"))
                ]
                if isinstance(names_node, yaml.SequenceNode)
                else [self.read.text(names_node, f"{where}.changed")]
            )
            if not names:
                self.fail(names_node, f"{where}.changed", "name at least one step")
            for name in names:
                producer = self._earlier(name, names_node, f"{where}.changed", step)
                if "changed" not in {o.name for o in producer.interface.outputs}:
                    self.fail(
                        names_node,
                        f"{where}.changed",
                        f"step {name!r} ({producer.call}) has no output 'changed'",
                    )
            return Condition(ConditionKind.CHANGED, steps=tuple(names))
        if subjects == ["step"]:
            name = self.read.text(spec["step"], f"{where}.step")
            producer = self._earlier(name, spec["step"], f"{where}.step", step)
            if "output" not in spec:
                self.fail(node, f"{where}.output", "missing: which output of the step")
            output = self.read.text(spec["output"], f"{where}.output")
            if output not in {o.name for o in producer.interface.outputs}:
                self.fail(
                    spec["output"],
                    f"{where}.output",
                    f"step {name!r} ({producer.call}) has no output {output[:64]!r}",
                )
            if not (has_equals or has_not):
                self.fail(
                    node,
                    f"{where}.equals",
                    "missing: compare the output with equals: or not_equals:",
                )
            return Condition(
                ConditionKind.OUTPUT,
                step=name,
                output=output,
                equals=equals,
                not_equals=not_equals,
                has_equals=has_equals,
                has_not_equals=has_not,
            )
        if "output" in spec:
            self.fail(spec["output"], f"{where}.output", "input: takes no output")
        name = self.read.text(spec["input"], f"{where}.input")
        if name not in self.inputs:
            self.fail(spec["input"], f"{where}.input", f"no input {name[:64]!r}")
        return Condition(
            ConditionKind.INPUT,
            input=name,
            equals=equals,
            not_equals=not_equals,
            has_equals=has_equals,
            has_not_equals=has_not,
        )

    def _until(self, node: yaml.Node, where: str, interface: ActionInterface, call: str) -> Until:
        spec = self.read.mapping(node, where, UNTIL_FIELDS)
        for required in ("output", "interval", "max_wait"):
            if required not in spec:
                self.fail(
                    node,
                    f"{where}.{required}",
                    "missing (until: output, equals, interval, max_wait)",
                )
        output = self.read.text(spec["output"], f"{where}.output")
        if output not in {o.name for o in interface.outputs}:
            listed = ", ".join(o.name for o in interface.outputs) or "none"
            self.fail(
                spec["output"],
                f"{where}.output",
                f"{call} has no output {output[:64]!r} (its outputs: {listed})",
            )
        has_equals, has_not = "equals" in spec, "not_equals" in spec
        if has_equals == has_not:
            self.fail(node, f"{where}.equals", "give equals or not_equals (one of them)")
        interval = self._duration(spec["interval"], f"{where}.interval", 3600)
        max_wait = self._duration(spec["max_wait"], f"{where}.max_wait", 86400)
        if max_wait < interval:
            self.fail(spec["max_wait"], f"{where}.max_wait", "shorter than the interval")
        return Until(
            output=output,
            interval=interval,
            max_wait=max_wait,
            equals=self._compared(spec["equals"], f"{where}.equals") if has_equals else None,
            not_equals=self._compared(spec["not_equals"], f"{where}.not_equals")
            if has_not
            else None,
            has_equals=has_equals,
        )

    def _compared(self, node: yaml.Node, where: str) -> Any:
        """A value an output is compared with: plain, as written."""
        value = self.read.plain(node, where)
        if "${" in repr(value):
            self.fail(node, where, "a plain value: references are not allowed here")
        return value

    # ---- small values --------------------------------------------------------------

    def _rescue(self, node: yaml.Node, where: str) -> RescueStrategy:
        word = self.read.text(node, where)
        try:
            return RescueStrategy(word)
        except ValueError:
            return self.fail(node, where, "one of pause (the default), skip, fail")

    def _duration(self, node: yaml.Node, where: str, most: float) -> float:
        value = self.read.scalar(node, where)
        seconds: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)
        elif isinstance(value, str):
            match = _DURATION.fullmatch(value)
            if match:
                seconds = float(match.group(1)) * _UNIT[match.group(2)]
        if seconds is None:
            self.fail(node, where, "a duration: seconds, or a number with ms, s, m or h (30s, 2m)")
        assert seconds is not None
        if not 0.05 <= seconds <= most:
            self.fail(node, where, f"from 50ms to {most:g} seconds")
        return seconds

    def _bool(self, node: yaml.Node, where: str) -> bool:
        value = self.read.scalar(node, where)
        if not isinstance(value, bool):
            self.fail(node, where, "true or false")
        return bool(value)


def holds_reference(value: Any) -> bool:
    if isinstance(value, Ref | Interpolation):
        return True
    if isinstance(value, list):
        return any(holds_reference(v) for v in value)
    if isinstance(value, dict):
        return any(holds_reference(v) for v in value.values())
    return False
