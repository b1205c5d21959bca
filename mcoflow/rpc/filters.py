"""Host selection filters (DESIGN §4): identity, facts, classes and agents, ANDed."""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Mapping
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

Operator = Literal["==", "!=", "=~", "<", ">", "<=", ">="]
OPERATORS: tuple[str, ...] = ("==", "!=", "=~", "<", ">", "<=", ">=")

MAX_FILTER_ITEMS = 1000
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
    """A filter that cannot be used; the message names the entry and what is wrong."""


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
    """Which hosts a request is for. Empty fields match every host."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    identity: tuple[FilterText, ...] = ()
    facts: tuple[FactFilter, ...] = ()
    classes: tuple[FilterText, ...] = ()
    agents: tuple[FilterText, ...] = ()

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
        return not (self.identity or self.facts or self.classes or self.agents)

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
        return all(any(match_name(p, a) for a in agents) for p in self.agents)

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
        return " ".join(words)

    @classmethod
    def from_json(cls, value: Mapping[str, object]) -> Filter:
        """A filter from its JSON form; FilterError in plain words if it is not one."""
        try:
            return cls.model_validate(value)
        except ValidationError as exc:
            raise FilterError(problem_text(exc)) from None
