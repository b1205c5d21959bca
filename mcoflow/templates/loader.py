"""The template loader: YAML text -> a checked Template, or a TemplateLoadError naming
the file, the line and the field. Everything that can be checked before a host is
touched is checked here: fields, types, the agents' declared actions, inputs and
outputs, references (to inputs, and to earlier steps only, so no cycle can form),
conditions, durations, fleet defaults."""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from mcoflow.agent.interface import ActionInterface, InputError
from mcoflow.engine import RescueStrategy
from mcoflow.job_request import JobInputError, host_count
from mcoflow.templates.expressions import Declared, StepParts, holds_reference
from mcoflow.templates.model import (
    INPUT_TYPES,
    Block,
    FleetDefaults,
    Interpolation,
    Ref,
    Step,
    Template,
    TemplateInput,
)
from mcoflow.templates.nodes import Reader, Where, compose, line_of

TOP_FIELDS = ("name", "description", "inputs", "fleet", "steps")
INPUT_FIELDS = ("type", "required", "default", "pattern", "description")
STEP_FIELDS = (
    "name", "agent", "action", "inputs", "for_each", "when", "rescue", "timeout", "until",
)  # fmt: skip
FLEET_FIELDS = ("concurrency", "batch_size", "max_failures")
TEMPLATE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
MAX_STEPS = 200
MAX_BLOCK_DEPTH = 8


@functools.cache
def builtin_interfaces() -> Mapping[str, Mapping[str, ActionInterface]]:
    """The declared interface of every action of the agents mcoflow ships. Templates
    may call these agents only: an agent unknown here cannot be checked at load."""
    from mcoflow.agent.plugins import AGENT_CLASSES, make_agents

    agents = make_agents(list(AGENT_CLASSES))
    return {
        name: {action: a.interface for action, a in agent.actions.items()}
        for name, agent in agents.items()
    }


def template_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def parse_template(text: str, source: str) -> Template:
    """The template ``text`` of file ``source`` (named in errors), checked."""
    where = Where(source)
    root = compose(where, text)
    return _Loader(Reader(where), text=text).template(root)


@dataclass
class _Loader(StepParts):
    text: str = ""
    count: int = 0

    # ---- the file ------------------------------------------------------------------

    def template(self, root: yaml.Node) -> Template:
        top = self.read.mapping(root, "", TOP_FIELDS)
        for required in ("name", "description", "steps"):
            if required not in top:
                self.fail(root, required, "missing (a template has name, description, steps)")
        name = self.read.text(top["name"], "name")
        if TEMPLATE_NAME.fullmatch(name) is None:
            self.fail(top["name"], "name", f"{name[:64]!r}: use a-z, 0-9, '-' and '_'")
        description = self.read.text(top["description"], "description")
        inputs = tuple(self._inputs(top["inputs"])) if "inputs" in top else ()
        self.inputs = {i.name: i for i in inputs}
        defaults = self._fleet(top["fleet"]) if "fleet" in top else FleetDefaults()
        self._collect_names(top["steps"], 0)
        steps = self._block("S", top["steps"], "steps", 0)
        if not steps:
            self.fail(top["steps"], "steps", "a template needs at least one step")
        return Template(
            name=name,
            description=description.strip(),
            inputs=inputs,
            source=self.read.where.file,
            defaults=defaults,
            steps=steps,
            digest=template_digest(self.text),
        )

    def _inputs(self, node: yaml.Node) -> list[TemplateInput]:
        found = []
        for name, spec_node in self.read.mapping(node, "inputs").items():
            where = f"inputs.{name}"
            if WORD.fullmatch(name) is None:
                self.fail(spec_node, where, "an input's name uses letters, digits, '_', '-'")
            spec = self.read.mapping(spec_node, where, INPUT_FIELDS)
            kind = self.read.text(spec["type"], f"{where}.type") if "type" in spec else "string"
            if kind not in INPUT_TYPES:
                self.fail(spec["type"], f"{where}.type", f"one of {', '.join(INPUT_TYPES)}")
            required = (
                self._bool(spec["required"], f"{where}.required") if "required" in spec else False
            )
            pattern = None
            if "pattern" in spec:
                pattern = self.read.text(spec["pattern"], f"{where}.pattern")
                if kind not in ("string", "list"):
                    self.fail(spec["pattern"], f"{where}.pattern", f"a {kind} takes no pattern")
                try:
                    re.compile(pattern)
                except (re.error, RecursionError, OverflowError) as exc:
                    self.fail(spec["pattern"], f"{where}.pattern", f"not a valid regex: {exc}")
            description = (
                self.read.text(spec["description"], f"{where}.description", empty=True)
                if "description" in spec
                else ""
            )
            item = TemplateInput(
                name=name,
                type=kind,
                required=required,
                pattern=pattern,
                description=description,
            )
            if "default" in spec:
                raw = self.read.plain(spec["default"], f"{where}.default")
                if raw is not None:
                    if required:
                        self.fail(
                            spec["default"], f"{where}.default", "a required input has no default"
                        )
                    try:
                        default = item.parse(raw)
                    except (ValueError, re.error, RecursionError) as exc:
                        self.fail(spec["default"], f"{where}.default", str(exc))
                    item = item.model_copy(update={"default": default})
            found.append(item)
        return found

    def _fleet(self, node: yaml.Node) -> FleetDefaults:
        spec = self.read.mapping(node, "fleet", FLEET_FIELDS)
        values: dict[str, Any] = {}
        if "concurrency" in spec:
            value = self.read.scalar(spec["concurrency"], "fleet.concurrency")
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100_000:
                self.fail(spec["concurrency"], "fleet.concurrency", "a whole number from 1")
            values["concurrency"] = value
        for key in ("batch_size", "max_failures"):
            if key in spec:
                value = self.read.scalar(spec[key], f"fleet.{key}")
                if isinstance(value, bool) or not isinstance(value, int | str):
                    self.fail(spec[key], f"fleet.{key}", "a whole number or a percentage (10%)")
                try:
                    host_count(str(value), 100, key)
                except JobInputError as exc:
                    self.fail(spec[key], f"fleet.{key}", exc.message)
                values[key] = str(value)
        return FleetDefaults(**values)

    # ---- steps -------------------------------------------------------------------

    def _collect_names(self, node: yaml.Node, depth: int) -> None:
        """Every step name in the file, so a reference forward reads as such (not as a
        name that does not exist). Best effort: the real pass reports malformed parts."""
        if depth > MAX_BLOCK_DEPTH or not isinstance(node, yaml.SequenceNode):
            return
        for item in node.value:
            if not isinstance(item, yaml.MappingNode):
                continue
            for key, value in item.value:
                if not isinstance(key, yaml.ScalarNode):
                    continue
                if key.value in ("sequence", "concurrence"):
                    self._collect_names(value, depth + 1)
                elif key.value == "name" and isinstance(value, yaml.ScalarNode):
                    self.all_names.add(str(value.value))

    def _block(
        self, kind: str, node: yaml.Node, where: str, depth: int
    ) -> tuple[Step | Block, ...]:
        if depth > MAX_BLOCK_DEPTH:
            self.fail(
                node, where, f"sequences and concurrences nested deeper than {MAX_BLOCK_DEPTH}"
            )
        children: list[Step | Block] = []
        for n, item in enumerate(self.read.sequence(node, where)):
            here = f"{where}[{n}]"
            if isinstance(item, yaml.MappingNode) and any(
                isinstance(k, yaml.ScalarNode) and k.value in ("sequence", "concurrence")
                for k, _ in item.value
            ):
                spec = self.read.mapping(item, here, ("sequence", "concurrence"))
                if len(spec) != 1:
                    self.fail(item, here, "a block is either a sequence or a concurrence")
                ((word, inner),) = spec.items()
                sub = self._block(
                    "S" if word == "sequence" else "C", inner, f"{here}.{word}", depth + 1
                )
                if sub:
                    children.append(Block("S" if word == "sequence" else "C", sub))
            else:
                children.append(self._step(item, here))
        return tuple(children)

    def _step(self, node: yaml.Node, where: str) -> Step:
        self.count += 1
        if self.count > MAX_STEPS:
            self.fail(node, where, f"a template has at most {MAX_STEPS} steps")
        spec = self.read.mapping(node, where, (*STEP_FIELDS, "sequence", "concurrence"))
        for required in ("agent", "action"):
            if required not in spec:
                self.fail(node, f"{where}.{required}", "missing (a step calls agent.action)")
        agent = self.read.text(spec["agent"], f"{where}.agent")
        interfaces = builtin_interfaces()
        if agent not in interfaces:
            known = ", ".join(sorted(interfaces))
            self.fail(
                spec["agent"], f"{where}.agent", f"unknown agent {agent[:64]!r} (known: {known})"
            )
        action = self.read.text(spec["action"], f"{where}.action")
        if action not in interfaces[agent]:
            known = ", ".join(sorted(interfaces[agent]))
            self.fail(
                spec["action"],
                f"{where}.action",
                f"{agent} has no action {action[:64]!r} (its actions: {known})",
            )
        interface = interfaces[agent][action]
        name = f"{agent}.{action}"
        if "name" in spec:
            name = self.read.text(spec["name"], f"{where}.name")
            if WORD.fullmatch(name) is None:
                self.fail(
                    spec["name"], f"{where}.name", "a step's name uses letters, digits, '_', '-'"
                )
            if name in self.declared:
                self.fail(spec["name"], f"{where}.name", f"another step is named {name!r}")
        for_each = (
            self._for_each(spec["for_each"], f"{where}.for_each") if "for_each" in spec else None
        )
        inputs, dynamic = self._step_inputs(
            spec.get("inputs"), node, where, interface, name, for_each, f"{agent}.{action}"
        )
        step = Step(
            name=name,
            agent=agent,
            action=action,
            line=line_of(node),
            inputs=inputs,
            for_each=for_each,
            when=self._when(spec["when"], f"{where}.when", name) if "when" in spec else None,
            rescue=self._rescue(spec["rescue"], f"{where}.rescue")
            if "rescue" in spec
            else RescueStrategy.PAUSE,
            timeout=self._duration(spec["timeout"], f"{where}.timeout", 86400)
            if "timeout" in spec
            else None,
            until=self._until(spec["until"], f"{where}.until", interface, f"{agent}.{action}")
            if "until" in spec
            else None,
            dynamic=dynamic,
        )
        if "name" in spec or name not in self.declared:
            self.declared[name] = Declared(step, interface)
        return step

    def _step_inputs(
        self,
        node: yaml.Node | None,
        step_node: yaml.Node,
        where: str,
        interface: ActionInterface,
        name: str,
        for_each: Ref | None,
        call: str,
    ) -> tuple[dict[str, Any], bool]:
        given = self.read.mapping(node, f"{where}.inputs") if node is not None else {}
        specs = {s.name: s for s in interface.inputs}
        values: dict[str, Any] = {}
        dynamic = False
        for key, value_node in given.items():
            here = f"{where}.inputs.{key}"
            if key not in specs:
                listed = ", ".join(specs) or "none"
                self.fail(
                    value_node,
                    here,
                    f"{call} takes no input {key!r} (its inputs: {listed})",
                )
            value = self._value(self.read.plain(value_node, here), value_node, here, name, for_each)
            spec = specs[key]
            if isinstance(value, Ref | Interpolation) or holds_reference(value):
                dynamic = True
                self._check_fits(value, spec.type, value_node, here)
            else:
                try:
                    spec.validate(value)
                except InputError as exc:
                    self.fail(value_node, here, exc.reason)
            values[key] = value
        for spec in interface.inputs:
            if spec.required and spec.name not in values:
                self.fail(
                    node if node is not None else step_node,
                    f"{where}.inputs.{spec.name}",
                    "missing: the action requires it",
                )
        return values, dynamic
