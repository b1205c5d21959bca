"""The run flow: nested sequences and concurrences of steps, and output references.

A flow is stored compactly as nested lists: ``["S", ["C", 1, 2], 3]`` runs steps 1 and
2 concurrently, then step 3. References (``{"$ref": [step, "key", ...]}``) inside a
step's input make it depend on the producing step and are resolved at run time.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

REF_KEY = "$ref"
SEQUENCE = "S"
CONCURRENCE = "C"

FlowJSON = int | list["FlowJSON | str"]


class UnresolvedReference(LookupError):
    """A reference that cannot be resolved against its producer's output."""


@dataclass(frozen=True)
class OutputReference:
    """Placeholder for (part of) another action's output, known only at run time."""

    step: int
    path: tuple[str | int, ...] = ()

    def __getitem__(self, key: str | int) -> OutputReference:
        return OutputReference(self.step, (*self.path, key))

    def to_json(self) -> dict[str, list[str | int]]:
        return {REF_KEY: [self.step, *self.path]}

    def __repr__(self) -> str:
        tail = "".join(f"[{p!r}]" for p in self.path)
        return f"<output of step {self.step}{tail}>"


# a list of these holds no reference: the walks below skip it in one pass (a fleet's
# input lists its hosts, 100,000 of them)
_PLAIN = frozenset({str, int, float, bool, type(None)})


def _plain(items: Sequence[Any]) -> bool:
    return all(map(_PLAIN.__contains__, map(type, items)))


def encode_references(value: Any) -> Any:
    """Replace OutputReference objects by their JSON form, recursively."""
    if isinstance(value, OutputReference):
        return value.to_json()
    if _is_ref(value):
        return value
    if isinstance(value, Mapping):
        return {k: encode_references(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return list(value) if _plain(value) else [encode_references(v) for v in value]
    return value


def _is_ref(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and REF_KEY in value


def referenced_steps(value: Any) -> set[int]:
    """Step ids referenced anywhere inside an encoded input."""
    found: set[int] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if _is_ref(item):
            found.add(int(item[REF_KEY][0]))
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list) and not _plain(item):
            stack.extend(item)
    return found


def contains_reference(value: Any) -> bool:
    if _is_ref(value) or isinstance(value, OutputReference):
        return True
    if isinstance(value, Mapping):
        return any(contains_reference(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return not _plain(value) and any(contains_reference(v) for v in value)
    return False


def resolve_references(value: Any, outputs: Mapping[int, Any]) -> Any:
    """Replace encoded references by the producers' outputs (skipped producers give None)."""
    if _is_ref(value):
        step, *path = value[REF_KEY]
        current = outputs.get(int(step))
        for key in path:
            if current is None:
                return None
            try:
                current = current[key]
            except (KeyError, IndexError, TypeError) as exc:
                raise UnresolvedReference(
                    f"output of step {step} has no {'/'.join(map(str, path))}"
                ) from exc
        return current
    if isinstance(value, dict):
        return {k: resolve_references(v, outputs) for k, v in value.items()}
    if isinstance(value, list):
        return list(value) if _plain(value) else [resolve_references(v, outputs) for v in value]
    return value


@dataclass
class FlowNode:
    """A sequence or concurrence being built during planning."""

    kind: str
    children: list[FlowNode | int] = field(default_factory=list)

    def to_json(self) -> FlowJSON | None:
        parts: list[FlowJSON | str] = []
        for child in self.children:
            encoded = child.to_json() if isinstance(child, FlowNode) else child
            if encoded is not None:
                parts.append(encoded)
        if not parts:
            return None
        if len(parts) == 1:
            return parts[0]  # type: ignore[return-value]
        flat: list[FlowJSON | str] = [self.kind]
        for part in parts:
            # a sequence directly inside a sequence (or concurrence in concurrence) adds nothing
            if isinstance(part, list) and part[0] == self.kind:
                flat.extend(part[1:])
            else:
                flat.append(part)
        return flat


def flow_steps(flow: FlowJSON | None) -> Iterator[int]:
    if flow is None:
        return
    if isinstance(flow, int):
        yield flow
        return
    for child in flow[1:]:
        yield from flow_steps(child)  # type: ignore[arg-type]


def ordering_edges(flow: FlowJSON | None) -> dict[int, set[int]]:
    """For every step, the steps that must finish before it starts, from the flow alone."""
    deps: dict[int, set[int]] = {}

    def walk(node: FlowJSON, before: frozenset[int]) -> frozenset[int]:
        """Visit node, all of whose entries wait for ``before``; return its exits."""
        if isinstance(node, int):
            deps.setdefault(node, set()).update(before)
            return frozenset({node})
        kind, children = node[0], node[1:]
        if kind == SEQUENCE:
            current = before
            for child in children:
                current = walk(child, current)  # type: ignore[arg-type]
            return current
        exits: set[int] = set()
        for child in children:
            exits |= walk(child, before)  # type: ignore[arg-type]
        return frozenset(exits)

    if flow is not None:
        walk(flow, frozenset())
    return deps


@dataclass(frozen=True)
class StepGraph:
    """Dependencies of every run step: ordering plus references."""

    depends_on: Mapping[int, frozenset[int]]
    dependents: Mapping[int, tuple[int, ...]]
    ref_dependents: Mapping[int, tuple[int, ...]]


def build_graph(flow: FlowJSON | None, inputs: Mapping[int, Any]) -> StepGraph:
    depends: dict[int, set[int]] = {s: set(d) for s, d in ordering_edges(flow).items()}
    ref_deps: dict[int, set[int]] = {}
    for step in depends:
        refs = referenced_steps(inputs.get(step))
        refs.discard(step)
        ref_deps[step] = refs
        depends[step] |= refs
    dependents: dict[int, list[int]] = {s: [] for s in depends}
    ref_dependents: dict[int, list[int]] = {s: [] for s in depends}
    for step, before in depends.items():
        for producer in before:
            dependents.setdefault(producer, []).append(step)
        for producer in ref_deps[step]:
            ref_dependents.setdefault(producer, []).append(step)
    return StepGraph(
        depends_on={s: frozenset(d) for s, d in depends.items()},
        dependents={s: tuple(sorted(d)) for s, d in dependents.items()},
        ref_dependents={s: tuple(sorted(d)) for s, d in ref_dependents.items()},
    )


def check_acyclic(graph: StepGraph) -> None:
    """References can point forward in a sequence; that would deadlock, so refuse it."""
    remaining = {s: set(d) for s, d in graph.depends_on.items()}
    ready = [s for s, d in remaining.items() if not d]
    seen = 0
    while ready:
        step = ready.pop()
        seen += 1
        for dependent in graph.dependents.get(step, ()):
            remaining[dependent].discard(step)
            if not remaining[dependent]:
                ready.append(dependent)
    if seen != len(remaining):
        stuck = sorted(s for s, d in remaining.items() if d)
        raise ValueError(f"the flow has a dependency cycle through steps {stuck}")


def ordered(steps: Sequence[int], graph: StepGraph) -> list[int]:
    """Steps in an order that respects dependencies (used by tests and the console)."""
    remaining = {s: set(graph.depends_on.get(s, ())) for s in steps}
    out: list[int] = []
    ready = sorted(s for s, d in remaining.items() if not d)
    while ready:
        step = ready.pop(0)
        out.append(step)
        for dependent in graph.dependents.get(step, ()):
            if dependent in remaining:
                remaining[dependent].discard(step)
                if not remaining[dependent]:
                    ready.append(dependent)
    return out
