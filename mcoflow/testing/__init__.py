"""Helpers for testing what is built on mcoflow, shipped with it.

For an action's author first: ``ActionEnvironment`` runs one action's ``run(event)``
with synthetic replies, timeouts and cancels on a ``ManualClock``, without an executor;
``assert_eventually`` polls instead of sleeping; ``engine_harness`` is a whole engine on a
temporary database whose outbox keeps what it would have sent (``MemoryPublisher``).
For an agent's author: ``DirectClient`` calls agents on running daemons without the
engine. For tests that run mcoflow's commands as processes: ``LoggedProcess``.
"""

from __future__ import annotations

from mcoflow.testing.actions import ActionEnvironment, ManualClock
from mcoflow.testing.engine import EngineHarness, MemoryPublisher, engine_harness
from mcoflow.testing.eventually import assert_eventually
from mcoflow.testing.processes import LoggedProcess
from mcoflow.testing.rpc import NO_RESPONSE, DirectClient, HostResult, RpcResult

__all__ = [
    # one action, without an executor
    "ActionEnvironment",
    "ManualClock",
    # polling
    "assert_eventually",
    # an engine for tests of actions and plans
    "EngineHarness",
    "MemoryPublisher",
    "engine_harness",
    # calling agents directly
    "NO_RESPONSE",
    "DirectClient",
    "HostResult",
    "RpcResult",
    # real processes
    "LoggedProcess",
]
