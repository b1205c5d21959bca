"""mcoflow's :class:`~mcoflow.rpc.filters.Filter` as MCollective 2.12's filter Hash.

MCollective (``Security::Base#validate_filter?`` and ``Util.has_*``) reads String keys
``fact``, ``cf_class``, ``agent``, ``identity``, ``compound``; fact entries are Hashes with
Symbol keys ``:fact :value :operator``. Its rules differ from mcoflow's in three ways this
module smooths over or refuses:

* an entry is a regex when it *starts* with ``/``, and every ``/`` in it is removed before
  ``Regexp.new``: a name starting with ``/`` or a regex holding one cannot be expressed and
  is refused;
* identity entries pass only when exactly one matches, so several entries with a regex
  among them are sent as one alternation (exact names anchored), duplicates once;
* a filter counts as empty only when it is exactly the five empty lists: with any other key
  (the Ruby client adds ``collective`` for discovery) no entry passes and the node stays
  silent, so no other key is ever sent.

Patterns are Ruby regexes on the node; the common subset (classes, anchors, alternation,
quantifiers) means the same in both.
"""

from __future__ import annotations

import re

from mcoflow.rpc.filters import Filter, FilterError, is_regex
from mcoflow.rpc.mcollective.marshal import RubyKey, RubyValue, Symbol

__all__ = ["FILTER_KEYS", "empty_filter", "to_mcollective"]

FILTER_KEYS = ("fact", "cf_class", "agent", "identity", "compound")


def empty_filter() -> dict[RubyKey, RubyValue]:
    """``MCollective::Util.empty_filter``: matches every node."""
    return {key: [] for key in FILTER_KEYS}


def _entry(kind: str, text: str) -> str:
    if "/" in text[1:-1] if is_regex(text) else text.startswith("/"):
        raise FilterError(
            f"{kind} {text!r}: MCollective reads a leading '/' as a regex and drops every '/'"
            " in it, so this entry cannot be sent to MCollective nodes"
        )
    return text


def _identities(names: tuple[str, ...]) -> list[RubyValue]:
    unique = list(dict.fromkeys(_entry("identity", name) for name in names))
    if len(unique) < 2 or not any(is_regex(name) for name in unique):
        return list(unique)
    # several regex/exact entries could match one node twice, which MCollective counts as a miss
    parts = [name[1:-1] if is_regex(name) else f"^{re.escape(name)}$" for name in unique]
    return [_entry("identity", "/" + "|".join(f"(?:{part})" for part in parts) + "/")]


def to_mcollective(filter: Filter, *, agent: str | None = None) -> dict[RubyKey, RubyValue]:
    """The filter Hash for a request; ``agent`` adds the called agent to the agent filter,
    as ``mco rpc`` does, so nodes without it stay silent."""
    if filter.expression is not None:
        # MCollective's own "compound" language differs (Ruby, its own parser); a wrong
        # translation would select other hosts, so none is attempted
        raise FilterError(
            f"filter {filter.to_cli()!r}: and/or/not and parentheses are not supported on "
            "MCollective nodes; use words side by side (ANDed) there"
        )
    agents = [_entry("agent", name) for name in filter.agents]
    if agent is not None and agent not in agents:
        agents.append(agent)
    facts: list[RubyValue] = [
        {
            Symbol("fact"): fact.fact,
            Symbol("value"): fact.value,
            Symbol("operator"): fact.operator,
        }
        for fact in filter.facts
    ]
    return {
        "fact": facts,
        "cf_class": [_entry("class", name) for name in filter.classes],
        "agent": list(agents),
        "identity": _identities(filter.identity),
        "compound": [],
    }
