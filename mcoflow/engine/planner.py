"""The plan phase: turn a triggered action into a stored execution plan."""

from __future__ import annotations

import contextlib
import time
import traceback
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from mcoflow.engine.action import Action, InputError, PlannedAction
from mcoflow.engine.flow import (
    REF_KEY,
    FlowJSON,
    FlowNode,
    build_graph,
    check_acyclic,
    contains_reference,
    encode_references,
    referenced_steps,
)
from mcoflow.engine.states import PlanResult, PlanState, StepState


@dataclass
class NewStep:
    idx: int
    parent: int | None
    action: str
    input: dict[str, Any]
    has_run: bool
    has_finalize: bool
    idempotent: bool
    rescue: str
    weight: float
    state: StepState = StepState.PENDING
    pending_deps: int = 0
    dependents: tuple[int, ...] = ()
    ref_dependents: tuple[int, ...] = ()
    error: dict[str, Any] | None = None


@dataclass
class NewPlan:
    """A planned (or failed-in-planning) plan, ready to be inserted in one transaction."""

    id: str
    action: str
    label: str
    args: dict[str, Any]
    state: PlanState
    result: PlanResult
    flow: FlowJSON | None
    steps: list[NewStep]
    created_at: float
    error: str | None = None
    parent_plan_id: str | None = None
    parent_step_id: int | None = None
    start_at: float | None = None
    start_before: float | None = None
    history: list[tuple[str, str]] = field(default_factory=list)

    @property
    def runnable_steps(self) -> list[int]:
        return [s.idx for s in self.steps if s.has_run and s.pending_deps == 0]


def check_no_references(cls: type[Action], args: Mapping[str, Any]) -> None:
    """User input may not contain (or fake) output references."""
    fields = [k for k, v in args.items() if contains_reference(v)]
    if fields:
        raise InputError(
            cls.name, [(f, f"{REF_KEY!r} is reserved for output references") for f in fields]
        )


def error_record(exc: BaseException) -> dict[str, Any]:
    return {
        "type": type(exc).__name__,
        "message": str(exc) or type(exc).__name__,
        "traceback": "".join(traceback.format_exception(exc)),
    }


class Planner:
    """Runs ``plan()`` of an action and its children and records what they plan."""

    def __init__(self) -> None:
        self._steps: list[NewStep] = []
        self._nodes: dict[int, list[FlowNode]] = {}
        self._root = FlowNode("C")
        self._failed_step: int | None = None
        self._planned_self: set[int] = set()

    # called by Action

    def plan_child(
        self, parent: Action, action: type[Action], args: Mapping[str, Any]
    ) -> PlannedAction:
        if not (isinstance(action, type) and issubclass(action, Action)) or action.abstract:
            raise TypeError(f"{action!r} is not a concrete Action")
        node = FlowNode("C")
        self._nodes[parent.step_id][-1].children.append(node)
        return self._plan(action, args, parent.step_id, node)

    def plan_self(self, action: Action, input: Mapping[str, Any]) -> PlannedAction:
        step = self._steps[action.step_id - 1]
        if action.step_id in self._planned_self:
            raise ValueError(f"{step.action}: plan_self may be called once per action")
        self._planned_self.add(action.step_id)
        encoded = encode_references(type(action).validate_input(input))
        for producer in referenced_steps(encoded):
            if producer == action.step_id or producer > len(self._steps):
                raise ValueError(f"step {action.step_id} refers to unknown step {producer}")
        step.input = encoded
        # an action runs only if it planned itself: that is what places it in the flow
        step.has_run = type(action).has_run()
        if step.has_run:
            self._nodes[action.step_id][-1].children.append(action.step_id)
        return PlannedAction(action.step_id, type(action))

    @contextlib.contextmanager
    def block(self, action: Action, kind: str) -> Iterator[None]:
        stack = self._nodes[action.step_id]
        node = FlowNode(kind)
        stack[-1].children.append(node)
        stack.append(node)
        try:
            yield
        finally:
            stack.pop()

    # internals

    def _plan(
        self, cls: type[Action], args: Mapping[str, Any], parent: int | None, node: FlowNode
    ) -> PlannedAction:
        idx = len(self._steps) + 1
        validated = cls.validate_input(encode_references(dict(args)))
        step = NewStep(
            idx=idx,
            parent=parent,
            action=cls.name,
            input={},
            has_run=False,
            has_finalize=cls.has_finalize(),
            idempotent=cls.idempotent,
            rescue=cls.rescue.value,
            weight=cls.weight,
        )
        self._steps.append(step)
        self._nodes[idx] = [node]
        action = cls(idx)
        action._planner = self
        try:
            action.plan(**validated)
        except Exception as exc:
            if self._failed_step is None:
                self._failed_step = idx
                step.error = error_record(exc)
            raise
        finally:
            action._planner = None
        return PlannedAction(idx, cls)

    def plan(
        self,
        cls: type[Action],
        args: Mapping[str, Any],
        *,
        label: str | None = None,
        plan_id: str | None = None,
        parent_plan_id: str | None = None,
        parent_step_id: int | None = None,
    ) -> NewPlan:
        """Plan ``cls`` with ``args``. Invalid root input raises InputError (nothing to
        store); any other planning error gives a stopped plan with result error."""
        if not (isinstance(cls, type) and issubclass(cls, Action)) or cls.abstract:
            raise TypeError(f"{cls!r} is not a concrete Action")
        check_no_references(cls, args)
        root_args = cls.validate_input(dict(args))
        plan = NewPlan(
            id=plan_id or uuid.uuid4().hex,
            action=cls.name,
            label=label or cls.describe(root_args),
            args=root_args,
            state=PlanState.PLANNED,
            result=PlanResult.PENDING,
            flow=None,
            steps=self._steps,
            created_at=time.time(),
            parent_plan_id=parent_plan_id,
            parent_step_id=parent_step_id,
        )
        try:
            self._plan(cls, root_args, None, self._root)
            plan.flow = self._root.to_json()
            inputs = {s.idx: s.input for s in self._steps if s.has_run}
            graph = build_graph(plan.flow, inputs)
            check_acyclic(graph)
        except Exception as exc:
            plan.state = PlanState.STOPPED
            plan.result = PlanResult.ERROR
            plan.error = f"planning failed: {type(exc).__name__}: {exc}"
            if self._failed_step is None and self._steps:
                self._steps[0].error = error_record(exc)
            for step in self._steps:
                step.state = StepState.ERROR if step.error else StepState.CANCELLED
            plan.history.append(("planning failed", plan.error))
            return plan
        for step in self._steps:
            if not step.has_run:
                step.state = StepState.SUCCESS
                continue
            step.pending_deps = len(graph.depends_on.get(step.idx, ()))
            step.dependents = graph.dependents.get(step.idx, ())
            step.ref_dependents = graph.ref_dependents.get(step.idx, ())
        plan.history.append(("planned", f"{len(self._steps)} actions"))
        return plan


def plan_action(
    cls: type[Action],
    args: Mapping[str, Any],
    **kwargs: Any,
) -> NewPlan:
    return Planner().plan(cls, args, **kwargs)
