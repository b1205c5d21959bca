"""mcoflow's durable workflow engine (the Dynflow model)."""

from __future__ import annotations

from mcoflow.engine.action import (
    Action,
    Event,
    EventKind,
    InputError,
    PlannedAction,
    RescueStrategy,
    registered_action,
)
from mcoflow.engine.executor import Executor, OutboxPublisher
from mcoflow.engine.flow import OutputReference
from mcoflow.engine.polling import Polling
from mcoflow.engine.records import (
    EngineStats,
    ExecutorInfo,
    HistoryEntry,
    Plan,
    Step,
    SubPlanCounts,
)
from mcoflow.engine.states import InvalidTransition, PlanResult, PlanState, StepState
from mcoflow.engine.store import InvalidOperation, Page, PlanFilter, PlanNotFound, Store
from mcoflow.engine.subplans import SubPlan, SubPlansFailed, WithSubPlans
from mcoflow.engine.world import World

__all__ = [
    "Action",
    "EngineStats",
    "Event",
    "EventKind",
    "Executor",
    "ExecutorInfo",
    "HistoryEntry",
    "InputError",
    "InvalidOperation",
    "InvalidTransition",
    "OutboxPublisher",
    "OutputReference",
    "Page",
    "Plan",
    "PlanFilter",
    "PlanNotFound",
    "PlanResult",
    "PlanState",
    "PlannedAction",
    "Polling",
    "RescueStrategy",
    "Step",
    "StepState",
    "Store",
    "SubPlan",
    "SubPlanCounts",
    "SubPlansFailed",
    "WithSubPlans",
    "World",
    "registered_action",
]
