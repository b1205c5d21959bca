"""MCollective 2.12's ``psk`` security scheme: Marshal envelopes with an MD5 digest.

A message is ``Marshal.dump`` of a Hash with Symbol keys whose ``:body`` is a binary String
holding ``Marshal.dump`` of the payload, and ``:hash`` is the lowercase hex
``MD5(body bytes + psk)`` (``MCollective::Security::Psk#makehash``). Requests carry
``:senderid :requestid :filter :collective :agent :callerid :ttl :msgtime``
(``Security::Base#create_request``), replies ``:senderid :requestid :senderagent :msgtime``
(``#create_reply``). A node refuses a request older than its ttl (``Message#validate``); a
reply is held to the same rule against the request's ttl.

The digest is checked on the bytes as received, before the inner payload is even read.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from mcoflow.rpc.mcollective.marshal import MarshalError, RubyKey, RubyValue, Symbol, dumps, loads

__all__ = [
    "DEFAULT_TTL",
    "Reply",
    "check_age",
    "Request",
    "PskRejected",
    "RejectReason",
    "decode_reply",
    "decode_request",
    "default_callerid",
    "digest",
    "encode_reply",
    "encode_request",
    "new_request_id",
    "rpc_body",
]

DEFAULT_TTL = 60
_T = TypeVar("_T")
# Security::Base#valid_callerid?: a node sends no reply to a request with another shape
_CALLERID = re.compile(r"\A\w+=[\w.-]+\Z", re.ASCII)


class RejectReason(Enum):
    """Why a message was dropped; the transport counts drops per reason."""

    MALFORMED = "malformed"
    BAD_DIGEST = "bad digest"
    EXPIRED = "expired"


class PskRejected(Exception):
    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Request:
    requestid: str
    senderid: str
    agent: str
    collective: str
    callerid: str
    filter: Mapping[RubyKey, RubyValue]
    ttl: int
    msgtime: int
    body: RubyValue


@dataclass(frozen=True)
class Reply:
    requestid: str
    senderid: str
    senderagent: str
    msgtime: int
    body: RubyValue


def digest(body: bytes, psk: str) -> str:
    """``Digest::MD5.hexdigest(body + psk)``; MD5 is the protocol's, not a choice."""
    if not psk.isascii():
        # Ruby cannot join a binary body holding bytes >= 0x80 to a non-ASCII UTF-8 psk
        # (Encoding::CompatibilityError), so such a key fails on the nodes for some messages
        raise ValueError("the MCollective psk must be ASCII")
    return hashlib.md5(body + psk.encode("utf-8"), usedforsecurity=False).hexdigest()


def new_request_id() -> str:
    """32 lowercase hex characters, as MCollective's own request ids."""
    return uuid.uuid4().hex


def default_callerid() -> str:
    """What the psk plugin sends by default (``plugin.psk.callertype = uid``)."""
    return f"uid={os.getuid()}"


def rpc_body(
    agent: str, action: str, data: Mapping[str, RubyValue], caller: str
) -> dict[RubyKey, RubyValue]:
    """The payload of an RPC request as ``MCollective::RPC::Client`` builds it."""
    inputs: dict[RubyKey, RubyValue] = {Symbol(k): v for k, v in data.items()}
    inputs[Symbol("process_results")] = True
    return {
        Symbol("agent"): agent,
        Symbol("action"): action,
        Symbol("caller"): caller,
        Symbol("data"): inputs,
    }


def encode_request(
    body: RubyValue,
    *,
    psk: str,
    senderid: str,
    agent: str,
    collective: str,
    filter: Mapping[RubyKey, RubyValue],
    requestid: str | None = None,
    callerid: str | None = None,
    ttl: int = DEFAULT_TTL,
    msgtime: int | None = None,
) -> bytes:
    callerid = default_callerid() if callerid is None else callerid
    if not _CALLERID.match(callerid):
        raise ValueError(f"callerid {callerid!r} must look like 'kind=name' (uid=0, user=ops)")
    inner = dumps(body)
    return dumps(
        {
            Symbol("body"): inner,
            Symbol("senderid"): senderid,
            Symbol("requestid"): requestid or new_request_id(),
            Symbol("filter"): dict(filter),
            Symbol("collective"): collective,
            Symbol("agent"): agent,
            Symbol("callerid"): callerid,
            Symbol("ttl"): ttl,
            Symbol("msgtime"): int(time.time()) if msgtime is None else msgtime,
            Symbol("hash"): digest(inner, psk),
        }
    )


def encode_reply(
    body: RubyValue,
    *,
    psk: str,
    senderid: str,
    requestid: str,
    senderagent: str,
    msgtime: int | None = None,
) -> bytes:
    """A reply as a node writes it (for fake nodes in tests)."""
    inner = dumps(body)
    return dumps(
        {
            Symbol("senderid"): senderid,
            Symbol("requestid"): requestid,
            Symbol("senderagent"): senderagent,
            Symbol("msgtime"): int(time.time()) if msgtime is None else msgtime,
            Symbol("body"): inner,
            Symbol("hash"): digest(inner, psk),
        }
    )


class _Envelope:
    """A decoded outer Hash whose fields are read with their expected types."""

    def __init__(self, data: bytes, psk: str) -> None:
        try:
            outer = loads(data)
        except MarshalError as exc:
            raise PskRejected(RejectReason.MALFORMED, f"envelope: {exc}") from None
        if not isinstance(outer, dict):
            raise PskRejected(RejectReason.MALFORMED, "envelope is not a Hash")
        self.outer = outer
        body = self.get("body", bytes)
        if not hmac.compare_digest(digest(body, psk).encode(), self.text("hash").encode()):
            raise PskRejected(RejectReason.BAD_DIGEST, "digest does not match the body and psk")
        # only a body that carries the right digest is read at all
        try:
            self.body = loads(body)
        except MarshalError as exc:
            raise PskRejected(RejectReason.MALFORMED, f"body: {exc}") from None

    def get(self, name: str, kind: type[_T]) -> _T:
        value = self.outer.get(Symbol(name))
        # bool is an int in Python, never a valid msgtime or ttl
        if not isinstance(value, kind) or isinstance(value, bool):
            raise PskRejected(RejectReason.MALFORMED, f"envelope :{name} is missing or invalid")
        return value

    def text(self, name: str) -> str:
        return str(self.get(name, str))

    def number(self, name: str) -> int:
        return self.get(name, int)


def check_age(msgtime: int, ttl: int, now: float | None) -> None:
    age = int(time.time() if now is None else now) - msgtime
    if age > ttl:
        raise PskRejected(RejectReason.EXPIRED, f"sent {age} s ago, ttl is {ttl} s")


def decode_reply(data: bytes, *, psk: str, ttl: int | None, now: float | None = None) -> Reply:
    """A node's reply, or :class:`PskRejected` (malformed, bad digest, older than ``ttl``;
    ``ttl=None``: the caller checks the age once it knows which request it answers)."""
    envelope = _Envelope(data, psk)
    reply = Reply(
        requestid=envelope.text("requestid"),
        senderid=envelope.text("senderid"),
        senderagent=envelope.text("senderagent"),
        msgtime=envelope.number("msgtime"),
        body=envelope.body,
    )
    if ttl is not None:
        check_age(reply.msgtime, ttl, now)
    return reply


def decode_request(data: bytes, *, psk: str, now: float | None = None) -> Request:
    """A request as a node reads it; refused when older than its own ttl."""
    envelope = _Envelope(data, psk)
    request = Request(
        requestid=envelope.text("requestid"),
        senderid=envelope.text("senderid"),
        agent=envelope.text("agent"),
        collective=envelope.text("collective"),
        callerid=envelope.text("callerid"),
        filter=envelope.get("filter", dict),
        ttl=envelope.number("ttl"),
        msgtime=envelope.number("msgtime"),
        body=envelope.body,
    )
    check_age(request.msgtime, request.ttl, now)
    return request
