"""TemplateStep: one step of a job template on one host, an agent action called as a
RemoteAction, with the template's ``when`` (decided on earlier steps' outputs when the
step's turn comes) and ``until`` (the call is sent again every interval until an output
matches, a health gate). The rescue strategy is an action's class attribute, so each
strategy has its subclass."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from mcoflow.actions.agent_call import AgentWord
from mcoflow.actions.remote import RemoteAction, RemoteError
from mcoflow.engine import Event, EventKind, RescueStrategy
from mcoflow.job_request import HostName

# the timer's payload key that asks for the next call of an ``until`` step
UNTIL_POLL = "until_poll"


class TemplateStep(RemoteAction):
    """``agent.action`` on ``hostname`` with ``data``; output: the reply's data.

    ``when``: ``{"changed": [outputs' changed flags], "text": ...}`` or ``{"value": an
    output, "equals"|"not_equals": v, "text": ...}`` (references resolved at run time);
    false: the host is not called and the output is the action's declared defaults with
    ``ran: false`` and the reason. ``until``: ``{"output", "equals"|"not_equals",
    "interval", "max_wait", "text"}``."""

    name = "mcoflow.template_step"
    agent = ""
    rpc_action = ""

    class Input(BaseModel):
        hostname: HostName
        agent: AgentWord
        action: AgentWord
        step: str = Field("", max_length=64)
        data: dict[str, Any] = Field(default_factory=dict)
        when: dict[str, Any] | None = None
        until: dict[str, Any] | None = None
        timeout: float | None = Field(None, gt=0, le=86400)

    def hostname(self) -> str:
        return str(self.input.hostname)

    def target(self) -> tuple[str, str]:
        return str(self.input.agent), str(self.input.action)

    def request_data(self) -> dict[str, Any]:
        return dict(self.input.data)

    @classmethod
    def describe(cls, args: Any) -> str:
        what = args.get("step") or f"{args.get('agent')}.{args.get('action')}"
        return f"{what} on {args.get('hostname')}"

    def skip_remote(self) -> bool:
        when = self.input.when
        if when is None or condition_met(when):
            return False
        self.output.update(declared_defaults(*self.target()))
        self.output.update(ran=False, reason=f"not needed: {when.get('text', 'condition false')}")
        return True

    def run(self, event: Event | None = None) -> None:
        until = self.input.until
        if until is not None and event is None:
            self.data["until_deadline"] = self._running().clock() + float(until["max_wait"])
            self.data["polls"] = 0
        if event is not None and event.kind is EventKind.USER and UNTIL_POLL in event.payload:
            if event.payload[UNTIL_POLL] != self.data.get("polls"):
                self.suspend()  # a timer of an earlier attempt
                return
            self.data["answered"] = True  # a fresh request id: the same one is deduplicated
            self._send_request()
            return
        super().run(event)

    def on_reply(self, data: dict[str, Any]) -> None:
        until = self.input.until
        if until is None or _until_met(until, data):
            self.output.update(data)
            if until is not None:
                self.output["polls"] = int(self.data.get("polls", 0)) + 1
            return
        now = self._running().clock()
        interval = float(until["interval"])
        value = data.get(until["output"])
        if now + interval > float(self.data.get("until_deadline", now)):
            self.data["answered"] = True  # a resume calls again with a fresh request id
            agent, action = self.target()
            raise RemoteError(
                f"{self.hostname()}: {agent}.{action}: {until['output']} is still {value!r} "
                f"after {float(until['max_wait']):g} s (waited until {until.get('text', '')})"
            )
        polls = int(self.data.get("polls", 0)) + 1
        self.data["polls"] = polls
        self.data["last"] = {until["output"]: value}
        self.schedule_event({UNTIL_POLL: polls}, after=interval)
        self.suspend()


class TemplateStepSkip(TemplateStep):
    """A template step with ``rescue: skip``: an error marks it skipped, the plan goes on."""

    name = "mcoflow.template_step_skip"
    rescue = RescueStrategy.SKIP


class TemplateStepFail(TemplateStep):
    """A template step with ``rescue: fail``: an error stops the host's plan for good."""

    name = "mcoflow.template_step_fail"
    rescue = RescueStrategy.FAIL


STEP_ACTIONS: dict[RescueStrategy, type[TemplateStep]] = {
    RescueStrategy.PAUSE: TemplateStep,
    RescueStrategy.SKIP: TemplateStepSkip,
    RescueStrategy.FAIL: TemplateStepFail,
}


def condition_met(when: dict[str, Any]) -> bool:
    """A ``when`` whose references were resolved: a skipped producer reads as None."""
    if "changed" in when:
        return any(bool(flag) for flag in when["changed"] or [])
    value = when.get("value")
    if "equals" in when:
        return bool(value == when["equals"])
    return bool(value != when.get("not_equals"))


def _until_met(until: dict[str, Any], data: dict[str, Any]) -> bool:
    value = data.get(until["output"])
    if "equals" in until:
        return bool(value == until["equals"])
    return bool(value != until.get("not_equals"))


def declared_defaults(agent: str, action: str) -> dict[str, Any]:
    """The outputs ``agent.action`` declares, at their defaults."""
    from mcoflow.templates.loader import builtin_interfaces

    interface = builtin_interfaces().get(agent, {}).get(action)
    return {} if interface is None else interface.complete_outputs({})
