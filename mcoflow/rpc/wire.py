"""How a client's requests are sealed and its replies opened on a transport's bus.

mcoflow's own bus carries JSON messages signed with Ed25519 (:class:`SignedWire`). A
transport that speaks another system's protocol to that system's own agents (MCollective's
psk-signed Ruby Marshal) brings its own wire through ``Transport.client_wire``; the client,
the engine and everything above them go on seeing mcoflow's ``Request`` and ``Reply``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from mcoflow.rpc.envelope import open_replies, seal
from mcoflow.rpc.messages import Reply, Request
from mcoflow.rpc.security import Signer, UntrustedKey, Verifier

__all__ = ["SignedWire", "Wire"]


class Wire(ABC):
    @abstractmethod
    def seal(self, request: Request) -> bytes:
        """The bytes to publish for ``request``."""

    @abstractmethod
    def open(self, envelope: bytes) -> list[Reply]:
        """The replies an envelope holds; raises ``SecurityError`` or ``MessageError``
        (the client counts and drops such an envelope)."""

    def route_agent(self, request: Request) -> str:
        """The agent whose hosts a broadcast of ``request`` goes to."""
        return request.agent


class SignedWire(Wire):
    """mcoflow's own messages: requests signed by the caller's key, replies verified
    against the hosts' keys. ``verifier=None`` accepts unverified replies (only for the
    in-process embedded setup); ``refresh_trust`` is called when no trusted key verifies a
    reply, and True (the keys changed) means: check it again."""

    def __init__(
        self,
        signer: Signer,
        verifier: Verifier | None,
        refresh_trust: Callable[[], bool] | None = None,
    ) -> None:
        self.signer = signer
        self.verifier = verifier
        self._refresh_trust = refresh_trust

    def seal(self, request: Request) -> bytes:
        return seal(request, self.signer)

    def open(self, envelope: bytes) -> list[Reply]:
        try:
            return open_replies(envelope, self.verifier)
        except UntrustedKey:
            # a host whose key was added to the trusted ones since the start: look again
            if self._refresh_trust is None or not self._refresh_trust():
                raise
            return open_replies(envelope, self.verifier)
