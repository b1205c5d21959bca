"""A node of a test's own making on a collective's bus: it answers what real nodes would
not (a reply signed with another psk)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

from mcoflow.rpc.mcollective.connection import StompConnection
from mcoflow.rpc.mcollective.marshal import Symbol, loads
from mcoflow.rpc.mcollective.psk import encode_reply
from mcoflow.rpc.mcollective.stomp import Frame
from mcoflow.rpc.transports.mcollective import parse_mcollective_url
from tests.mco_nodes import McoCollective

__all__ = ["rogue_node"]


class _Rogue:
    answered = 0


@contextlib.asynccontextmanager
async def rogue_node(nodes: McoCollective, identity: str, *, psk: str) -> AsyncIterator[_Rogue]:
    """A node of its own making on the collective's bus: it reads the requests sent to
    ``identity`` and answers each, signing with ``psk``."""
    broker = nodes.broker
    connection = StompConnection(parse_mcollective_url(broker.mcoflow_url).servers)
    rogue = _Rogue()

    async def answer(frame: Frame) -> None:
        request = loads(frame.body)
        assert isinstance(request, dict)
        reply = encode_reply(
            {Symbol("statuscode"): 0, Symbol("statusmsg"): "OK", Symbol("data"): {}},
            psk=psk,
            senderid=identity,
            requestid=str(request[Symbol("requestid")]),
            senderagent=str(request[Symbol("agent")]),
            msgtime=int(time.time()),
        )
        await connection.send(frame.header("reply-to"), reply)
        rogue.answered += 1

    await connection.connect()
    try:
        await connection.subscribe(
            f"/exchange/{broker.collective}_directed/{identity}", answer, ack="auto"
        )
        yield rogue
    finally:
        await connection.close()
