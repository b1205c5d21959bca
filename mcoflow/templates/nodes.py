"""Reading a template's YAML as nodes that keep their line, so every error names the
file, the line and the field. Only the safe loader's composer is used (no object is
ever constructed from a tag), aliases are refused, and scalars are read as the plain
JSON types alone."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NoReturn

import yaml

# a template is small; these keep a hostile file from costing much
MAX_TEXT_BYTES = 256 * 1024
MAX_DEPTH = 24

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_SCALARS = frozenset({_STR, _INT, _FLOAT, _BOOL, _NULL})
_CONSTRUCTOR = yaml.constructor.SafeConstructor()


class _Loader(yaml.SafeLoader):
    """The safe loader's composer, refusing aliases where they are written: an alias
    can make a loop or an exponential blow-up of a small file."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed in a template", mark
            )
        return super().compose_node(parent, index)


class TemplateLoadError(ValueError):
    """A template file refused: ``file``, ``line`` (1-based) and ``field`` (a dotted
    path such as ``steps[2].inputs.package``) say where, the message what is wrong."""

    def __init__(self, file: str, line: int, field: str, problem: str) -> None:
        self.file = file
        self.line = max(1, int(line))
        self.field = field or "(file)"
        self.problem = problem
        super().__init__(f"{file}:{self.line}: {self.field}: {problem}")


@dataclass(frozen=True)
class Where:
    """The file being read; raises its errors."""

    file: str

    def fail(self, node: yaml.Node | None, field: str, problem: str) -> NoReturn:
        line = node.start_mark.line + 1 if node is not None else 1
        raise TemplateLoadError(self.file, line, field, problem)


def compose(where: Where, text: str) -> yaml.Node:
    """The document's root node; a YAML syntax error names its line."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_TEXT_BYTES:
        where.fail(None, "(file)", f"is larger than {MAX_TEXT_BYTES // 1024} KiB")
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        what = " ".join(p for p in (exc.context, exc.problem) if p) or "not valid YAML"
        raise TemplateLoadError(where.file, line, "(yaml)", f"not valid YAML: {what}") from None
    except yaml.YAMLError as exc:
        raise TemplateLoadError(where.file, 1, "(yaml)", f"not valid YAML: {exc}") from None
    except RecursionError:
        raise TemplateLoadError(where.file, 1, "(yaml)", "nested too deeply") from None
    if root is None:
        where.fail(None, "(file)", "is empty: a template is a mapping with name and steps")
    return root


class Reader:
    """Turns nodes into values, refusing what a template never needs."""

    def __init__(self, where: Where) -> None:
        self.where = where
        self._seen: set[int] = set()

    def fail(self, node: yaml.Node | None, field: str, problem: str) -> NoReturn:
        self.where.fail(node, field, problem)

    def _visit(self, node: yaml.Node, field: str) -> None:
        # an alias is the same node object met twice; refusing it bars loops and blow-ups
        if id(node) in self._seen:
            self.fail(node, field, "aliases (*name) are not allowed in a template")
        self._seen.add(id(node))

    def mapping(
        self, node: yaml.Node, field: str, allowed: tuple[str, ...] | None = None
    ) -> dict[str, yaml.Node]:
        """A mapping's values by key; keys are unique text and, if ``allowed`` is
        given, among those."""
        if not isinstance(node, yaml.MappingNode) or node.tag != _MAP:
            self.fail(node, field, f"expected a mapping, got {describe(node)}")
        self._visit(node, field)
        result: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in (_STR, _INT):
                self.fail(key_node, field, f"keys must be names, got {describe(key_node)}")
            key = str(key_node.value)
            here = f"{field}.{key}" if field else key
            if key in result:
                self.fail(key_node, here, "given twice")
            if allowed is not None and key not in allowed:
                self.fail(key_node, here, f"unknown field (allowed: {', '.join(allowed)})")
            result[key] = value_node
        return result

    def sequence(self, node: yaml.Node, field: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode) or node.tag != _SEQ:
            self.fail(node, field, f"expected a list, got {describe(node)}")
        self._visit(node, field)
        return list(node.value)

    def scalar(self, node: yaml.Node, field: str) -> Any:
        """A scalar as str, int, float, bool or None."""
        if not isinstance(node, yaml.ScalarNode):
            self.fail(node, field, f"expected a single value, got {describe(node)}")
        if node.tag not in _SCALARS:
            self.fail(node, field, f"tag {node.tag} is not allowed (plain values only)")
        if node.tag == _STR:
            return str(node.value)
        try:
            value = _CONSTRUCTOR.construct_object(node)
        except (yaml.YAMLError, ValueError, OverflowError) as exc:
            self.fail(node, field, f"not a valid value: {_first_line(exc)}")
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(node, field, "must be a finite number")
        return value

    def text(self, node: yaml.Node, field: str, *, empty: bool = False) -> str:
        value = self.scalar(node, field)
        if not isinstance(value, str):
            self.fail(node, field, f"expected text, got {describe(node)}")
        if not empty and not value.strip():
            self.fail(node, field, "must not be empty")
        return value

    def plain(self, node: yaml.Node, field: str, depth: int = 0) -> Any:
        """Any JSON value (mappings, lists, scalars)."""
        if depth > MAX_DEPTH:
            self.fail(node, field, f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, yaml.MappingNode):
            return {
                k: self.plain(v, f"{field}.{k}", depth + 1)
                for k, v in self.mapping(node, field).items()
            }
        if isinstance(node, yaml.SequenceNode):
            return [
                self.plain(v, f"{field}[{n}]", depth + 1)
                for n, v in enumerate(self.sequence(node, field))
            ]
        return self.scalar(node, field)


def describe(node: yaml.Node | None) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if node is None:
        return "nothing"
    kinds = {_STR: "text", _INT: "a number", _FLOAT: "a number", _BOOL: "a boolean"}
    if node.tag == _NULL:
        return "nothing (null)"
    return kinds.get(node.tag, f"a {node.tag} value")


def line_of(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
