"""rpcutil.agent_interfaces through the daemon: the declared interfaces of the host's
agents, read-only actions marked, one agent on request."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mcoflow.agent.plugins import RpcUtilAgent
from mcoflow.rpc.messages import Request, StatusCode

MakeRequest = Callable[..., Request]


async def test_every_served_agent_is_described(harness: Any, make_request: MakeRequest) -> None:
    [reply] = await harness.call(make_request("rpcutil", "agent_interfaces"))
    assert reply.statuscode is StatusCode.OK, reply.statusmsg
    agents = reply.data["agents"]
    assert list(agents) == ["rpcutil", "package", "service"]
    status = agents["package"]["actions"]["status"]
    assert status["read_only"] is True
    assert status["inputs"]["package"]["required"] is True
    assert status["inputs"]["package"]["type"] == "string"
    assert agents["package"]["actions"]["install"]["read_only"] is False
    assert agents["rpcutil"]["actions"]["agent_interfaces"]["read_only"] is True


async def test_one_agent_on_request(harness: Any, make_request: MakeRequest) -> None:
    [one] = await harness.call(make_request("rpcutil", "agent_interfaces", {"agent": "service"}))
    assert list(one.data["agents"]) == ["service"]
    [none] = await harness.call(make_request("rpcutil", "agent_interfaces", {"agent": "nope"}))
    assert none.statuscode is StatusCode.ABORTED
    assert "serves no agent nope" in none.statusmsg


def test_rpcutil_alone_describes_itself() -> None:
    assert RpcUtilAgent().peers.keys() == {"rpcutil"}
