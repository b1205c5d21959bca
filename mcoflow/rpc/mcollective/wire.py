"""mcoflow's requests and replies as MCollective 2.12 nodes send and read them (psk).

A request becomes the Marshal envelope ``mco rpc`` would send; ``rpcutil.ping`` becomes
the ``discovery`` agent's ``ping``, the way MCollective discovers. A reply is checked (the
digest first, then its age against the ttl of the request it answers) and read back into
mcoflow's ``Reply``; the drops are counted by reason.

An MCollective reply names neither the action nor the ttl of its request, so both are
remembered per request id for the requests this process sealed (a bounded number). A
reply to a request of an earlier process is read with the default ttl and the action
"unknown": the step that waits for it needs neither.
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from typing import Any

from mcoflow.rpc.filters import FilterError
from mcoflow.rpc.mcollective.filters import to_mcollective
from mcoflow.rpc.mcollective.marshal import RubyValue, Symbol
from mcoflow.rpc.mcollective.psk import (
    DEFAULT_TTL,
    PskRejected,
    RejectReason,
    check_age,
    decode_reply,
    encode_request,
    rpc_body,
)
from mcoflow.rpc.mcollective.psk import Reply as NodeReply
from mcoflow.rpc.mcollective.replies import plain
from mcoflow.rpc.messages import MessageError, Reply, Request, StatusCode
from mcoflow.rpc.security import SecurityError
from mcoflow.rpc.wire import Wire

__all__ = ["DISCOVERY_AGENT", "PskWire"]

DISCOVERY_AGENT = "discovery"
_PING = ("rpcutil", "ping")
_UNKNOWN_ACTION = "unknown"


class PskWire(Wire):
    def __init__(
        self,
        *,
        psk: str,
        collective: str,
        callerid: str,
        default_ttl: int = DEFAULT_TTL,
        remember: int = 100_000,
    ) -> None:
        if not psk:
            raise ValueError("mcollective_psk: the nodes' plugin.psk is required")
        self.psk = psk
        self.collective = collective
        self.callerid = callerid
        self.default_ttl = default_ttl
        self.dropped: Counter[RejectReason] = Counter()
        self._remember = remember
        self._sent: OrderedDict[str, tuple[str, str, int]] = OrderedDict()

    def route_agent(self, request: Request) -> str:
        return DISCOVERY_AGENT if (request.agent, request.action) == _PING else request.agent

    def seal(self, request: Request) -> bytes:
        wire_agent = self.route_agent(request)
        try:
            filter = to_mcollective(
                request.filter, agent=None if wire_agent == DISCOVERY_AGENT else wire_agent
            )
        except FilterError as exc:
            raise MessageError(str(exc)) from None
        body: RubyValue = (
            "ping"
            if wire_agent == DISCOVERY_AGENT
            else rpc_body(request.agent, request.action, request.data, self.callerid)
        )
        # the node refuses a request older than its ttl, counted in whole seconds
        ttl = max(1, math.ceil(request.ttl))
        self._note(request.id, request.agent, request.action, ttl)
        return encode_request(
            body,
            psk=self.psk,
            senderid=request.sender,
            agent=wire_agent,
            collective=self.collective,
            filter=filter,
            requestid=request.id,
            callerid=self.callerid,
            ttl=ttl,
            msgtime=int(request.time),
        )

    def _note(self, request_id: str, agent: str, action: str, ttl: int) -> None:
        self._sent[request_id] = (agent, action, ttl)
        self._sent.move_to_end(request_id)
        while len(self._sent) > self._remember:
            self._sent.popitem(last=False)

    def open(self, envelope: bytes) -> list[Reply]:
        try:
            node_reply = decode_reply(envelope, psk=self.psk, ttl=None)
            agent, action, ttl = self._sent.get(
                node_reply.requestid,
                (node_reply.senderagent, _UNKNOWN_ACTION, self.default_ttl),
            )
            check_age(node_reply.msgtime, ttl, None)
        except PskRejected as exc:
            self.dropped[exc.reason] += 1
            if exc.reason is RejectReason.MALFORMED:
                raise MessageError(f"MCollective reply: {exc}") from None
            raise SecurityError(f"MCollective reply: {exc}") from None
        try:
            return [self._reply(node_reply, agent, action)]
        except MessageError:
            self.dropped[RejectReason.MALFORMED] += 1
            raise

    def _reply(self, node_reply: NodeReply, agent: str, action: str) -> Reply:
        common: dict[str, Any] = {
            "request_id": node_reply.requestid,
            "sender": node_reply.senderid,
            "time": float(node_reply.msgtime),
        }
        if node_reply.senderagent == DISCOVERY_AGENT:
            if node_reply.body != "pong":
                raise MessageError(f"discovery reply from {node_reply.senderid} is not 'pong'")
            return _validated(
                common,
                agent=_PING[0],
                action=_PING[1],
                statuscode=0,
                statusmsg="OK",
                data={"pong": float(node_reply.msgtime)},
            )
        body = node_reply.body
        if not isinstance(body, dict):
            raise MessageError(f"reply from {node_reply.senderid}: the body is not a Hash")
        code = body.get(Symbol("statuscode"))
        message = body.get(Symbol("statusmsg"))
        data = plain(body.get(Symbol("data")) or {})
        if not isinstance(code, int) or isinstance(code, bool) or not isinstance(data, dict):
            raise MessageError(f"reply from {node_reply.senderid}: no statuscode or data")
        if code not in StatusCode._value2member_map_:
            code = int(StatusCode.UNKNOWN_ERROR)
        text = plain(message) if isinstance(message, str | bytes) else ""
        return _validated(
            common, agent=agent, action=action, statuscode=code, statusmsg=text, data=data
        )


def _validated(common: dict[str, Any], **fields: Any) -> Reply:
    try:
        return Reply.model_validate({**common, **fields})
    except ValueError as exc:
        raise MessageError(f"reply from {common['sender']!r}: {exc}") from None
