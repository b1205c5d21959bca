"""The Install step reads MCollective's package agent (mcollective-package-agent): no
"changed" output, nil outputs, and a *failure* when it finds nothing to do."""

from __future__ import annotations

from mcoflow.actions import Install, Uninstall
from mcoflow.engine import StepState
from mcoflow.rpc.messages import StatusCode
from mcoflow.testing import ActionEnvironment

ARGS = {"hostname": "node1", "package": "hello"}
# what the agent fills in: its DDL gives every output a nil default
STATUS = {"ensure": "2.10-3", "version": "2.10", "output": None, "epoch": None}


async def test_a_success_of_the_mcollective_agent_is_a_change() -> None:
    env = ActionEnvironment(Install, ARGS)
    await env.start()
    await env.reply({**STATUS, "output": "Setting up hello (2.10-3) ..."})
    assert env.state is StepState.SUCCESS
    assert env.output["changed"] is True
    assert (env.output["ensure"], env.output["output"]) == (
        "2.10-3",
        "Setting up hello (2.10-3) ...",
    )


async def test_already_installed_is_done_with_nothing_changed() -> None:
    env = ActionEnvironment(Install, ARGS)
    await env.start()
    # the real agent raises it: MCollective answers status 5
    await env.reply(
        STATUS, statuscode=StatusCode.UNKNOWN_ERROR, statusmsg="Package is already installed"
    )
    assert env.state is StepState.SUCCESS
    assert env.output["changed"] is False
    assert env.output["output"] == ""  # nil: left to the default
    # the console shows what the node said
    assert (env.data["reply"]["statuscode"], env.data["reply"]["statusmsg"]) == (
        5,
        "Package is already installed",
    )


async def test_not_present_settles_an_uninstall_but_other_failures_fail() -> None:
    env = ActionEnvironment(Uninstall, ARGS)
    await env.start()
    await env.reply(
        STATUS, statuscode=StatusCode.ABORTED, statusmsg="Package is not present on the system"
    )
    assert (env.state, env.output["changed"]) == (StepState.SUCCESS, False)

    failing = ActionEnvironment(Install, ARGS)
    await failing.start()
    await failing.reply(
        STATUS, statuscode=StatusCode.UNKNOWN_ERROR, statusmsg="E: Unable to locate package hello"
    )
    assert failing.state is StepState.ERROR
    assert "Unable to locate package" in (failing.error or {}).get("message", "")


async def test_already_installed_after_a_request_sent_again_counts_as_a_change() -> None:
    env = ActionEnvironment(Install, ARGS)
    await env.start()
    await env.advance(61)  # no response: the node died mid-install
    assert env.state is StepState.ERROR
    await env.resume()
    assert len(env.requests) == 2 and env.requests[0]["id"] == env.requests[1]["id"]
    await env.reply(
        STATUS, statuscode=StatusCode.UNKNOWN_ERROR, statusmsg="Package is already installed"
    )
    assert env.state is StepState.SUCCESS
    # the first send may be what installed it: the restart after it must still happen
    assert env.output["changed"] is True


async def test_mcoflows_own_agent_says_changed_itself() -> None:
    env = ActionEnvironment(Install, ARGS)
    await env.start()
    await env.reply({"ensure": "2.10-3", "changed": False, "output": ""})
    assert (env.state, env.output["changed"]) == (StepState.SUCCESS, False)
