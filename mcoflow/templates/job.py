"""TemplateJob: a job template planned on one host (its steps become TemplateSteps in
the template's sequences and concurrences), and ``run_template``: a template started on
hosts, on one host as a TemplateJob, on several as a fleet job of TemplateJobs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from mcoflow.agent.interface import InputError
from mcoflow.engine import Action, PlannedAction
from mcoflow.job_request import HostName, JobInputError, parse_hosts
from mcoflow.templates.library import template_library
from mcoflow.templates.loader import builtin_interfaces
from mcoflow.templates.model import (
    Block,
    Condition,
    ConditionKind,
    Interpolation,
    Ref,
    RefKind,
    Step,
    Template,
    TemplateNotFound,
    walk_steps,
)
from mcoflow.templates.steps import STEP_ACTIONS

if TYPE_CHECKING:
    from mcoflow.actions import Jobs
    from mcoflow.engine import Plan


class TemplateChanged(RuntimeError):
    """The template's file changed after the job was started: its hosts would not all
    run the same steps."""


class TemplateJob(Action):
    """The steps of template ``template`` on ``hostname`` with ``inputs``. ``digest``
    (set by ``run_template``) is the template's when the job started: a host planned
    after its file changed is refused rather than run with other steps."""

    name = "mcoflow.template"

    class Input(BaseModel):
        hostname: HostName
        template: str = Field(min_length=1, max_length=64)
        inputs: dict[str, Any] = Field(default_factory=dict)
        digest: str | None = Field(None, max_length=64)
        timeout: float | None = Field(None, gt=0, le=86400)

    @classmethod
    def describe(cls, args: Any) -> str:
        return f"{args.get('template')} template on {args.get('hostname')}"

    def plan(self, **args: Any) -> None:
        spec = self.Input.model_validate(args)
        template = template_library().get(spec.template)
        if spec.digest is not None and spec.digest != template.digest:
            raise TemplateChanged(
                f"template {template.name} ({template.source}) changed since this job was "
                "started: start the job again to run the new steps"
            )
        values = template.parse_inputs(spec.inputs)
        _HostPlan(self, str(spec.hostname), values, spec.timeout).nodes("S", template.steps)


class _HostPlan:
    """Plans one host's steps, remembering each step's planned actions for references."""

    def __init__(
        self, job: Action, hostname: str, values: dict[str, Any], timeout: float | None
    ) -> None:
        self.job = job
        self.hostname = hostname
        self.values = values
        self.timeout = timeout
        # step name -> its planned actions (a for_each step: one per item; none if not planned)
        self.planned: dict[str, list[PlannedAction]] = {}
        self.many: set[str] = set()

    def nodes(self, kind: str, nodes: tuple[Step | Block, ...]) -> None:
        with self.job.sequence() if kind == "S" else self.job.concurrence():
            for node in nodes:
                if isinstance(node, Block):
                    self.nodes(node.kind, node.children)
                else:
                    self.step(node)

    def step(self, step: Step) -> None:
        if step.for_each is not None:
            self.many.add(step.name)
        planned: list[PlannedAction] = []
        self.planned[step.name] = planned
        when = step.when
        if (
            when is not None
            and when.kind is ConditionKind.INPUT
            and not _input_condition(when, self.values)
        ):
            return
        cls = STEP_ACTIONS[step.rescue]
        common: dict[str, Any] = {
            "hostname": self.hostname,
            "agent": step.agent,
            "action": step.action,
            "step": step.name,
        }
        timeout = step.timeout or self.timeout
        if timeout:
            common["timeout"] = timeout
        if step.until is not None:
            common["until"] = _until(step)
        if step.when is not None and step.when.kind is not ConditionKind.INPUT:
            common["when"] = self.when(step.when)
        if step.for_each is None:
            data = self.render(step.inputs, None) if step.dynamic else dict(step.inputs)
            planned.append(self.job.plan_action(cls, **common, data=data))
            return
        with self.job.concurrence():
            for item in self.values[step.for_each.name]:
                data = self.render(step.inputs, item)
                planned.append(self.job.plan_action(cls, **common, data=data))

    def when(self, condition: Condition) -> dict[str, Any]:
        text = condition.text()
        if condition.kind is ConditionKind.CHANGED:
            flags = [p.output["changed"] for name in condition.steps for p in self.planned[name]]
            return {"changed": flags, "text": text}
        value = self.render(Ref(RefKind.STEP, condition.step, condition.output), None)
        if condition.has_equals:
            return {"value": value, "equals": condition.equals, "text": text}
        return {"value": value, "not_equals": condition.not_equals, "text": text}

    def render(self, value: Any, item: Any) -> Any:
        if isinstance(value, Ref):
            if value.kind is RefKind.INPUT:
                return self.values[value.name]
            if value.kind is RefKind.ITEM:
                return item
            producers = self.planned.get(value.name, [])
            if value.name in self.many:
                return [p.output[value.output] for p in producers]
            return producers[0].output[value.output] if producers else None
        if isinstance(value, Interpolation):
            return "".join(_text(self.render(p, item)) for p in value.parts)
        if isinstance(value, Mapping):
            return {k: self.render(v, item) for k, v in value.items()}
        if isinstance(value, list):
            return [self.render(v, item) for v in value]
        return value


def _input_condition(condition: Condition, values: Mapping[str, Any]) -> bool:
    value = values.get(condition.input)
    if condition.has_equals:
        return bool(value == condition.equals)
    if condition.has_not_equals:
        return bool(value != condition.not_equals)
    return bool(value)


def _until(step: Step) -> dict[str, Any]:
    until = step.until
    assert until is not None
    spec: dict[str, Any] = {
        "output": until.output,
        "interval": until.interval,
        "max_wait": until.max_wait,
        "text": until.text(),
    }
    if until.has_equals:
        spec["equals"] = until.equals
    else:
        spec["not_equals"] = until.not_equals
    return spec


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def check_step_inputs(template: Template, values: Mapping[str, Any]) -> None:
    """Each step's inputs as the hosts would get them, checked once against the agent's
    declared interface before any host is planned: a bad value names its input."""
    interfaces = builtin_interfaces()
    for step in walk_steps(template.steps):
        specs = {s.name: s for s in interfaces[step.agent][step.action].inputs}
        items = values.get(step.for_each.name) or [] if step.for_each is not None else [None]
        for item in items:
            for key, raw in step.inputs.items():
                if isinstance(raw, Ref) and raw.kind is RefKind.STEP:
                    continue
                value = _static(raw, values, item)
                if value is None or key not in specs:
                    continue
                try:
                    specs[key].validate(value)
                except InputError as exc:
                    source = (
                        f"inputs.{raw.name}"
                        if isinstance(raw, Ref) and raw.kind is RefKind.INPUT
                        else (
                            f"inputs.{step.for_each.name}"
                            if step.for_each is not None
                            else "inputs"
                        )
                    )
                    raise JobInputError(
                        source, f"step {step.name} ({step.agent}.{step.action}): {exc}"
                    ) from None


def _static(raw: Any, values: Mapping[str, Any], item: Any) -> Any:
    if isinstance(raw, Ref):
        if raw.kind is RefKind.INPUT:
            return values.get(raw.name)
        return item if raw.kind is RefKind.ITEM else None
    if isinstance(raw, Interpolation):
        if any(isinstance(p, Ref) and p.kind is RefKind.STEP for p in raw.parts):
            return None
        return "".join(
            _text(_static(p, values, item)) if isinstance(p, Ref) else p for p in raw.parts
        )
    if isinstance(raw, list | dict):
        return None  # structures holding references: the agent checks them
    return raw


async def run_template(
    jobs: Jobs,
    name: str,
    inputs: Mapping[str, Any],
    *,
    hosts: Sequence[str] | str = (),
    filter: str | None = None,
    concurrency: int | None = None,
    batch_size: str | None = None,
    max_failures: str | None = None,
    timeout: float | None = None,
    start_at: Any = None,
    start_before: Any = None,
    by: str = "system",
) -> Plan:
    """Start template ``name`` with ``inputs`` on hosts: checked first (the template
    exists, the inputs, each step's inputs), then on a fleet the template's default
    fleet options fill those the operator left out."""
    try:
        template = template_library().get(name)
    except TemplateNotFound as exc:
        raise JobInputError("template", str(exc)) from None
    values = template.parse_inputs(inputs)
    check_step_inputs(template, values)
    names = parse_hosts(hosts)
    if (filter is not None and filter.strip()) or len(names) > 1:
        defaults = template.defaults
        concurrency = concurrency if concurrency is not None else defaults.concurrency
        batch_size = batch_size if batch_size is not None else defaults.batch_size
        max_failures = max_failures if max_failures is not None else defaults.max_failures
    return await jobs.start_on_hosts(
        TemplateJob,
        {"template": template.name, "inputs": values, "digest": template.digest},
        hosts=names,
        filter=filter,
        concurrency=concurrency,
        batch_size=batch_size,
        max_failures=max_failures,
        timeout=timeout,
        what=f"{template.name} template",
        start_at=start_at,
        start_before=start_before,
        by=by,
    )
