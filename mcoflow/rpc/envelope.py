"""Sealing messages into signed envelopes and opening them again (verify, then parse)."""

from __future__ import annotations

from mcoflow.rpc.messages import (
    MessageError,
    Reply,
    Request,
    encode_message,
    parse_replies,
    parse_reply,
    parse_request,
)
from mcoflow.rpc.security import SecurityError, Signer, Verifier, unpack_envelope

__all__ = ["open_replies", "open_reply", "open_request", "seal"]


def seal(message: Request | Reply, signer: Signer) -> bytes:
    """Encode ``message`` and sign it with ``signer``'s key."""
    return signer.sign(encode_message(message))


def open_request(envelope: bytes, verifier: Verifier) -> Request:
    """Verify the signature first, then parse; the signer must be the request's caller.

    Raises SecurityError (forged, unknown signer, impersonation) or MessageError.
    """
    signer, body = verifier.open(envelope)
    request = parse_request(body)
    # Authorization is by caller, so the caller must be who signed it.
    if request.caller != signer:
        raise SecurityError(
            f"request {request.id} claims caller {request.caller!r} but is signed by {signer!r}"
        )
    return request


def open_reply(envelope: bytes, verifier: Verifier | None, *, bind_sender: bool = False) -> Reply:
    """Verify and parse a reply.

    ``verifier=None`` skips the signature check: only for the in-process embedded
    setup where nothing crosses a network. ``bind_sender`` additionally requires that
    the key name equals the reply's host identity (when every host has its own key).
    """
    if verifier is None:
        signer, body, _ = unpack_envelope(bytes(envelope))
    else:
        signer, body = verifier.open(envelope)
    reply = parse_reply(body)
    if bind_sender and reply.sender != signer:
        raise SecurityError(f"reply claims sender {reply.sender!r} but is signed by {signer!r}")
    return reply


def open_replies(
    envelope: bytes, verifier: Verifier | None, *, bind_sender: bool = False
) -> list[Reply]:
    """Verify and parse an envelope holding one reply or a batch of replies.

    A batch (sent by a process answering for many identities) is verified once;
    ``bind_sender`` then requires every reply in it to name the signer."""
    if verifier is None:
        signer, body, _ = unpack_envelope(bytes(envelope))
    else:
        signer, body = verifier.open(envelope)
    replies = parse_replies(body)
    if bind_sender:
        for reply in replies:
            if reply.sender != signer:
                raise SecurityError(
                    f"reply claims sender {reply.sender!r} but is signed by {signer!r}"
                )
    return replies


# Re-exported so callers can catch both from one place.
RefusedMessage = (SecurityError, MessageError)
