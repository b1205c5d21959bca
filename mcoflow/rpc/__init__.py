"""Remote procedure calls: messages, filters, signing, transports and the client."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mcoflow.rpc.client import (
        NO_RESPONSE,
        HostResult,
        NoResponse,
        ReplyCallback,
        RpcClient,
        RpcResult,
        RpcStats,
        batches,
    )
    from mcoflow.rpc.envelope import open_replies, open_reply, open_request, seal
    from mcoflow.rpc.filters import FactFilter, Filter
    from mcoflow.rpc.messages import (
        MAX_MESSAGE_BYTES,
        MessageError,
        Reply,
        Request,
        StatusCode,
        build_reply,
        build_request,
        encode_message,
        encode_reply_batch,
        parse_replies,
        parse_reply,
        parse_request,
    )
    from mcoflow.rpc.responder import ActionFunc, HostProfile, Outcome, Refusal, Responder
    from mcoflow.rpc.security import (
        ReplayGuard,
        SecurityError,
        Signer,
        Verifier,
        generate_keypair,
        load_private_key,
        load_public_key,
    )
    from mcoflow.rpc.transport import Handler, Subscription, Transport, TransportError
    from mcoflow.rpc.transports import MemoryBroker, MemoryTransport, transport_from_url

# Loaded on first use: a process that needs only the messages or the filters (the
# command line, the engine's actions) does not load the client, the signing and the
# transports.
_NAMES_BY_MODULE = {
    "client": "NO_RESPONSE HostResult NoResponse ReplyCallback "
    "RpcClient RpcResult RpcStats batches",
    "envelope": "open_replies open_reply open_request seal",
    "filters": "FactFilter Filter",
    "messages": "MAX_MESSAGE_BYTES MessageError Reply Request StatusCode build_reply "
    "build_request encode_message encode_reply_batch parse_replies parse_reply parse_request",
    "responder": "ActionFunc HostProfile Outcome Refusal Responder",
    "security": "ReplayGuard SecurityError Signer "
    "Verifier generate_keypair load_private_key load_public_key",
    "transport": "Handler Subscription Transport TransportError",
    "transports": "MemoryBroker MemoryTransport transport_from_url",
}
_MODULE_OF = {
    name: f"mcoflow.rpc.{module}"
    for module, names in _NAMES_BY_MODULE.items()
    for name in names.split()
}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "MAX_MESSAGE_BYTES",
    "NO_RESPONSE",
    "ActionFunc",
    "FactFilter",
    "Filter",
    "Handler",
    "HostProfile",
    "HostResult",
    "MemoryBroker",
    "MemoryTransport",
    "MessageError",
    "NoResponse",
    "Outcome",
    "Refusal",
    "ReplayGuard",
    "Reply",
    "ReplyCallback",
    "Request",
    "Responder",
    "RpcClient",
    "RpcResult",
    "RpcStats",
    "SecurityError",
    "Signer",
    "StatusCode",
    "Subscription",
    "Transport",
    "TransportError",
    "Verifier",
    "batches",
    "build_reply",
    "build_request",
    "encode_message",
    "encode_reply_batch",
    "generate_keypair",
    "load_private_key",
    "load_public_key",
    "open_replies",
    "open_reply",
    "open_request",
    "parse_replies",
    "parse_reply",
    "parse_request",
    "seal",
    "transport_from_url",
]
