"""A read-only agent call may be retried freely: every send is a fresh request, a host
that does not answer is asked again, and a resume asks afresh; a call that changes
things keeps its request id so the host answers a resend from its journal."""

from __future__ import annotations

from mcoflow.actions import AgentCall, ReadOnlyAgentCall
from mcoflow.engine import StepState
from mcoflow.testing import ActionEnvironment

ARGS = {"hostname": "web-01", "agent": "package", "action": "status", "timeout": 5}
DATA = {"package": "curl"}


async def test_a_silent_host_is_asked_again_with_fresh_ids() -> None:
    env = ActionEnvironment(ReadOnlyAgentCall, {**ARGS, "data": DATA, "retries": 2})
    await env.start()
    await env.advance(5)
    await env.advance(5)
    assert env.state is StepState.SUSPENDED
    ids = [r["id"] for r in env.requests]
    assert len(ids) == len(set(ids)) == 3
    assert all(r["data"] == DATA for r in env.requests)
    await env.advance(5)
    assert env.state is StepState.ERROR
    assert env.error is not None and "no response from web-01" in env.error["message"]

    await env.resume()  # the operator's resume: a fresh request again
    assert len({r["id"] for r in env.requests}) == 4
    await env.reply({"ensure": "installed"})
    assert (env.state, env.output["ensure"]) == (StepState.SUCCESS, "installed")


async def test_a_late_reply_to_an_earlier_request_is_not_taken() -> None:
    env = ActionEnvironment(ReadOnlyAgentCall, {**ARGS, "data": DATA})
    await env.start()
    first = env.requests[-1]["id"]
    await env.advance(5)
    await env.reply({"ensure": "absent"}, request_id=first)
    assert env.state is StepState.SUSPENDED
    await env.reply({"ensure": "installed"})
    assert env.output["ensure"] == "installed"


async def test_a_change_keeps_its_request_id_on_resume() -> None:
    env = ActionEnvironment(AgentCall, {**ARGS, "action": "install", "data": DATA})
    await env.start()
    await env.advance(5)
    assert env.state is StepState.ERROR
    await env.resume()
    assert len({r["id"] for r in env.requests}) == 1
