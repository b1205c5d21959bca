"""Actions used by the engine integration tests (module-level so names are stable)."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from pydantic import BaseModel

from mcoflow.engine import Action, Event, EventKind, Polling, RescueStrategy, SubPlan, WithSubPlans

# Tests flip these to make actions fail or succeed ("the operator fixed the host").
FAILING: set[str] = set()
FINALIZED: list[str] = []


class Add(Action):
    class Input(BaseModel):
        a: int
        b: int = 0

    class Output(BaseModel):
        sum: int

    def run(self, event: Event | None = None) -> None:
        self.output["sum"] = self.input.a + self.input.b


class Flaky(Action):
    """Fails while its key is in FAILING."""

    class Input(BaseModel):
        key: str

    class Output(BaseModel):
        key: str

    def run(self, event: Event | None = None) -> None:
        if self.input.key in FAILING:
            raise RuntimeError(f"{self.input.key} is broken")
        self.output["key"] = self.input.key


class FlakySkip(Flaky):
    rescue = RescueStrategy.SKIP


class FlakyFail(Flaky):
    rescue = RescueStrategy.FAIL


class UsesOutput(Action):
    class Input(BaseModel):
        value: Any = None

    def run(self, event: Event | None = None) -> None:
        self.output["saw"] = self.input.value


class WaitForEvent(Action):
    """Suspends until an event arrives; records every payload it got."""

    def run(self, event: Event | None = None) -> None:
        if event is None:
            self.data["got"] = []
            self.suspend()
            return
        self.data["got"].append(dict(event.payload))
        if event.payload.get("last"):
            self.output["got"] = self.data["got"]
            return
        self.suspend()


class CancellableWait(Action):
    cancellable = True

    def run(self, event: Event | None = None) -> None:
        if event is None:
            self.suspend()
        elif event.kind is EventKind.CANCEL:
            self.output["cleaned_up"] = True


class Timer(Action):
    class Input(BaseModel):
        after: float

    def run(self, event: Event | None = None) -> None:
        if event is None:
            self.schedule_event({"fired": True}, after=self.input.after)
            self.suspend()
            return
        self.output["fired"] = event.payload["fired"]


class TimesOut(Action):
    def run(self, event: Event | None = None) -> None:
        if event is None:
            self.schedule_timeout(0.2)
            self.suspend()
            return
        if event.kind is EventKind.TIMEOUT:
            raise TimeoutError("no answer within 0.2 s")


class Progressing(Action):
    weight = 3.0

    def run(self, event: Event | None = None) -> None:
        if event is None:
            self.set_progress(0.5)
            self.suspend()


class Chain(Action):
    """a + n, then + 10, then + 100, each using the previous output."""

    def plan(self, n: int) -> None:
        first = self.plan_action(Add, a=1, b=n)
        second = self.plan_action(Add, a=first.output["sum"], b=10)
        self.plan_action(Add, a=second.output["sum"], b=100)


class Branches(Action):
    """Two independent branches; the second one's middle step can fail."""

    def plan(self, fail_key: str, flaky: str = "pause") -> None:
        cls = {"pause": Flaky, "skip": FlakySkip, "fail": FlakyFail}[flaky]
        with self.concurrence():
            with self.sequence():
                self.plan_action(Flaky, key="left-1")
                self.plan_action(Flaky, key="left-2")
            with self.sequence():
                failing = self.plan_action(cls, key=fail_key)
                self.plan_action(UsesOutput, value=failing.output["key"])  # needs its output
                self.plan_action(Flaky, key="after-ordering-only")  # only ordered after it


class Finalizing(Action):
    class Input(BaseModel):
        name: str

    def run(self, event: Event | None = None) -> None:
        self.output["ran"] = True

    def finalize(self) -> None:
        FINALIZED.append(self.input.name)


class FinalizeParent(Action):
    def plan(self) -> None:
        with self.sequence():
            self.plan_action(Finalizing, name="first")
            self.plan_action(Finalizing, name="second")

    def finalize(self) -> None:
        FINALIZED.append("parent")


class PollTask(Polling):
    poll_intervals = (0.05, 0.1, 0.2)
    POLLS_NEEDED: ClassVar[int] = 3

    def invoke_external_task(self) -> dict[str, Any]:
        return {"progress": 0}

    def poll_external_task(self) -> dict[str, Any]:
        return {"progress": self.data["task"]["progress"] + 1}

    def done(self) -> bool:
        return bool(self.data["task"]["progress"] >= self.POLLS_NEEDED)


class Send(Action):
    idempotent = True

    class Input(BaseModel):
        to: str

    def run(self, event: Event | None = None) -> None:
        self.send(self.input.to, {"hello": self.input.to})


class LeavesNonJson(Action):
    """Leaves a value JSON cannot hold (a set) where ``where`` says; with ``then_fail``
    it raises after that. Its first run only stores a marker and suspends."""

    class Input(BaseModel):
        where: str  # output | data | message | event
        then_fail: bool = False

    def run(self, event: Event | None = None) -> None:
        if event is None:
            self.data["kept"] = "from the first run"
            self.suspend()
            return
        value = {1, 2}
        if self.input.where == "output":
            self.output["value"] = value
        elif self.input.where == "data":
            self.data["kept"] = value
        elif self.input.where == "message":
            self.send("somewhere", {"value": value})
        else:  # kept only while the step waits
            self.schedule_event({"value": value}, after=60)
            self.suspend()
        if self.input.then_fail:
            raise RuntimeError("failed after leaving it")


class Hangs(Action):
    """An async run (or, with ``in_finalize``, a finalize) that never finishes."""

    time_limit = 0.3

    class Input(BaseModel):
        in_finalize: bool = False

    async def run(self, event: Event | None = None) -> None:
        if not self.input.in_finalize:
            await asyncio.Event().wait()
        self.output["ran"] = True

    async def finalize(self) -> None:
        await asyncio.Event().wait()


class OwnTimeout(Action):
    """Fails at once with a TimeoutError of its own, well within its time limit."""

    time_limit = 30.0

    async def run(self, event: Event | None = None) -> None:
        raise TimeoutError("the service did not answer")


class Fleet(WithSubPlans):
    """One WaitForEvent child per host."""

    class Input(BaseModel):
        hosts: list[str]
        limit: int | None = None
        max_failures: int | None = None
        child: str = "wait"
        per_run: int = 1000  # children created per run of the parent

    def create_sub_plans(self) -> list[SubPlan]:
        child = {"wait": WaitForEvent, "flaky": Flaky}[self.input.child]
        args = {"wait": lambda h: {}, "flaky": lambda h: {"key": h}}[self.input.child]
        return [SubPlan(child, args(h), label=h) for h in self.input.hosts]

    def concurrency_limit(self) -> int | None:
        return self.input.limit

    def max_failures(self) -> int | None:
        return self.input.max_failures

    def sub_plans_per_run(self) -> int:
        return self.input.per_run
