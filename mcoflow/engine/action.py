"""Actions: the unit of work of a plan, with plan / run / finalize phases."""

from __future__ import annotations

import contextlib
import enum
import functools
from collections.abc import Awaitable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from mcoflow.engine.flow import OutputReference, contains_reference

if TYPE_CHECKING:
    from mcoflow.engine.planner import Planner
    from mcoflow.engine.runner import RunContext


class RescueStrategy(enum.StrEnum):
    PAUSE = "pause"  # error stops the branch; the plan pauses for the operator
    SKIP = "skip"  # error marks the step skipped and the plan goes on
    FAIL = "fail"  # error stops the plan for good


class EventKind(enum.StrEnum):
    USER = "user"
    TIMEOUT = "timeout"
    CANCEL = "cancel"
    SUB_PLAN = "sub_plan"


@dataclass(frozen=True)
class Event:
    """What wakes a suspended step: a reply, a timer, a cancel, a finished sub-plan."""

    kind: EventKind
    payload: Mapping[str, Any] = field(default_factory=dict)
    id: int | None = None


class InputError(ValueError):
    """Input that does not satisfy an action's declared schema; names the field."""

    def __init__(self, action: str, problems: list[tuple[str, str]]) -> None:
        self.action = action
        self.problems = problems
        detail = "; ".join(f"{where}: {what}" for where, what in problems)
        super().__init__(f"invalid input for {action}: {detail}")


class ActionNotRegistered(LookupError):
    pass


_REGISTRY: dict[str, type[Action]] = {}


def registered_action(name: str) -> type[Action]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ActionNotRegistered(
            f"no action registered as {name!r} (is its module imported?)"
        ) from None


def _problems(exc: ValidationError, prefix: str = "") -> list[tuple[str, str]]:
    out = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
        # a validator's ValueError reads as its own sentence, without pydantic's prefix
        out.append((where or "input", str(err["msg"]).removeprefix("Value error, ")))
    return out


class Action:
    """Base class of every action.

    Subclasses declare ``Input``/``Output`` pydantic models and override any of
    ``plan``, ``run`` and ``finalize``. They are stored by ``name`` (default: module
    and class name), never pickled, so the name must stay stable.
    """

    name: ClassVar[str]
    Input: ClassVar[type[BaseModel] | None] = None
    Output: ClassVar[type[BaseModel] | None] = None
    idempotent: ClassVar[bool] = False
    cancellable: ClassVar[bool] = False
    rescue: ClassVar[RescueStrategy] = RescueStrategy.PAUSE
    weight: ClassVar[float] = 1.0
    abstract: ClassVar[bool] = True
    # kinds of events where only the latest of several queued ones matters (e.g. "a
    # sub-plan finished": the action recounts from the database anyway)
    coalesce_events: ClassVar[frozenset[EventKind]] = frozenset()
    # seconds an async run (or finalize) may take before its step errors; None: no limit.
    # A run that waits for something outside should suspend instead of holding its claim.
    time_limit: ClassVar[float | None] = 600.0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "abstract" not in cls.__dict__:
            cls.abstract = False
        if "name" not in cls.__dict__:
            cls.name = f"{cls.__module__}.{cls.__qualname__}"
        if cls.abstract:
            return
        existing = _REGISTRY.get(cls.name)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise TypeError(f"action name {cls.name!r} is taken by {existing!r}")
        _REGISTRY[cls.name] = cls

    def __init__(self, step_id: int, input: Mapping[str, Any] | None = None) -> None:
        self.step_id = step_id
        self._raw_input: dict[str, Any] = dict(input or {})
        self._input: Any = None  # validated on first use (a fleet's host list is long)
        self._planner: Planner | None = None
        self._context: RunContext | None = None

    # ---- phase detection -------------------------------------------------------

    @classmethod
    def has_run(cls) -> bool:
        return cls.run is not Action.run

    @classmethod
    def has_finalize(cls) -> bool:
        return cls.finalize is not Action.finalize

    # ---- input ------------------------------------------------------------------

    @classmethod
    def validate_input(cls, args: Mapping[str, Any]) -> dict[str, Any]:
        """Validate plan arguments; fields holding references are checked at run time."""
        model = cls.Input
        if model is None:
            return dict(args)
        if not any(contains_reference(v) for v in args.values()):
            try:
                return model.model_validate(dict(args)).model_dump(mode="json")
            except ValidationError as exc:
                raise InputError(cls.name, _problems(exc)) from None
        problems: list[tuple[str, str]] = []
        out: dict[str, Any] = {}
        unknown = set(args) - set(model.model_fields)
        if unknown and model.model_config.get("extra") == "forbid":
            problems.extend((k, "extra inputs are not permitted") for k in sorted(unknown))
        for fname, finfo in model.model_fields.items():
            if fname not in args:
                if finfo.is_required():
                    problems.append((fname, "field required"))
                continue
            value = args[fname]
            if contains_reference(value):
                out[fname] = value
                continue
            try:
                adapter = _field_adapter(model, fname)
                out[fname] = adapter.dump_python(adapter.validate_python(value), mode="json")
            except ValidationError as exc:
                problems.extend(_problems(exc, fname))
        if problems:
            raise InputError(cls.name, problems)
        return out

    @property
    def input(self) -> Any:
        """The resolved input: an instance of ``Input`` if declared (validated once per
        run, then the same object), else a dict."""
        if self.Input is None:
            return self._raw_input
        if self._input is None:
            try:
                self._input = self.Input.model_validate(self._raw_input)
            except ValidationError as exc:
                raise InputError(self.name, _problems(exc)) from None
        return self._input

    # ---- planning ---------------------------------------------------------------

    def plan(self, **args: Any) -> None:
        """Build this action's part of the plan. By default: run with these args."""
        self.plan_self(**args)

    def _planning(self) -> Planner:
        if self._planner is None:
            raise RuntimeError("plan_action/plan_self are only allowed in plan()")
        return self._planner

    def plan_action(self, action: type[Action], /, **args: Any) -> PlannedAction:
        return self._planning().plan_child(self, action, args)

    def plan_self(self, **input: Any) -> PlannedAction:
        return self._planning().plan_self(self, input)

    @contextlib.contextmanager
    def sequence(self) -> Iterator[None]:
        with self._planning().block(self, "S"):
            yield

    @contextlib.contextmanager
    def concurrence(self) -> Iterator[None]:
        with self._planning().block(self, "C"):
            yield

    # ---- running ----------------------------------------------------------------

    def run(self, event: Event | None = None) -> Awaitable[None] | None:
        """Do the work. Finish by returning, or call ``suspend()`` and return to wait.

        Not overriding it means the action has no run phase (``has_run()`` is False).
        """
        return None

    def finalize(self) -> Awaitable[None] | None:
        """Local bookkeeping after the whole run phase succeeded."""
        return None

    def _enter(self, context: RunContext) -> None:
        """Bind the run context the engine's runner made for this run (or finalize)."""
        self._context = context

    def _running(self) -> RunContext:
        if self._context is None:
            raise RuntimeError("this is only allowed in run()")
        return self._context

    @property
    def output(self) -> dict[str, Any]:
        if self._context is not None:
            return self._context.output
        raise RuntimeError("output may be read only in run(); use planned.output to refer to it")

    @property
    def data(self) -> dict[str, Any]:
        """Private state persisted between runs of a suspended step."""
        return self._running().data

    @property
    def plan_id(self) -> str:
        return self._running().plan_id

    def suspend(self) -> None:
        self._running().suspended = True

    def schedule_timeout(self, seconds: float, *, payload: Mapping[str, Any] | None = None) -> None:
        """A Timeout event in ``seconds``; ``payload`` tells which wait it ends."""
        self._running().schedule(EventKind.TIMEOUT, dict(payload or {}), seconds)

    def schedule_event(self, payload: Mapping[str, Any], *, after: float) -> None:
        self._running().schedule(EventKind.USER, dict(payload), after)

    def send(self, destination: str, message: Mapping[str, Any]) -> None:
        """Queue a message for the outbox; it is published only if this run commits."""
        self._running().messages.append((destination, dict(message)))

    @classmethod
    def describe(cls, args: Mapping[str, Any]) -> str:
        """A short human label for a plan of this action."""
        shown = ", ".join(f"{k}={v}" for k, v in args.items() if not contains_reference(v))
        text = f"{cls.__name__}({shown})"
        return text if len(text) <= 200 else text[:197] + "..."

    def set_progress(self, done: float) -> None:
        self._running().progress = min(1.0, max(0.0, float(done)))


@dataclass(frozen=True)
class PlannedAction:
    """Returned by plan_action/plan_self: its ``output`` is a reference until run time."""

    step_id: int
    action: type[Action]

    @property
    def output(self) -> OutputReference:
        if not self.action.has_run():
            raise ValueError(f"{self.action.name} has no run phase, so it has no output")
        return OutputReference(self.step_id)


@functools.cache
def _field_adapter(model: type[BaseModel], field: str) -> TypeAdapter[Any]:
    """A validator for one field alone (building one costs far more than using it)."""
    finfo = model.model_fields[field]
    annotated: Any = Annotated[finfo.annotation or Any, finfo]  # keeps gt=, pattern=
    return TypeAdapter(annotated)
