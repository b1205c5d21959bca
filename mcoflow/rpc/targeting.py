"""The filter grammar of the CLI, the web console and the API (``--filter``).

A word is an entry: ``identity:NAME``, ``class:NAME``, ``agent:NAME`` (NAME exact or
``/regex/``) or a fact comparison (``os_family=debian``, ``cpus>=4``, ``kernel=~^6``).
Words side by side are ANDed, except that the identities among them are alternatives
(``identity:web1 identity:web2 class:web``: either host, if it has the class) — what
every filter text meant before this grammar, so old texts keep their meaning.
``and``, ``or``, ``not`` (any case) and parentheses combine them; ``not`` binds
tightest, then words side by side, then ``and``, then ``or``. ``@NAME`` is a saved host
group's filter, in parentheses. A ``(`` at the start of a word and the ``)`` at its end
that close nothing inside the word are parentheses of the grammar, so regexes such as
``hostname=~^web(1|2)`` stay one word.

The result is a :class:`~mcoflow.rpc.filters.Filter`: its entries alone when the text
is words side by side (or ANDed without two identity alternatives meeting), else an
expression tree that the agents evaluate. Errors are FilterErrors naming the column
and the word.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mcoflow.rpc.filters import (
    MAX_EXPRESSION_DEPTH,
    MAX_EXPRESSION_NODES,
    AllOf,
    AnyOf,
    Expression,
    Filter,
    FilterError,
    Match,
    NotOf,
    expression_size,
)

__all__ = ["GROUP_NAME", "MAX_TEXT", "group_names", "parse", "render"]

MAX_TEXT = 10_000
GROUP_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
END = "end of filter"


class Kind(enum.Enum):
    WORD = "word"
    GROUP = "group"
    AND = "and"
    OR = "or"
    NOT = "not"
    OPEN = "("
    CLOSE = ")"
    END = "end"


KEYWORDS = {"and": Kind.AND, "or": Kind.OR, "not": Kind.NOT}


@dataclass(frozen=True)
class Token:
    kind: Kind
    text: str
    column: int  # 1-based


def _grouping_closes(word: str) -> int:
    """How many ``)`` at the end of ``word`` close nothing opened inside it."""
    depth, unmatched, escaped = 0, 0, False
    for char in word:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "(":
            depth += 1
        elif char == ")":
            if depth:
                depth -= 1
            else:
                unmatched += 1
    trailing = len(word) - len(word.rstrip(")"))
    return min(unmatched, trailing)


def tokens(text: str) -> list[Token]:
    if len(text) > MAX_TEXT:
        raise FilterError(
            f"column {MAX_TEXT + 1}: a filter is at most {MAX_TEXT} characters",
            column=MAX_TEXT + 1,
            token=text[MAX_TEXT : MAX_TEXT + 20],
        )
    found: list[Token] = []
    for match in re.finditer(r"\S+", text):
        word, column = match.group(), match.start() + 1
        while word.startswith("("):
            found.append(Token(Kind.OPEN, "(", column))
            word, column = word[1:], column + 1
        closes = _grouping_closes(word)
        body = word[: len(word) - closes]
        if body:
            kind = KEYWORDS.get(body.lower(), Kind.GROUP if body.startswith("@") else Kind.WORD)
            found.append(Token(kind, body, column))
        found += [Token(Kind.CLOSE, ")", column + len(body) + i) for i in range(closes)]
    found.append(Token(Kind.END, END, len(text) + 1))
    return found


def group_names(text: str) -> list[str]:
    """The saved groups ``text`` names (``@web`` -> ``web``), in order, once each."""
    try:
        words = tokens(text)
    except FilterError:
        return []
    return list(dict.fromkeys(t.text[1:] for t in words if t.kind is Kind.GROUP))


def parse(text: str, groups: Mapping[str, str] | None = None) -> Filter:
    """The filter ``text`` says; ``groups`` (name -> filter text) expands ``@NAME``.
    Blank text is the empty filter (every host). Raises FilterError."""
    return _Parser(text, groups, ()).filter()


def _error(token: Token, message: str) -> FilterError:
    shown = token.text if token.kind is Kind.END else repr(token.text)
    return FilterError(f"column {token.column} ({shown}): {message}", column=token.column,
                       token=token.text)  # fmt: skip


class _Parser:
    """Recursive descent over the tokens; nesting is bounded, so the recursion is."""

    def __init__(self, text: str, groups: Mapping[str, str] | None, using: tuple[str, ...]):
        self.tokens = tokens(text)
        self.at = 0
        self.depth = 0
        self.nodes = 0
        self.groups = groups
        self.using = using  # the groups being expanded around this text, outermost first

    @property
    def current(self) -> Token:
        return self.tokens[self.at]

    def _kind(self) -> Kind:
        return self.tokens[self.at].kind

    def _take(self) -> Token:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def filter(self) -> Filter:
        if self._kind() is Kind.END:
            return Filter()
        node = self._or()
        if self._kind() is not Kind.END:
            raise _error(self.current, "expected 'and', 'or' or the end here")
        if isinstance(node, Match):
            return node.match
        try:
            return Filter(expression=node)
        except ValueError as exc:  # the limits; the parser checks them as it goes
            raise _error(self.tokens[0], str(exc)) from None

    def _nested(self, token: Token) -> None:
        self.depth += 1
        if self.depth > MAX_EXPRESSION_DEPTH:
            raise _error(token, f"nested more than {MAX_EXPRESSION_DEPTH} deep")

    def _counted(self, node: Expression, token: Token, size: int = 1) -> Expression:
        """``node``, counted against the limit as it is built (a group used many times
        would otherwise multiply its size before the final check)."""
        self.nodes += size
        if self.nodes > MAX_EXPRESSION_NODES:
            raise _error(token, f"more than {MAX_EXPRESSION_NODES} terms and operators")
        return node

    def _or(self) -> Expression:
        first = self.current
        parts = [self._and()]
        while self._kind() is Kind.OR:
            self._take()
            parts.append(self._and())
        return self._counted(_any(parts), first) if len(parts) > 1 else parts[0]

    def _and(self) -> Expression:
        first = self.current
        parts = [self._run()]
        while self._kind() is Kind.AND:
            self._take()
            parts.append(self._run())
        return self._counted(_all(parts), first) if len(parts) > 1 else parts[0]

    def _run(self) -> Expression:
        """Words side by side: one Match of the plain entries (as ``parse_cli``), ANDed
        with the other items."""
        first = self.current
        words: list[Token] = []
        others: list[Expression] = []
        while self._kind() in (Kind.WORD, Kind.GROUP, Kind.NOT, Kind.OPEN):
            if self._kind() is Kind.WORD:
                words.append(self._take())
            else:
                others.append(self._unary())
        if not words and not others:
            raise _error(self.current, _expected(self.current))
        items = [*([self._counted(Match(match=_entries(words)), words[0], len(words))]
                   if words else []), *others]  # fmt: skip
        return items[0] if len(items) == 1 else self._counted(_all(items), first)

    def _unary(self) -> Expression:
        token = self.current
        if token.kind is Kind.NOT:
            self._take()
            self._nested(token)
            if self._kind() not in (Kind.WORD, Kind.GROUP, Kind.NOT, Kind.OPEN):
                raise _error(self.current, "expected what 'not' negates")
            inner = self._unary()
            self.depth -= 1
            return self._counted(NotOf(negated=inner), token)
        if token.kind is Kind.OPEN:
            self._take()
            self._nested(token)
            if self._kind() is Kind.CLOSE:
                raise _error(self.current, "empty parentheses")
            inner = self._or()
            if self._kind() is not Kind.CLOSE:
                raise _error(self.current, f"expected ')' closing the '(' of column {token.column}")
            self._take()
            self.depth -= 1
            return inner
        if token.kind is Kind.WORD:
            self._take()
            return self._counted(Match(match=_entries([token])), token)
        self._take()
        return self._group(token)

    def _group(self, token: Token) -> Expression:
        name = token.text[1:]
        if GROUP_NAME.fullmatch(name) is None:
            raise _error(token, "a group name is letters, digits, '_', '.', '-' (64 at most)")
        if self.groups is None:
            raise _error(token, "saved groups are only known where a job starts (CLI, web, API)")
        if name in self.using:
            cycle = " -> ".join(f"@{n}" for n in (*self.using[self.using.index(name) :], name))
            raise _error(token, f"group @{name} uses itself: {cycle}")
        text = self.groups.get(name)
        if text is None:
            raise _error(token, f"no saved group named {name!r} (see `mcoflow groups list`)")
        if self.depth + 1 > MAX_EXPRESSION_DEPTH:
            raise _error(token, f"nested more than {MAX_EXPRESSION_DEPTH} deep")
        try:
            inner = _Parser(text, self.groups, (*self.using, name))
            inner.depth = self.depth + 1
            if inner._kind() is Kind.END:
                raise _error(inner.current, "the group's filter is blank")
            node = inner._or()
            if inner._kind() is not Kind.END:
                raise _error(inner.current, "expected 'and', 'or' or the end here")
        except FilterError as exc:
            raise _error(token, f"in group @{name}: {exc}") from None
        return self._counted(node, token, expression_size(node)[0])


def _expected(token: Token) -> str:
    if token.kind is Kind.END:
        return "expected a filter word, '(', 'not' or '@group'"
    return f"expected a filter word, '(', 'not' or '@group', not {token.text!r}"


def _entries(words: list[Token]) -> Filter:
    """Words side by side as one filter (identities ORed, the rest ANDed). A word's own
    error keeps the words it always had (they quote the word), the column added."""
    built = Filter()
    for token in words:
        try:
            entry = Filter.parse_cli([token.text])
        except FilterError as exc:
            message = f"{exc} (column {token.column})"
            raise FilterError(message, column=token.column, token=token.text) from None
        try:
            built = _merge(built, entry)
        except FilterError as exc:
            raise _error(token, str(exc)) from None
    return built


def _merge(first: Filter, second: Filter) -> Filter:
    try:
        return Filter(
            identity=first.identity + second.identity,
            facts=first.facts + second.facts,
            classes=first.classes + second.classes,
            agents=first.agents + second.agents,
        )
    except ValueError as exc:
        raise FilterError(str(exc)) from None


def _flatten(parts: list[Expression], kind: type[AllOf] | type[AnyOf]) -> list[Expression]:
    flat: list[Expression] = []
    for part in parts:
        if isinstance(part, kind):
            flat.extend(part.all if isinstance(part, AllOf) else part.any)
        else:
            flat.append(part)
    return flat


def _joined(
    parts: list[Expression], kind: type[AllOf] | type[AnyOf], fits: Callable[[Filter], bool]
) -> Expression:
    """``parts`` combined by ``kind``: nested ones of the same kind flattened, and
    Match leaves that ``fits`` merged into the first leaf (one filter of entries)."""
    merged: list[Expression] = []
    leaf: int | None = None  # where the merged leaf is in `merged`
    for part in _flatten(parts, kind):
        if isinstance(part, Match) and fits(part.match):
            if leaf is not None:
                held = merged[leaf]
                assert isinstance(held, Match)
                if fits(held.match) and _compatible(kind, held.match, part.match):
                    merged[leaf] = Match(match=_merge(held.match, part.match))
                    continue
            else:
                leaf = len(merged)
        merged.append(part)
    if len(merged) == 1:
        return merged[0]
    return AllOf(all=tuple(merged)) if kind is AllOf else AnyOf(any=tuple(merged))


def _compatible(kind: type[AllOf] | type[AnyOf], first: Filter, second: Filter) -> bool:
    # ANDed leaves merge unless both hold identities (merged, those would be ORed)
    return kind is AnyOf or not (first.identity and second.identity)


def _any_leaf(flt: Filter) -> bool:
    return True


def _identities_only(flt: Filter) -> bool:
    # identities alone are alternatives in one leaf as well
    return not (flt.facts or flt.classes or flt.agents)


def _all(parts: list[Expression]) -> Expression:
    return _joined(parts, AllOf, _any_leaf)


def _any(parts: list[Expression]) -> Expression:
    return _joined(parts, AnyOf, _identities_only)


def render(node: Expression) -> str:
    """An expression in the grammar; ``parse`` of it gives the same expression."""
    if isinstance(node, Match):
        return node.match.to_cli()
    if isinstance(node, NotOf):
        inner = node.negated
        text = render(inner)
        single = isinstance(inner, NotOf) or (isinstance(inner, Match) and " " not in text)
        return f"not {text}" if single else f"not ({text})"
    if isinstance(node, AllOf):
        return " and ".join(
            f"({render(c)})" if isinstance(c, AnyOf) else render(c) for c in node.all
        )
    return " or ".join(render(c) for c in node.any)
