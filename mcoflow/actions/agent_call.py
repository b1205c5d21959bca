"""AgentCall: any action of any agent on one host, as one durable step.

The four jobs call their agents through actions of their own (Install, Restart, ...);
this one calls whatever agent and action its input names, with the inputs given. The
agent validates them against the interface it declares before acting; the reply's data
is the step's output."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints

from mcoflow.actions.remote import RemoteAction
from mcoflow.job_request import HostName

# agent and action names as agents declare them (rpcutil, get_fact, ...)
AGENT_WORD = r"^[a-z][a-z0-9_]{0,63}$"
AgentWord = Annotated[str, StringConstraints(pattern=AGENT_WORD)]


class AgentCall(RemoteAction):
    """Call ``agent.action`` on ``hostname`` with ``data``; output: the reply's data."""

    name = "mcoflow.agent_call"
    agent = ""
    rpc_action = ""

    class Input(BaseModel):
        hostname: HostName
        agent: AgentWord
        action: AgentWord
        data: dict[str, Any] = Field(default_factory=dict)
        timeout: float | None = Field(None, gt=0, le=86400)

    def hostname(self) -> str:
        return str(self.input.hostname)

    def target(self) -> tuple[str, str]:
        return str(self.input.agent), str(self.input.action)

    def request_data(self) -> dict[str, Any]:
        return dict(self.input.data)

    @classmethod
    def describe(cls, args: Any) -> str:
        return f"{args.get('agent')}.{args.get('action')} on {args.get('hostname')}"
