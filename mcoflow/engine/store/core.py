"""``Store``: the engine's port to the database, one class made of the store's query
groups (each a module of this package)."""

from __future__ import annotations

from mcoflow.engine.store.children import ChildQueries
from mcoflow.engine.store.events import EventWrites
from mcoflow.engine.store.executors import ExecutorRegistry
from mcoflow.engine.store.groups import GroupQueries
from mcoflow.engine.store.hosts import HostQueries
from mcoflow.engine.store.interfaces import InterfaceQueries
from mcoflow.engine.store.maintenance import MaintenanceQueries
from mcoflow.engine.store.schedules import ScheduleQueries
from mcoflow.engine.store.steps import StepWrites


class Store(
    StepWrites,
    EventWrites,
    ExecutorRegistry,
    ChildQueries,
    MaintenanceQueries,
    HostQueries,
    InterfaceQueries,
    ScheduleQueries,
    GroupQueries,
):
    """The engine's port to the database; one instance per process."""
