"""Polling an external task: invoke once, then poll at growing intervals until done."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from mcoflow.engine.action import Action, Event, EventKind

_POLL = "mcoflow.poll"


class Polling(Action):
    """Subclasses implement ``invoke_external_task``, ``poll_external_task`` and
    ``done``; the task's latest state is kept in ``self.data["task"]``."""

    abstract = True
    poll_intervals: ClassVar[Sequence[float]] = (0.5, 1, 2, 4, 8, 16)
    poll_timeout: ClassVar[float | None] = None

    def invoke_external_task(self) -> dict[str, Any]:
        raise TypeError(f"{type(self).__name__} must implement invoke_external_task")

    def poll_external_task(self) -> dict[str, Any]:
        raise TypeError(f"{type(self).__name__} must implement poll_external_task")

    def done(self) -> bool:
        raise TypeError(f"{type(self).__name__} must implement done")

    def on_done(self) -> None:
        """Called once the task is done; by default copies the task state to output."""
        self.output.update(self.data["task"])

    def run(self, event: Event | None = None) -> None:
        if event is None:
            self.data["task"] = self.invoke_external_task()
            self.data["polls"] = 0
            if self.poll_timeout is not None:
                self.schedule_timeout(self.poll_timeout)
        elif event.kind is EventKind.TIMEOUT:
            raise TimeoutError(f"external task not done after {self.poll_timeout} s")
        elif event.payload.get(_POLL) is not None:
            self.data["task"] = self.poll_external_task()
            self.data["polls"] += 1
        if self.done():
            self.on_done()
            return
        attempt = min(self.data["polls"], len(self.poll_intervals) - 1)
        self.schedule_event({_POLL: self.data["polls"]}, after=self.poll_intervals[attempt])
        self.suspend()
