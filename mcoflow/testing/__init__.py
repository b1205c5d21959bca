"""Helpers for testing what is built on mcoflow, shipped with it.

For an action's author first: ``assert_eventually`` instead of sleeps, and an engine on a
temporary database (``engine_harness``) whose outbox keeps what it would have sent
(``MemoryPublisher``). For tests that run mcoflow's commands as processes:
``LoggedProcess``.
"""

from __future__ import annotations

from mcoflow.testing.engine import EngineHarness, MemoryPublisher, engine_harness
from mcoflow.testing.eventually import assert_eventually
from mcoflow.testing.processes import LoggedProcess

__all__ = [
    # polling
    "assert_eventually",
    # an engine for tests of actions and plans
    "EngineHarness",
    "MemoryPublisher",
    "engine_harness",
    # real processes
    "LoggedProcess",
]
