"""Every query of the engine, for SQLite and PostgreSQL, on SQLAlchemy 2 Core: the one
place for the engine's SQL.

The database is the single source of truth. Invariant kept by every write here:
``steps.ready_at`` is set exactly when a step can be claimed. Writes that decide a
plan's fate lock the plan row first, so two executors never settle one plan from
stale views.

- ``base``: the engine, write and read transactions, retries;
- ``statements``: the bulk statements of the write path and the dialect's list parameters;
- ``reads``: what the console, the CLI and the executor's loops read;
- ``outbox``: claiming, publishing and republishing outbox messages;
- ``children``: a plan's children (a fleet's hosts) a page at a time, with their counts;
- ``hosts``: the host inventory, merged from discoveries and replies;
- ``maintenance``: retention (deleting finished plans) and fresh planner statistics for
  the busy tables (PostgreSQL);
- ``writes``: the write core every write goes through (locking plans, settling their
  fate, setting states, history, inserting events, waking steps);
- ``plans``: inserting plans, claiming due plans, starting delayed plans and children;
- ``steps``: claiming steps, committing their outcomes, ending a finalize phase;
- ``events``: delivering events to steps;
- ``commands``: the operator's resume, skip and cancel;
- ``executors``: registering executors, heartbeats, releasing dead ones;
- ``liveness``: each executor's lock held on a connection of its own (PostgreSQL): free
  once its session is gone, so the others release it within seconds;
- ``schedules``: recurring jobs' schedules, each occurrence fired once (claimed, advanced
  and its plan inserted in one transaction);
- ``core``: ``Store``, made of all of the above.
"""

from __future__ import annotations

from mcoflow.engine.store.base import (
    WAKE_CHANNEL,
    InvalidOperation,
    ListenLost,
    PlanNotFound,
    is_transient_error,
    normalize_url,
)
from mcoflow.engine.store.children import ChildPage, ChildRow
from mcoflow.engine.store.core import Store
from mcoflow.engine.store.executors import ABNORMAL_TERMINATION
from mcoflow.engine.store.hosts import HostInventory, HostRecord, HostSighting
from mcoflow.engine.store.reads import Page, PlanFilter

__all__ = [
    "ABNORMAL_TERMINATION",
    "WAKE_CHANNEL",
    "ChildPage",
    "ChildRow",
    "HostInventory",
    "HostRecord",
    "HostSighting",
    "InvalidOperation",
    "ListenLost",
    "Page",
    "PlanFilter",
    "PlanNotFound",
    "Store",
    "is_transient_error",
    "normalize_url",
]
