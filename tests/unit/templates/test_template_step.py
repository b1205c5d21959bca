"""TemplateStep on its own (ActionEnvironment, a manual clock): ``until`` sends the call
again with a fresh request id every interval until the output matches, and fails once
the maximum wait passed; ``when`` skips the call with the declared outputs."""

from __future__ import annotations

from mcoflow.engine import StepState
from mcoflow.templates import TemplateStep
from mcoflow.testing import ActionEnvironment

GATE = {
    "hostname": "web-1",
    "agent": "service",
    "action": "status",
    "step": "health",
    "data": {"service": "nginx"},
    "until": {
        "output": "status",
        "equals": "running",
        "interval": 2.0,
        "max_wait": 5.0,
        "text": "status equals 'running'",
    },
}


async def test_until_calls_again_each_interval_until_the_output_matches() -> None:
    env = ActionEnvironment(TemplateStep, GATE)
    await env.start()
    await env.reply({"status": "stopped"})
    assert env.state is StepState.SUSPENDED and len(env.requests) == 1
    assert await env.advance(1.0) is None  # not yet: the interval is 2 s
    await env.advance(1.0)
    assert len(env.requests) == 2
    assert env.requests[1]["id"] != env.requests[0]["id"]  # a repeat would be deduplicated
    assert env.requests[1]["data"] == {"service": "nginx"}
    await env.reply({"status": "running", "changed": False})
    assert env.state is StepState.SUCCESS
    assert env.output == {"status": "running", "changed": False, "polls": 2}


async def test_until_fails_once_the_maximum_wait_passed() -> None:
    env = ActionEnvironment(TemplateStep, GATE)
    await env.start()
    for _ in range(3):  # at 0, 2 and 4 s: the next call would come after 5 s
        await env.reply({"status": "stopped"})
        await env.advance(2.0)
    assert env.state is StepState.ERROR
    assert len(env.requests) == 3
    assert env.error is not None
    assert "status is still 'stopped' after 5 s" in env.error["message"]
    await env.resume()  # the operator's resume: a fresh wait, with a fresh request id
    assert len(env.requests) == 4
    assert env.requests[3]["id"] not in {r["id"] for r in env.requests[:3]}
    await env.reply({"status": "running"})
    assert env.state is StepState.SUCCESS


async def test_a_false_condition_answers_with_the_declared_outputs_unasked() -> None:
    env = ActionEnvironment(
        TemplateStep,
        {
            "hostname": "web-1",
            "agent": "service",
            "action": "restart",
            "data": {"service": "nginx"},
            "when": {"changed": [False, None], "text": "any of install changed the host"},
        },
    )
    await env.start()
    assert env.state is StepState.SUCCESS and env.requests == []
    assert env.output == {
        "status": "unknown",
        "changed": False,
        "provider": None,
        "output": "",
        "ran": False,
        "reason": "not needed: any of install changed the host",
    }


async def test_a_true_condition_calls_the_host() -> None:
    env = ActionEnvironment(
        TemplateStep,
        {
            "hostname": "web-1",
            "agent": "service",
            "action": "restart",
            "data": {"service": "nginx"},
            "when": {"value": "absent", "not_equals": "installed", "text": "x"},
        },
    )
    await env.start()
    assert [(r["agent"], r["action"], r["data"]) for r in env.requests] == [
        ("service", "restart", {"service": "nginx"})
    ]
