"""RemoteAction: a step that sends one RPC request through the outbox, suspends, and
finishes when the host's reply (or its timeout) arrives."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import ValidationError

from mcoflow.engine import Action, Event, EventKind
from mcoflow.rpc.messages import POLICY_DENIED, Reply, StatusCode, is_policy_denial

# Outbox destination of RPC requests; the RpcPublisher is the one reading it.
RPC_DESTINATION = "rpc"
REPLY_KEY = "reply"


class RemoteError(RuntimeError):
    """The host answered, and the answer is a failure."""


class NoResponseError(TimeoutError):
    """The host did not answer in time."""


def request_id(plan_id: str, step_idx: int, attempt: int) -> str:
    return f"{plan_id}.{step_idx}.{attempt}"


def parse_request_id(value: str) -> tuple[str, int] | None:
    """The (plan, step) a request id belongs to, or None if it is not one of ours."""
    parts = value.split(".")
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    return parts[0], int(parts[1])


def reply_payload(reply: Reply) -> dict[str, Any]:
    """The payload of the event that brings a reply to its step. It is stored as it is:
    events already stored are read back by ``event_reply``, so keep this shape."""
    return {REPLY_KEY: reply.model_dump(mode="json")}


def event_reply(event: Event) -> Reply | None:
    """The host's reply an event brings, validated; None for an event that brings none
    (a timer, a cancel) or nothing a reply can be made of."""
    raw = event.payload.get(REPLY_KEY)
    if not isinstance(raw, dict):
        return None
    try:
        return Reply.model_validate(raw)
    except ValidationError:
        return None


_STATUS_TEXT = {
    StatusCode.ABORTED: "the action failed",
    StatusCode.UNKNOWN_ACTION: "the host does not know this action",
    StatusCode.MISSING_DATA: "input missing",
    StatusCode.INVALID_DATA: "invalid input",
    StatusCode.UNKNOWN_ERROR: "unexpected error on the host",
}


class RemoteAction(Action):
    """Subclasses set ``agent`` and ``rpc_action`` and implement ``hostname``,
    ``request_data`` and ``on_reply``. Re-running is safe: a request keeps its id
    until a reply was handled, and hosts answer a repeated id from their journal."""

    abstract = True
    idempotent = True
    agent: ClassVar[str]
    rpc_action: ClassVar[str]
    default_timeout: ClassVar[float] = 60.0

    def hostname(self) -> str:
        raise TypeError(f"{type(self).__name__} must implement hostname")

    def target(self) -> tuple[str, str]:
        """The (agent, action) this step calls; a generic step reads it from its input."""
        return self.agent, self.rpc_action

    def request_data(self) -> dict[str, Any]:
        raise TypeError(f"{type(self).__name__} must implement request_data")

    def timeout(self) -> float:
        return float(getattr(self.input, "timeout", None) or self.default_timeout)

    def on_reply(self, data: dict[str, Any]) -> None:
        """Turn a successful reply's data into output (default: copy it)."""
        self.output.update(data)

    def settled_failure(self, reply: Reply) -> dict[str, Any] | None:
        """A failed answer that this step takes as done, as the data ``on_reply`` gets;
        None (the default): it fails the step."""
        return None

    def skip_remote(self) -> bool:
        """Return True to finish without calling the host (``output`` already set)."""
        return False

    def run(self, event: Event | None = None) -> None:
        if event is None:
            if self.skip_remote():
                return
            self._send_request()
            return
        if event.kind is EventKind.TIMEOUT:
            if event.payload.get("request_id") not in (None, self.data["request_id"]):
                self.suspend()  # the timer of an earlier attempt
                return
            raise NoResponseError(f"no response from {self.hostname()} within {self.timeout():g} s")
        reply = event_reply(event)
        if reply is None or reply.request_id != self.data.get("request_id"):
            self.suspend()  # a late reply to an earlier attempt: keep waiting
            return
        # kept for the console's step view
        self.data["reply"] = {
            "sender": reply.sender,
            "statuscode": int(reply.statuscode),
            "statusmsg": reply.statusmsg,
            "data": reply.data,
        }
        code = reply.statuscode
        settled = self.settled_failure(reply) if code is not StatusCode.OK else None
        if settled is not None:
            self.on_reply(settled)
            return
        if code is not StatusCode.OK:
            # the host really answered: a resume must send a fresh request, not replay it
            self.data["answered"] = True
            if is_policy_denial(code, reply.statusmsg):
                why = reply.statusmsg.removeprefix(POLICY_DENIED).strip()
                raise RemoteError(f"denied by policy on {self.hostname()}: {why}")
            what = _STATUS_TEXT.get(code, code.name.lower())
            agent, action = self.target()
            raise RemoteError(
                f"{self.hostname()}: {agent}.{action} failed "
                f"(status {int(code)}, {what}): {reply.statusmsg}"
            )
        self.on_reply(dict(reply.data))

    def _send_request(self) -> None:
        attempt = int(self.data.get("attempt", 0))
        if self.data.get("answered"):
            attempt += 1
            self.data["answered"] = False
        self.data["attempt"] = attempt
        # how often this step sent a request: a host without a journal (MCollective) runs
        # a request sent again, and its answer then cannot tell what the first one did
        self.data["sends"] = int(self.data.get("sends", 0)) + 1
        rid = request_id(self.plan_id, self.step_id, attempt)
        self.data["request_id"] = rid
        timeout = self.timeout()
        agent, action = self.target()
        self.send(
            RPC_DESTINATION,
            {
                "id": rid,
                "agent": agent,
                "action": action,
                "data": self.request_data(),
                "identities": [self.hostname()],
                "ttl": timeout,
            },
        )
        self.schedule_timeout(timeout, payload={"request_id": rid})
        self.suspend()
