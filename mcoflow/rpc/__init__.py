"""Remote procedure calls: messages, filters, signing, transports and the client."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mcoflow.rpc.client import ReplyCallback, RpcClient
    from mcoflow.rpc.envelope import open_replies, open_reply, open_request, seal
    from mcoflow.rpc.filters import FactFilter, Filter
    from mcoflow.rpc.messages import (
        MessageError,
        Reply,
        Request,
        StatusCode,
        build_reply,
        build_request,
    )
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
    "client": "ReplyCallback RpcClient",
    "envelope": "open_replies open_reply open_request seal",
    "filters": "FactFilter Filter",
    "messages": "MessageError Reply Request StatusCode build_reply build_request",
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
    # calling hosts: whom to ask, what, and the answers
    "Filter",
    "FactFilter",
    "build_request",
    "Request",
    "Reply",
    "StatusCode",
    "MessageError",
    "RpcClient",
    "ReplyCallback",
    # transports: connecting to a broker, or implementing one
    "transport_from_url",
    "Transport",
    "TransportError",
    "MemoryBroker",
    "MemoryTransport",
    "Subscription",
    "Handler",
    # signing and checking messages: keys, envelopes, the host's replay guard
    "Signer",
    "Verifier",
    "SecurityError",
    "generate_keypair",
    "load_private_key",
    "load_public_key",
    "seal",
    "open_request",
    "open_reply",
    "open_replies",
    "build_reply",
    "ReplayGuard",
]
