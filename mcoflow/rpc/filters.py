"""Host selection filters (DESIGN §4): identity, facts, classes and agents, ANDed; and an
optional boolean expression over such filters (``and``, ``or``, ``not``), which the
grammar of :mod:`mcoflow.rpc.targeting` produces and the agents evaluate alike."""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Mapping
from functools import lru_cache
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    Tag,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

Operator = Literal["==", "!=", "=~", "<", ">", "<=", ">="]
OPERATORS: tuple[str, ...] = ("==", "!=", "=~", "<", ">", "<=", ">=")

MAX_FILTER_ITEMS = 1000
# an expression's nodes and nesting: an agent evaluates it for every request it sees
MAX_EXPRESSION_NODES = 1000
MAX_EXPRESSION_DEPTH = 32
FilterText = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
FactName = Annotated[str, StringConstraints(min_length=1, max_length=255)]

# Longest operators first so "a<=3" is not read as "a<" + "=3".
_CLI_FACT = re.compile(r"^([^=!<>~\s]+?)(==|!=|=~|<=|>=|<|>|=)(.*)$", re.DOTALL)


@lru_cache(maxsize=4096)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Compile a filter regex; cached because the same filter reaches many hosts."""
    try:
        return re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None


class FilterError(ValueError):
    """A filter that cannot be used; the message names the entry and what is wrong.
    From the grammar also ``column`` (1-based, in the text) and ``token`` (the word
    there, or "end of filter")."""

    def __init__(self, message: str, *, column: int | None = None, token: str | None = None):
        super().__init__(message)
        self.column = column
        self.token = token


def problem_text(exc: ValidationError) -> str:
    """A filter's validation errors as one plain sentence (not pydantic's report)."""
    parts = []
    for error in exc.errors(include_url=False):
        message = str(error.get("msg", "invalid"))
        message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
        where = ".".join(str(p) for p in error.get("loc", ()))
        # a regex error already quotes its pattern; a location would only add noise
        parts.append(
            message if message.startswith("invalid ") or not where else f"{where}: {message}"
        )
    return "; ".join(parts) or str(exc)


def is_regex(text: str) -> bool:
    return len(text) >= 2 and text.startswith("/") and text.endswith("/")


def _check_entry(text: str) -> str:
    if is_regex(text):
        compile_pattern(text[1:-1])
    return text


def match_name(pattern: str, value: str) -> bool:
    """Exact match, or regex search when the pattern is written /like this/."""
    if is_regex(pattern):
        return compile_pattern(pattern[1:-1]).search(value) is not None
    return pattern == value


def fact_text(value: object) -> str:
    # YAML and JSON facts spell booleans lower-case; str(True) would not match "true".
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _number(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


class FactFilter(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    fact: FactName
    operator: Operator
    value: Annotated[str, StringConstraints(max_length=1024)]

    @model_validator(mode="after")
    def _regex_compiles(self) -> FactFilter:
        if self.operator == "=~":
            compile_pattern(self._pattern())
        return self

    def _pattern(self) -> str:
        return self.value[1:-1] if is_regex(self.value) else self.value

    def matches(self, facts: Mapping[str, object]) -> bool:
        if self.fact not in facts:
            return False
        actual = fact_text(facts[self.fact])
        if self.operator == "=~":
            return compile_pattern(self._pattern()).search(actual) is not None
        left: float | str = actual
        right: float | str = self.value
        left_number, right_number = _number(actual), _number(self.value)
        if left_number is not None and right_number is not None:
            left, right = left_number, right_number
        else:
            left, right = actual, self.value
        match self.operator:
            case "==":
                return left == right
            case "!=":
                return left != right
            case "<":
                return left < right  # type: ignore[operator]
            case ">":
                return left > right  # type: ignore[operator]
            case "<=":
                return left <= right  # type: ignore[operator]
            case ">=":
                return left >= right  # type: ignore[operator]
        raise AssertionError(self.operator)  # pragma: no cover - Literal is exhaustive

    @classmethod
    def parse(cls, text: str) -> FactFilter:
        """Read ``fact=value``, ``fact==value``, ``fact=~regex``, ``fact>=3`` ..."""
        found = _CLI_FACT.match(text.strip())
        if found is None:
            raise FilterError(f"invalid fact filter {text!r}: expected FACT OPERATOR VALUE")
        fact, operator, value = found.groups()
        try:
            return cls.model_validate(
                {"fact": fact, "operator": "==" if operator == "=" else operator, "value": value}
            )
        except ValidationError as exc:
            raise FilterError(f"fact filter {text!r}: {problem_text(exc)}") from None

    def to_cli(self) -> str:
        """The ``fact=value`` word that parses back to this entry."""
        # "fact=value" is how operators write equality; "==" stays where "=" would misparse
        plain = self.operator == "==" and self.value[:1] not in ("=", "~")
        return f"{self.fact}{'=' if plain else self.operator}{self.value}"


class Filter(BaseModel):
    """Which hosts a request is for. Empty fields match every host; ``expression``, when
    set, must hold as well (it is left out of the JSON when unset, so a filter of entries
    reads as it always did)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    identity: tuple[FilterText, ...] = ()
    facts: tuple[FactFilter, ...] = ()
    classes: tuple[FilterText, ...] = ()
    agents: tuple[FilterText, ...] = ()
    expression: Expression | None = None

    @model_serializer(mode="wrap")
    def _without_unset_expression(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if self.expression is None:
            data.pop("expression", None)
        return data

    @model_validator(mode="after")
    def _expression_size(self) -> Filter:
        if self.expression is not None:
            nodes, depth = expression_size(self.expression)
            if nodes > MAX_EXPRESSION_NODES:
                raise ValueError(f"expression: at most {MAX_EXPRESSION_NODES} nodes")
            if depth > MAX_EXPRESSION_DEPTH:
                raise ValueError(f"expression: nested at most {MAX_EXPRESSION_DEPTH} deep")
        return self

    @field_validator("identity", "classes", "agents")
    @classmethod
    def _entries(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        if len(values) > MAX_FILTER_ITEMS:
            raise ValueError(f"at most {MAX_FILTER_ITEMS} entries")
        return tuple(_check_entry(value) for value in values)

    @field_validator("facts")
    @classmethod
    def _fact_count(cls, values: tuple[FactFilter, ...]) -> tuple[FactFilter, ...]:
        if len(values) > MAX_FILTER_ITEMS:
            raise ValueError(f"at most {MAX_FILTER_ITEMS} entries")
        return values

    @property
    def empty(self) -> bool:
        return self.expression is None and not (
            self.identity or self.facts or self.classes or self.agents
        )

    def matches(
        self,
        *,
        identity: str,
        facts: Mapping[str, object],
        classes: Collection[str],
        agents: Collection[str],
    ) -> bool:
        # Identities are alternatives; every fact, class and agent entry must hold.
        if self.identity and not any(match_name(p, identity) for p in self.identity):
            return False
        if not all(fact.matches(facts) for fact in self.facts):
            return False
        if not all(any(match_name(p, c) for c in classes) for p in self.classes):
            return False
        if not all(any(match_name(p, a) for a in agents) for p in self.agents):
            return False
        if self.expression is None:
            return True
        return self.expression.holds(_Host(identity, facts, classes, agents))

    @classmethod
    def parse_cli(
        cls,
        strings: Iterable[str] = (),
        *,
        identity: Iterable[str] = (),
        classes: Iterable[str] = (),
        agents: Iterable[str] = (),
    ) -> Filter:
        """Build a filter from command-line words.

        Each word is a fact expression (``os_family=debian``, ``cpus>=4``,
        ``hostname=~^web``) or a prefixed selector: ``identity:NAME``,
        ``class:NAME``, ``agent:NAME`` (NAME exact or ``/regex/``).
        """
        identities, class_names, agent_names = list(identity), list(classes), list(agents)
        facts: list[FactFilter] = []
        for word in strings:
            kind, sep, rest = word.partition(":")
            if sep and kind in ("identity", "class", "agent"):
                if not rest:
                    raise FilterError(f"{word!r}: give a name or /regex/ after '{kind}:'")
                if is_regex(rest):
                    try:
                        compile_pattern(rest[1:-1])
                    except ValueError as exc:
                        raise FilterError(f"{word!r}: {exc}") from None
                {"identity": identities, "class": class_names, "agent": agent_names}[kind].append(
                    rest
                )
            else:
                facts.append(FactFilter.parse(word))
        try:
            return cls(
                identity=tuple(identities),
                facts=tuple(facts),
                classes=tuple(class_names),
                agents=tuple(agent_names),
            )
        except ValidationError as exc:
            raise FilterError(problem_text(exc)) from None

    def to_cli(self) -> str:
        """The filter in the command-line grammar (``identity:/^web/ os_family=debian``);
        ``parse_cli`` of its words gives this filter back."""
        words = [f"identity:{name}" for name in self.identity]
        words += [fact.to_cli() for fact in self.facts]
        words += [f"class:{name}" for name in self.classes]
        words += [f"agent:{name}" for name in self.agents]
        if self.expression is not None:
            from mcoflow.rpc.targeting import render

            words.append(f"({render(self.expression)})" if words else render(self.expression))
        return " ".join(words)

    @classmethod
    def from_json(cls, value: Mapping[str, object]) -> Filter:
        """A filter from its JSON form; FilterError in plain words if it is not one."""
        try:
            return cls.model_validate(value)
        except ValidationError as exc:
            raise FilterError(problem_text(exc)) from None


class _Host(tuple[str, Mapping[str, object], Collection[str], Collection[str]]):
    """What an expression is evaluated on (a tuple: made once per host and request)."""

    def __new__(
        cls,
        identity: str,
        facts: Mapping[str, object],
        classes: Collection[str],
        agents: Collection[str],
    ) -> _Host:
        return super().__new__(cls, (identity, facts, classes, agents))


class Match(BaseModel):
    """An expression's leaf: entries as in a plain filter (identities ORed, the rest
    ANDed). JSON ``{"match": {"classes": ["web"]}}``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    match: Filter

    @field_validator("match")
    @classmethod
    def _entries_only(cls, value: Filter) -> Filter:
        if value.expression is not None:
            raise ValueError("a match holds entries only; nest with all, any, not")
        if value.empty:
            raise ValueError("a match needs at least one entry")
        return value

    def holds(self, host: _Host) -> bool:
        identity, facts, classes, agents = host
        return self.match.matches(identity=identity, facts=facts, classes=classes, agents=agents)


class AllOf(BaseModel):
    """Every one holds. JSON ``{"all": [...]}``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    all: tuple[Expression, ...] = Field(min_length=1)

    def holds(self, host: _Host) -> bool:
        return all(node.holds(host) for node in self.all)


class AnyOf(BaseModel):
    """At least one holds. JSON ``{"any": [...]}``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    any: tuple[Expression, ...] = Field(min_length=1)

    def holds(self, host: _Host) -> bool:
        return any(node.holds(host) for node in self.any)


class NotOf(BaseModel):
    """It does not hold. JSON ``{"not": ...}``."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", serialize_by_alias=True, validate_by_name=True
    )

    negated: Expression = Field(alias="not")

    def holds(self, host: _Host) -> bool:
        return not self.negated.holds(host)


_NODE_KINDS: dict[type, str] = {Match: "match", AllOf: "all", AnyOf: "any", NotOf: "not"}


def _node_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        keys = [key for key in ("match", "all", "any", "not") if key in value]
        return keys[0] if len(keys) == 1 else None
    return _NODE_KINDS.get(type(value))


Expression = Annotated[
    Union[  # noqa: UP007 - the tags need the union spelled out
        Annotated[Match, Tag("match")],
        Annotated[AllOf, Tag("all")],
        Annotated[AnyOf, Tag("any")],
        Annotated[NotOf, Tag("not")],
    ],
    Discriminator(
        _node_kind,
        custom_error_type="expression_node",
        custom_error_message="an expression node is one of {'match': …}, {'all': […]}, "
        "{'any': […]}, {'not': …}",
    ),
]


def children(node: Expression) -> tuple[Expression, ...]:
    if isinstance(node, AllOf):
        return node.all
    if isinstance(node, AnyOf):
        return node.any
    if isinstance(node, NotOf):
        return (node.negated,)
    return ()


def expression_size(node: Expression) -> tuple[int, int]:
    """(nodes, depth) of an expression, without recursion (it may come from anyone)."""
    nodes, deepest = 0, 0
    todo: list[tuple[Expression, int]] = [(node, 1)]
    while todo:
        current, depth = todo.pop()
        nodes += 1
        deepest = max(deepest, depth)
        todo.extend((child, depth + 1) for child in children(current))
    return nodes, deepest


for _model in (Match, AllOf, AnyOf, NotOf, Filter):
    _model.model_rebuild()
