"""ActionEnvironment: mcoflow's Install action run without an executor or a database."""

from __future__ import annotations

from typing import Any

import pytest

from mcoflow.actions.operations import Install
from mcoflow.actions.remote import REPLY_KEY, event_reply, reply_payload
from mcoflow.engine import Action, Event, EventKind, Polling, StepState
from mcoflow.rpc.messages import StatusCode, policy_denied_message
from mcoflow.testing.actions import ActionEnvironment, ManualClock

START = 1_000.0


def install(**extra: Any) -> ActionEnvironment:
    args = {"hostname": "web1", "package": "nginx", **extra}
    return ActionEnvironment(Install, args, plan_id="p1", step_idx=2, clock=ManualClock(START))


async def test_sends_one_request_and_waits_with_a_timeout() -> None:
    env = install()
    await env.start()
    assert env.state is StepState.SUSPENDED
    assert env.requests == [
        {
            "id": "p1.2.0",
            "agent": "package",
            "action": "install",
            "data": {"package": "nginx"},
            "identities": ["web1"],
            "ttl": 60.0,
        }
    ]
    [timer] = env.timers
    assert (timer.kind, timer.payload, timer.due_at) == (
        EventKind.TIMEOUT,
        {"request_id": "p1.2.0"},
        START + 60,
    )


async def test_a_successful_reply_becomes_its_output() -> None:
    env = install(version="1.24")
    await env.start()
    assert env.requests[0]["data"] == {"package": "nginx", "version": "1.24"}
    await env.reply({"ensure": "1.24-1", "changed": True, "provider": "apt"})
    assert env.state is StepState.SUCCESS
    assert env.error is None
    # validated by Install.Output: fields the host left out take their defaults
    assert env.output == {
        "ensure": "1.24-1",
        "version": None,
        "arch": None,
        "provider": "apt",
        "changed": True,
        "output": "",
    }
    assert env.data["reply"] == {
        "sender": "web1",
        "statuscode": 0,
        "statusmsg": "OK",
        "data": {"ensure": "1.24-1", "changed": True, "provider": "apt"},
    }
    assert len(env.requests) == 1


async def test_a_failed_reply_is_an_error_and_a_resume_sends_a_fresh_request() -> None:
    env = install()
    await env.start()
    await env.reply(statuscode=StatusCode.ABORTED, statusmsg="E: Unable to locate package")
    assert env.state is StepState.ERROR
    assert env.error is not None
    assert env.error["type"] == "RemoteError"
    assert env.error["message"] == (
        "web1: package.install failed (status 1, the action failed): E: Unable to locate package"
    )
    # each call returns its run's outcome: what strict mypy reads without narrowing
    resumed = await env.resume()
    assert resumed.state is StepState.SUSPENDED
    assert [r["id"] for r in env.requests] == ["p1.2.0", "p1.2.1"]


async def test_a_policy_denial_says_so() -> None:
    env = install()
    await env.start()
    await env.reply(
        statuscode=StatusCode.ABORTED,
        statusmsg=policy_denied_message("alice", "package", "install"),
    )
    assert env.state is StepState.ERROR
    assert env.error is not None
    assert env.error["message"] == (
        "denied by policy on web1: alice is not authorized to call package.install"
    )


async def test_no_reply_in_time_is_no_response() -> None:
    env = install(timeout=30)
    await env.start()
    assert await env.advance(29.9) is None
    outcome = await env.advance(0.1)
    assert outcome is not None
    assert outcome.state is StepState.ERROR
    assert outcome.error is not None
    assert outcome.error["type"] == "NoResponseError"
    assert outcome.error["message"] == "no response from web1 within 30 s"
    assert env.timers == []


async def test_the_timer_and_a_late_reply_of_an_earlier_attempt_are_ignored() -> None:
    env = install()
    await env.start()
    await env.reply(statuscode=StatusCode.UNKNOWN_ERROR, statusmsg="boom")
    env.clock.advance(10)
    await env.resume()  # attempt 1, its timer due at START + 70
    late = await env.reply({"changed": True}, request_id="p1.2.0")
    assert late.state is StepState.SUSPENDED
    old_timer = await env.advance(50)  # attempt 0's timer falls due
    assert old_timer is not None
    assert old_timer.state is StepState.SUSPENDED
    assert await env.advance(10) is not None
    assert env.state is StepState.ERROR
    assert env.error is not None
    assert env.error["type"] == "NoResponseError"


async def test_cancel_stops_install_without_running_it() -> None:
    # Install is not cancellable: the engine cancels its waiting step outright
    env = install()
    await env.start()
    assert await env.cancel() is None
    assert env.state is StepState.CANCELLED
    assert len(env.outcomes) == 1
    with pytest.raises(RuntimeError, match="only a suspended step"):
        await env.reply({"changed": True})


class Waits(Action):
    """Suspends until cancelled; ends cancelled (the runner's doing, not its own)."""

    name = "tests.action_environment.waits"
    cancellable = True

    def run(self, event: Event | None = None) -> None:
        self.data.setdefault("seen", []).append(None if event is None else event.kind.value)
        if event is None or event.kind is not EventKind.CANCEL:
            self.suspend()


async def test_a_cancellable_action_gets_one_cancel_event() -> None:
    env = ActionEnvironment(Waits)
    await env.start()
    await env.cancel()
    assert env.state is StepState.CANCELLED
    assert env.data["seen"] == [None, "cancel"]
    with pytest.raises(RuntimeError, match="cancelled already"):
        await env.cancel()


async def test_a_reply_event_as_stored_reads_back() -> None:
    # the payload as the reply router has always stored it: old events must stay readable
    stored = {
        REPLY_KEY: {
            "version": 1,
            "request_id": "p1.2.0",
            "sender": "web1",
            "agent": "package",
            "action": "install",
            "statuscode": 0,
            "statusmsg": "OK",
            "data": {"changed": False},
            "time": START,
        }
    }
    reply = event_reply(Event(EventKind.USER, stored))
    assert reply is not None
    assert reply_payload(reply) == stored
    env = install()
    await env.start()
    await env.deliver(Event(EventKind.USER, stored))
    assert env.state is StepState.SUCCESS
    assert env.output["changed"] is False


def test_an_event_without_a_well_formed_reply_has_none() -> None:
    assert event_reply(Event(EventKind.TIMEOUT, {"request_id": "p1.2.0"})) is None
    assert event_reply(Event(EventKind.USER, {REPLY_KEY: "text"})) is None
    assert event_reply(Event(EventKind.USER, {REPLY_KEY: {"request_id": "p1.2.0"}})) is None


def test_the_input_is_checked_as_planning_checks_it() -> None:
    with pytest.raises(ValueError, match="package"):
        ActionEnvironment(Install, {"hostname": "web1"})


class PollsTwice(Polling):
    """Done at its second poll; the polls' times show the environment's clock."""

    name = "tests.action_environment.polls_twice"
    poll_intervals = (5, 10)

    def invoke_external_task(self) -> dict[str, Any]:
        return {"state": "started"}

    def poll_external_task(self) -> dict[str, Any]:
        return {"state": "done" if self.data["polls"] >= 1 else "busy"}

    def done(self) -> bool:
        return bool(self.data["task"]["state"] == "done")


async def test_timers_fall_due_on_the_environments_clock() -> None:
    env = ActionEnvironment(PollsTwice, clock=ManualClock(START))
    await env.start()
    assert [(t.payload, t.due_at) for t in env.timers] == [({"mcoflow.poll": 0}, START + 5)]
    assert await env.advance(4) is None
    await env.advance(1)
    assert [(t.payload, t.due_at) for t in env.timers] == [({"mcoflow.poll": 1}, START + 15)]
    done = await env.advance(10)
    assert done is not None
    assert done.state is StepState.SUCCESS
    assert env.output == {"state": "done"}
    assert [e.due_at for e in env.scheduled] == [START + 5, START + 15]
