"""mcoflow's durable workflow engine (the Dynflow model).

Exported by audience: what an action's author needs first, then what triggers, waits for
and reads plans, then what wires an executor into a process. The rest is the engine's own
and is imported from its module.
"""

from __future__ import annotations

from mcoflow.engine.action import (
    Action,
    Event,
    EventKind,
    InputError,
    PlannedAction,
    RescueStrategy,
)
from mcoflow.engine.executor import Executor, OutboxPublisher
from mcoflow.engine.flow import OutputReference
from mcoflow.engine.polling import Polling
from mcoflow.engine.records import EngineStats, ExecutorInfo, HistoryEntry, Plan, Step
from mcoflow.engine.states import PlanResult, PlanState, StepState
from mcoflow.engine.store import InvalidOperation, Page, PlanFilter, PlanNotFound, Store
from mcoflow.engine.subplans import SubPlan, SubPlansFailed, WithSubPlans
from mcoflow.engine.world import World

__all__ = [
    # writing actions: plan / run / finalize, the events that wake a step, what a step
    # passes on to the next, and the two ready-made patterns (polling, sub-plans)
    "Action",
    "Event",
    "EventKind",
    "InputError",
    "RescueStrategy",
    "PlannedAction",
    "OutputReference",
    "Polling",
    "SubPlan",
    "WithSubPlans",
    "SubPlansFailed",
    # triggering, waiting for, operating and reading plans
    "World",
    "Plan",
    "PlanState",
    "PlanResult",
    "Step",
    "StepState",
    "HistoryEntry",
    "PlanFilter",
    "Page",
    "PlanNotFound",
    "InvalidOperation",
    "EngineStats",
    "ExecutorInfo",
    # wiring the engine into a process: the executor, its outbox's publisher, the store
    "Executor",
    "OutboxPublisher",
    "Store",
]
