"""The host inventory seen from the actions: which hosts a filter selects, what a reply
tells about its sender, and the store a running Discover asks what hosts to expect.

Filters are evaluated here, in Python, with the ``Filter.matches`` the agents run, so
the inventory selects exactly what a broadcast would (regexes, fact comparisons and
all); SQL could only do the exact-identity part. The whole table is read for it: a
few thousand small rows, read once per discovery or listing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, Protocol

from mcoflow.engine.store.hosts import HostInventory, HostRecord, HostSighting
from mcoflow.rpc.filters import Filter, fact_text
from mcoflow.rpc.messages import Reply, StatusCode

INVENTORY_AGENT, INVENTORY_ACTION = "rpcutil", "inventory"


class HostStore(Protocol):
    async def list_hosts(self) -> list[HostRecord]: ...

    async def record_sightings(self, sightings: Sequence[HostSighting]) -> None: ...


# The store of the executor's process, for Discover.run (actions have no other way to
# it); set when an orchestrator starts, so the executor's tasks inherit it.
_current: ContextVar[HostStore | None] = ContextVar("mcoflow_host_inventory", default=None)


def use_inventory(store: HostStore | None) -> None:
    _current.set(store)


def current_inventory() -> HostStore | None:
    return _current.get()


def selects(flt: Filter | None, host: HostRecord) -> bool:
    if flt is None or flt.empty:
        return True
    return flt.matches(
        identity=host.identity, facts=host.facts, classes=host.classes, agents=host.agents
    )


async def matching_hosts(store: HostStore, flt: Filter | None) -> list[HostRecord]:
    """The inventory's hosts that ``flt`` selects, by identity."""
    return [h for h in await store.list_hosts() if selects(flt, h)]


async def expected_hosts(store: HostStore, filter_json: dict[str, Any]) -> list[str]:
    """Identities a discovery with this filter should hear from, as far as we know."""
    flt = Filter.model_validate(filter_json) if filter_json else None
    return [h.identity for h in await matching_hosts(store, flt)]


def sighting(reply: Reply, at: float) -> HostSighting:
    """What a reply says about its sender: that it lives, and with an inventory reply
    its facts, classes and agents."""
    return HostSighting(reply.sender, at, reported_inventory(reply))


def reported_inventory(reply: Reply) -> HostInventory | None:
    if (reply.agent, reply.action) != (INVENTORY_AGENT, INVENTORY_ACTION):
        return None
    if reply.statuscode is not StatusCode.OK:
        return None
    facts, classes, agents = (reply.data.get(k) for k in ("facts", "classes", "agents"))
    if not isinstance(facts, dict) or not _names(classes) or not _names(agents):
        return None
    return HostInventory(facts, tuple(classes), tuple(agents))  # type: ignore[arg-type]


def _names(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def sightings(replies: Iterable[tuple[Reply, float]]) -> list[HostSighting]:
    return [sighting(reply, at) for reply, at in replies]


# facts an operator looks for first; the others are counted
SUMMARY_FACTS = ("os_family", "os_name", "os_release", "architecture")
HIDDEN_FACTS = frozenset({"identity", "hostname"})  # the identity says it already


def facts_summary(facts: Mapping[str, Any], limit: int = 3) -> str:
    """``os_family=debian os_release=12 architecture=x86_64 (+3 more)``."""
    names = [n for n in SUMMARY_FACTS if n in facts]
    names += sorted(n for n in facts if n not in SUMMARY_FACTS and n not in HIDDEN_FACTS)
    shown = " ".join(f"{n}={fact_text(facts[n])}" for n in names[:limit])
    rest = len(names) - limit
    return shown + (f" (+{rest} more)" if rest > 0 else "")
