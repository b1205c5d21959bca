"""MCollective's side of the ``stomp+mcollective://`` transport: a restricted Ruby Marshal,
the psk security scheme, the filter Hash, STOMP 1.2 framing and an asyncio STOMP
connection (``connection``), and the wire that turns mcoflow's requests and replies into
MCollective's (``wire``). The transport itself is ``mcoflow.rpc.transports.mcollective``."""

from __future__ import annotations

from mcoflow.rpc.mcollective.filters import FILTER_KEYS, empty_filter, to_mcollective
from mcoflow.rpc.mcollective.marshal import MarshalError, RubyKey, RubyValue, Symbol, dumps, loads
from mcoflow.rpc.mcollective.psk import (
    DEFAULT_TTL,
    PskRejected,
    RejectReason,
    Reply,
    Request,
    decode_reply,
    decode_request,
    default_callerid,
    digest,
    encode_reply,
    encode_request,
    new_request_id,
    rpc_body,
)
from mcoflow.rpc.mcollective.stomp import Frame, FrameReader, StompError, encode_frame

__all__ = [
    "DEFAULT_TTL",
    "FILTER_KEYS",
    "Frame",
    "FrameReader",
    "StompError",
    "MarshalError",
    "PskRejected",
    "RejectReason",
    "Reply",
    "Request",
    "RubyKey",
    "RubyValue",
    "Symbol",
    "decode_reply",
    "decode_request",
    "default_callerid",
    "digest",
    "dumps",
    "empty_filter",
    "encode_frame",
    "encode_reply",
    "encode_request",
    "loads",
    "new_request_id",
    "rpc_body",
    "to_mcollective",
]
