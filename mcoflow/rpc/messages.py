"""Request and reply messages: versioned JSON, validated before anything uses them."""

from __future__ import annotations

import math
import time
import uuid
from enum import IntEnum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from mcoflow.rpc.filters import FactFilter, Filter

__all__ = [
    "MAX_MESSAGE_BYTES",
    "POLICY_DENIED",
    "FactFilter",
    "Filter",
    "MessageError",
    "Reply",
    "Request",
    "StatusCode",
    "build_reply",
    "build_request",
    "encode_message",
    "encode_reply_batch",
    "is_policy_denial",
    "parse_replies",
    "parse_reply",
    "parse_request",
    "policy_denied_message",
]

MAX_MESSAGE_BYTES = 1024 * 1024
# A process serving many identities (simulated hosts) may answer with one signed
# batch of replies instead of one envelope per reply (see ``encode_reply_batch``).
MAX_BATCH_REPLIES = 10_000
_BATCH_HEAD = b'{"version":1,"replies":['
MAX_TTL = 7 * 24 * 3600.0

# Names end up in broker subjects and routing keys: no whitespace or wildcards.
Name = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.:@-]*$")
]
# An agent or action name is a Python-like identifier.
Word = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
]
Caller = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^\s]+$")]
MessageId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
]
Epoch = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class StatusCode(IntEnum):
    OK = 0
    ABORTED = 1
    UNKNOWN_ACTION = 2
    MISSING_DATA = 3
    INVALID_DATA = 4
    UNKNOWN_ERROR = 5


# A policy refusal keeps MCollective's statuscode 1 (aborted); its statusmsg starts with
# this marker, which tells it from an action that ran and failed.
POLICY_DENIED = "denied by policy:"


def policy_denied_message(caller: str, agent: str, action: str) -> str:
    return f"{POLICY_DENIED} {caller} is not authorized to call {agent}.{action}"


def is_policy_denial(statuscode: object, statusmsg: object) -> bool:
    return (
        statuscode == StatusCode.ABORTED
        and isinstance(statusmsg, str)
        and statusmsg.startswith(POLICY_DENIED)
    )


class MessageError(ValueError):
    """A message that cannot be used; ``reason`` says why, for logs and replies."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_M = TypeVar("_M", bound=BaseModel)

_CONFIG = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="strings")


class Request(BaseModel):
    model_config = _CONFIG

    version: Literal[1] = 1
    id: MessageId
    sender: Name
    caller: Caller
    collective: Name
    agent: Word
    action: Word
    data: dict[str, Any]
    filter: Filter = Filter()
    ttl: Annotated[float, Field(gt=0, le=MAX_TTL, allow_inf_nan=False)]
    time: Epoch
    reply_to: Name


class Reply(BaseModel):
    model_config = _CONFIG

    version: Literal[1] = 1
    request_id: MessageId
    sender: Name
    agent: Word
    action: Word
    statuscode: StatusCode
    statusmsg: Annotated[str, StringConstraints(max_length=65536)]
    data: dict[str, Any]
    time: Epoch


class ReplyBatch(BaseModel):
    """Several replies in one message: what one process serving many identities
    sends instead of one signed envelope per reply. Every reply in it is a full
    ``Reply``; the batch adds nothing but the list."""

    model_config = _CONFIG

    version: Literal[1] = 1
    replies: Annotated[list[Reply], Field(min_length=1, max_length=MAX_BATCH_REPLIES)]


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:5]:
        where = ".".join(str(item) for item in error["loc"]) or "message"
        parts.append(f"{where}: {error['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _parse(kind: type[_M], body: bytes) -> _M:
    if not isinstance(body, bytes | bytearray | memoryview):
        raise MessageError(f"{kind.__name__.lower()} must be bytes")
    if len(body) > MAX_MESSAGE_BYTES:
        raise MessageError(
            f"{kind.__name__.lower()} of {len(body)} bytes exceeds {MAX_MESSAGE_BYTES} bytes"
        )
    try:
        return kind.model_validate_json(bytes(body))
    except ValidationError as exc:
        raise MessageError(f"invalid {kind.__name__.lower()}: {_describe(exc)}") from None
    except (ValueError, RecursionError, UnicodeError) as exc:
        raise MessageError(f"invalid {kind.__name__.lower()}: {exc}") from None


def parse_request(body: bytes) -> Request:
    """Parse and validate a request; raises only MessageError."""
    return _parse(Request, body)


def parse_reply(body: bytes) -> Reply:
    """Parse and validate a reply; raises only MessageError."""
    return _parse(Reply, body)


def parse_replies(body: bytes) -> list[Reply]:
    """Parse a reply or a batch of replies (``encode_reply_batch``); raises only MessageError."""
    if isinstance(body, bytes | bytearray | memoryview) and _BATCH_HEAD in bytes(body[:64]):
        return list(_parse(ReplyBatch, body).replies)
    return [_parse(Reply, body)]


def encode_reply_batch(bodies: list[bytes]) -> bytes:
    """One batch message from replies already encoded with ``encode_message``.

    The caller keeps the total under MAX_MESSAGE_BYTES (``batch_size_of`` tells the size).
    """
    if not bodies:
        raise MessageError("a reply batch needs at least one reply")
    if len(bodies) > MAX_BATCH_REPLIES:
        raise MessageError(f"a reply batch holds at most {MAX_BATCH_REPLIES} replies")
    body = _BATCH_HEAD + b",".join(bodies) + b"]}"
    if len(body) > MAX_MESSAGE_BYTES:
        raise MessageError(f"reply batch of {len(body)} bytes exceeds {MAX_MESSAGE_BYTES} bytes")
    return body


def batch_size_of(sizes_total: int, count: int) -> int:
    """Encoded size of a batch of ``count`` replies whose bodies add up to ``sizes_total``."""
    return len(_BATCH_HEAD) + sizes_total + max(count - 1, 0) + 2


def encode_message(message: Request | Reply) -> bytes:
    """JSON bytes of a message, refusing what a receiver would refuse for size."""
    try:
        body = message.model_dump_json().encode()
    except (ValueError, TypeError) as exc:  # e.g. data holding a non-JSON object
        raise MessageError(f"cannot encode {type(message).__name__.lower()}: {exc}") from None
    if len(body) > MAX_MESSAGE_BYTES:
        raise MessageError(f"message of {len(body)} bytes exceeds {MAX_MESSAGE_BYTES} bytes")
    return body


def new_id() -> str:
    return uuid.uuid4().hex


def build_request(
    *,
    sender: str,
    caller: str,
    collective: str,
    agent: str,
    action: str,
    data: dict[str, Any] | None = None,
    filter: Filter | None = None,
    ttl: float = 60.0,
    reply_to: str,
    id: str | None = None,
    now: float | None = None,
) -> Request:
    """A validated request; raises MessageError with the reason if a field is bad."""
    if ttl is not None and not math.isfinite(ttl):
        raise MessageError("ttl must be finite")
    try:
        return Request(
            id=id or new_id(),
            sender=sender,
            caller=caller,
            collective=collective,
            agent=agent,
            action=action,
            data=data or {},
            filter=filter or Filter(),
            ttl=ttl,
            time=time.time() if now is None else now,
            reply_to=reply_to,
        )
    except ValidationError as exc:
        raise MessageError(f"invalid request: {_describe(exc)}") from None


def build_reply(
    request: Request,
    *,
    sender: str,
    statuscode: StatusCode,
    statusmsg: str = "OK",
    data: dict[str, Any] | None = None,
    now: float | None = None,
) -> Reply:
    """The reply to ``request`` from host ``sender``."""
    try:
        return Reply(
            request_id=request.id,
            sender=sender,
            agent=request.agent,
            action=request.action,
            statuscode=statuscode,
            statusmsg=statusmsg[:65536],
            data=data or {},
            time=time.time() if now is None else now,
        )
    except ValidationError as exc:
        raise MessageError(f"invalid reply: {_describe(exc)}") from None
