"""Actions for the executor crash test (``test_executor_crash.py``).

The executor subprocess imports this module with ``--import
tests.acceptance.crash_actions``; names are explicit so the test process and the
executor agree on them whatever the module is called.

Every ``run()`` appends a ``start`` line before its work and an ``end`` line after it to
the append-only run log named by ``$CRASH_TEST_RUN_LOG`` (one ``write(2)`` per line, so a
SIGKILL never leaves half a line). A ``start`` without its ``end`` from the same pid is a
run the kill interrupted.

Durable effects go through the outbox (``self.send``), committed with the step's
outcome: counting outbox rows per (plan, step) counts committed runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from pydantic import BaseModel

from mcoflow.engine import Action, Event, EventKind

RUN_LOG_ENV = "CRASH_TEST_RUN_LOG"
EFFECTS = "effects"


def log_run(what: str, action: Action, event: Event | None, **extra: Any) -> None:
    path = os.environ.get(RUN_LOG_ENV)
    if not path:
        return
    record = {
        "what": what,
        "t": time.time(),
        "pid": os.getpid(),
        "plan": action.plan_id,
        "step": action.step_id,
        "action": action.name,
        "idempotent": action.idempotent,
        "event": None if event is None else event.kind.value,
        **extra,
    }
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(record) + "\n").encode())
    finally:
        os.close(fd)


class Traced(Action):
    """Logs every run; subclasses implement ``work``."""

    abstract = True

    async def run(self, event: Event | None = None) -> None:
        log_run("start", self, event)
        await self.work(event)
        log_run("end", self, event, suspended=self._running().suspended)

    async def work(self, event: Event | None) -> None:
        raise TypeError(f"{type(self).__name__} must implement work")


class Noop(Traced):
    """Idempotent busy-work: a re-run after a crash is harmless."""

    name = "crash.Noop"
    idempotent = True

    class Input(BaseModel):
        work: float

    async def work(self, event: Event | None) -> None:
        await asyncio.sleep(self.input.work)
        self.output["token"] = f"{self.plan_id}:{self.step_id}"


class Effect(Traced):
    """Not idempotent: its effect is one outbox message, committed with its outcome."""

    name = "crash.Effect"

    class Input(BaseModel):
        tag: str
        work: float
        token: str | None = None

    async def work(self, event: Event | None) -> None:
        await asyncio.sleep(self.input.work / 2)
        self.send(
            EFFECTS,
            {
                "what": "effect",
                "plan": self.plan_id,
                "step": self.step_id,
                "tag": self.input.tag,
                "token": self.input.token,
            },
        )
        # the message is queued but not committed yet: a kill here must not publish it
        await asyncio.sleep(self.input.work / 2)
        self.output["tag"] = self.input.tag


class TimerWait(Traced):
    """Idempotent: waits for its own persisted timer."""

    name = "crash.TimerWait"
    idempotent = True

    class Input(BaseModel):
        after: float

    async def work(self, event: Event | None) -> None:
        if event is None:
            self.data["timer"] = f"timer:{self.plan_id}:{self.step_id}"
            self.schedule_event({"timer": self.data["timer"]}, after=self.input.after)
            self.suspend()
            return
        if event.payload.get("timer") != self.data.get("timer"):
            raise RuntimeError(f"unexpected event {event}")
        self.output["fired"] = dict(event.payload)


class ExternalWait(Traced):
    """Idempotent: waits for an event the test delivers with ``World.event``."""

    name = "crash.ExternalWait"
    idempotent = True

    async def work(self, event: Event | None) -> None:
        if event is None:
            self.suspend()
            return
        if event.kind is not EventKind.USER or "external" not in event.payload:
            raise RuntimeError(f"unexpected event {event}")
        self.output["got"] = dict(event.payload)


class RequestReply(Traced):
    """Not idempotent: sends a request (outbox) once, then waits for the reply. A run
    that starts over (resumed after an abnormal termination) finds ``data["sent"]``
    and only waits again: the request went out with the commit that set it."""

    name = "crash.RequestReply"

    class Input(BaseModel):
        work: float

    async def work(self, event: Event | None) -> None:
        if event is None:
            if not self.data.get("sent"):
                await asyncio.sleep(self.input.work)
                self.send(EFFECTS, {"what": "request", "plan": self.plan_id, "step": self.step_id})
                self.data["sent"] = True
            self.suspend()
            return
        if event.kind is not EventKind.USER or "reply" not in event.payload:
            raise RuntimeError(f"unexpected event {event}")
        self.output["reply"] = dict(event.payload)


class DelayedEffect(Traced):
    """Not idempotent: arms a persisted timer, and when it fires sends one effect."""

    name = "crash.DelayedEffect"

    class Input(BaseModel):
        after: float
        work: float

    async def work(self, event: Event | None) -> None:
        if event is None:
            if not self.data.get("armed"):
                self.data["armed"] = f"timer:{self.plan_id}:{self.step_id}"
                self.schedule_event({"timer": self.data["armed"]}, after=self.input.after)
            self.suspend()
            return
        if event.payload.get("timer") != self.data.get("armed"):
            raise RuntimeError(f"unexpected event {event}")
        await asyncio.sleep(self.input.work / 2)
        self.send(
            EFFECTS,
            {"what": "effect", "plan": self.plan_id, "step": self.step_id, "tag": "delayed"},
        )
        await asyncio.sleep(self.input.work / 2)
        self.output["fired"] = dict(event.payload)


class CrashPlan(Action):
    """The plan the test triggers many times (no run phase of its own; a finalize)."""

    name = "crash.CrashPlan"

    def plan(self, work: list[float], timer: float, delay: float) -> None:
        with self.sequence():
            first = self.plan_action(Noop, work=work[0])
            with self.concurrence():
                self.plan_action(Effect, tag="early", work=work[1])
                self.plan_action(TimerWait, after=timer)
                self.plan_action(ExternalWait)
                self.plan_action(Noop, work=work[2])
            self.plan_action(RequestReply, work=work[3])
            self.plan_action(DelayedEffect, after=delay, work=work[4])
            self.plan_action(Effect, tag="late", work=work[5], token=first.output["token"])

    def finalize(self) -> None:
        log_run("finalize", self, None)
