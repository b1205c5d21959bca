"""The calling side the orchestrator uses: sign and publish requests, receive replies.

``send`` publishes a request without waiting; replies go to ``on_reply`` (the engine's
reply router), whose exceptions propagate to the transport, which then redelivers the
reply. A client that also waits for answers (``call``, ``discover``) is
``mcoflow.testing.rpc.DirectClient``, built on this one.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from mcoflow.rpc.filters import Filter
from mcoflow.rpc.messages import MessageError, Reply, Request, build_request
from mcoflow.rpc.security import SecurityError, Signer, Verifier
from mcoflow.rpc.transport import Subscription, Transport
from mcoflow.rpc.wire import SignedWire

__all__ = ["ReplyCallback", "RpcClient"]

log = logging.getLogger(__name__)

ReplyCallback = Callable[[Reply], Awaitable[None]]


class RpcClient:
    def __init__(
        self,
        transport: Transport,
        signer: Signer,
        *,
        collective: str,
        caller: str | None = None,
        reply_to: str,
        identity: str | None = None,
        verifier: Verifier | None = None,
        on_reply: ReplyCallback | None = None,
        transient_replies: bool = False,
        refresh_trust: Callable[[], bool] | None = None,
    ) -> None:
        """``verifier`` holds the hosts' public keys; None accepts unverified replies
        and is meant only for the in-process embedded setup. ``refresh_trust`` is called
        when no trusted key verifies a reply; True (the keys changed): check it again.
        The transport may bring a wire of its own (another system's protocol), which then
        seals the requests and opens the replies instead."""
        caller = caller or signer.name
        if caller != signer.name:
            raise ValueError(f"caller {caller!r} must be the signing key's name {signer.name!r}")
        self.transport = transport
        self.signer = signer
        self.collective = collective
        self.caller = caller
        self.reply_to = reply_to
        self.identity = identity or socket.gethostname()
        self.verifier = verifier
        self.on_reply = on_reply
        self.transient_replies = transient_replies
        self.rejected_replies = 0
        self.wire = transport.client_wire(SignedWire(signer, verifier, refresh_trust))
        self._subscription: Subscription | None = None
        self._start_lock = asyncio.Lock()

    async def start(self) -> None:
        async with self._start_lock:
            if self._subscription is None:
                self._subscription = await self.transport.subscribe_replies(
                    reply_to=self.reply_to,
                    handler=self._on_envelope,
                    transient=self.transient_replies,
                )

    async def close(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            await subscription.cancel()

    async def __aenter__(self) -> RpcClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _take(self, reply: Reply) -> bool:
        """True if a call waiting in this process took ``reply`` (none here)."""
        return False

    async def _on_envelope(self, envelope: bytes) -> None:
        try:
            # One reply, or a batch of them from a process answering for many hosts.
            replies = self.wire.open(envelope)
        except (SecurityError, MessageError) as exc:
            self.rejected_replies += 1
            log.warning("reply refused: %s", exc)
            return
        handed_over: list[Awaitable[None]] = []
        for reply in replies:
            if self._take(reply):
                continue
            if self.on_reply is not None:
                handed_over.append(self.on_reply(reply))
            else:
                log.debug(
                    "late or unknown reply %s from %s dropped", reply.request_id, reply.sender
                )
        # Together, so a batch of replies can share one commit downstream. If one raises,
        # the whole envelope is redelivered; the replies already handed over come again
        # and are deduplicated by (request id, sender).
        results = await asyncio.gather(*handed_over, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def build(
        self,
        agent: str,
        action: str,
        data: dict[str, Any] | None = None,
        *,
        filter: Filter | None = None,
        ttl: float = 60.0,
        id: str | None = None,
    ) -> Request:
        return build_request(
            sender=self.identity,
            caller=self.caller,
            collective=self.collective,
            agent=agent,
            action=action,
            data=data,
            filter=filter,
            ttl=ttl,
            reply_to=self.reply_to,
            id=id,
        )

    async def send(self, request: Request, identities: Sequence[str] | None = None) -> None:
        """Sign and publish ``request`` (broadcast when ``identities`` is None).

        Fire and forget: if the broker loses it (a restart), the caller publishes again
        (the engine's outbox does)."""
        await self._publish(request, self.wire.seal(request), identities)

    async def _publish(
        self, request: Request, envelope: bytes, identities: Sequence[str] | None
    ) -> None:
        await self.transport.publish_request(
            envelope,
            collective=request.collective,
            agent=self.wire.route_agent(request),
            identities=identities,
            ttl=request.ttl,
        )
