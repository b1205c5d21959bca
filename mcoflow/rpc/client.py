"""The calling side: direct and broadcast calls, discovery, batching and deadlines.

Every call has a deadline: hosts that have not answered by then are reported with
the ``NO_RESPONSE`` marker, so a call always returns. For callers that route replies
themselves (the engine's reply router), ``send`` publishes a request without
waiting, and replies that belong to no call in progress go to ``on_reply``; its
exceptions propagate to the transport, which then redelivers the reply.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict

from mcoflow.rpc.envelope import open_replies, seal
from mcoflow.rpc.filters import Filter
from mcoflow.rpc.messages import MessageError, Reply, Request, StatusCode, build_request
from mcoflow.rpc.security import SecurityError, Signer, Verifier
from mcoflow.rpc.transport import Subscription, Transport, TransportError

__all__ = [
    "NO_RESPONSE",
    "BatchSize",
    "HostResult",
    "NoResponse",
    "ReplyCallback",
    "RpcClient",
    "RpcResult",
    "RpcStats",
    "batches",
]

log = logging.getLogger(__name__)

ReplyCallback = Callable[[Reply], Awaitable[None]]
BatchSize = int | str | None


class NoResponse(Enum):
    NO_RESPONSE = "no_response"


NO_RESPONSE = NoResponse.NO_RESPONSE

_FROZEN = ConfigDict(frozen=True)


class HostResult(BaseModel):
    model_config = _FROZEN

    identity: str
    statuscode: StatusCode | NoResponse
    statusmsg: str
    data: dict[str, Any] = {}
    elapsed: float | None = None  # seconds from sending to the reply
    request_id: str

    @property
    def responded(self) -> bool:
        return self.statuscode is not NO_RESPONSE

    @property
    def ok(self) -> bool:
        return self.statuscode is StatusCode.OK


class RpcStats(BaseModel):
    model_config = _FROZEN

    discovered: tuple[str, ...]
    responded: tuple[str, ...]
    no_response: tuple[str, ...]
    unexpected: tuple[str, ...]
    started: float
    finished: float
    discovery_seconds: float = 0.0

    @property
    def elapsed(self) -> float:
        return self.finished - self.started


class RpcResult(BaseModel):
    model_config = _FROZEN

    agent: str
    action: str
    results: tuple[HostResult, ...]
    stats: RpcStats

    def result_for(self, identity: str) -> HostResult:
        for result in self.results:
            if result.identity == identity:
                return result
        raise KeyError(identity)

    @property
    def ok(self) -> bool:
        return all(result.ok for result in self.results)


def batches(targets: Sequence[str], batch_size: BatchSize) -> list[list[str]]:
    """Split ``targets`` into batches of ``n`` hosts or ``"n%"`` of them."""
    items = list(targets)
    if batch_size is None or not items:
        return [items] if items else []
    if isinstance(batch_size, str):
        text = batch_size.strip()
        if text.endswith("%"):
            percent = float(text[:-1])
            if not 0 < percent <= 100:
                raise ValueError(f"batch size {batch_size!r}: percentage must be in (0, 100]")
            size = max(1, math.ceil(len(items) * percent / 100))
        else:
            size = int(text)
    else:
        size = batch_size
    if size < 1:
        raise ValueError(f"batch size must be at least 1, not {batch_size!r}")
    return [items[i : i + size] for i in range(0, len(items), size)]


class _Pending:
    """Replies collected for one request in flight, and what to publish again if the
    broker lost the request."""

    def __init__(
        self,
        request: Request,
        identities: Sequence[str] | None,
        expected: frozenset[str] | None,
        limit: int | None,
    ) -> None:
        self.request = request
        self.envelope: bytes | None = None  # once signed
        self.identities = identities
        self.expected = expected
        self.limit = limit
        self.sent_at = time.monotonic()
        self.replies: dict[str, tuple[Reply, float]] = {}
        self.done = asyncio.Event()
        self._missing = set(expected) if expected is not None else set()

    def add(self, reply: Reply) -> None:
        if reply.sender in self.replies:  # a redelivered duplicate
            return
        self.replies[reply.sender] = (reply, time.monotonic() - self.sent_at)
        self._missing.discard(reply.sender)
        if self.expected is not None and not self._missing:
            self.done.set()
        if self.limit is not None and len(self.replies) >= self.limit:
            self.done.set()


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
        direct_threshold: int = 10,
    ) -> None:
        """``verifier`` holds the hosts' public keys; None accepts unverified replies
        and is meant only for the in-process embedded setup. Hosts are addressed
        directly up to ``direct_threshold`` of them; above that a discovered set is
        reached with one broadcast carrying the filter (as MCollective does)."""
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
        self.direct_threshold = direct_threshold
        self.rejected_replies = 0
        self._pending: dict[str, _Pending] = {}
        self._subscription: Subscription | None = None
        self._stop_resending: Callable[[], None] | None = None
        self._start_lock = asyncio.Lock()

    async def start(self) -> None:
        async with self._start_lock:
            if self._subscription is None:
                self._subscription = await self.transport.subscribe_replies(
                    reply_to=self.reply_to,
                    handler=self._on_envelope,
                    transient=self.transient_replies,
                )
                self._stop_resending = self.transport.on_reconnect(self._resend_pending)

    async def close(self) -> None:
        if self._stop_resending is not None:
            self._stop_resending()
            self._stop_resending = None
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            await subscription.cancel()

    async def __aenter__(self) -> RpcClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _on_envelope(self, envelope: bytes) -> None:
        try:
            # One reply, or a batch of them from a process answering for many hosts.
            replies = open_replies(envelope, self.verifier)
        except (SecurityError, MessageError) as exc:
            self.rejected_replies += 1
            log.warning("reply refused: %s", exc)
            return
        handed_over: list[Awaitable[None]] = []
        for reply in replies:
            pending = self._pending.get(reply.request_id)
            if pending is not None:
                pending.add(reply)
            elif self.on_reply is not None:
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

    # -- low level --------------------------------------------------------------------

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
        (the engine's outbox does); calls in progress here are published again by the
        client itself."""
        await self._publish(request, seal(request, self.signer), identities)

    async def _publish(
        self, request: Request, envelope: bytes, identities: Sequence[str] | None
    ) -> None:
        await self.transport.publish_request(
            envelope,
            collective=request.collective,
            agent=request.agent,
            identities=identities,
            ttl=request.ttl,
        )

    async def _resend_pending(self) -> None:
        """After a reconnection: publish again the requests of calls in progress, to the
        hosts that have not answered (a broadcast goes out again whole); the hosts
        answer a request they already ran from their journal."""
        resent = 0
        for pending in list(self._pending.values()):
            if pending.envelope is None or pending.done.is_set():
                continue
            targets = pending.identities
            if targets is not None:
                targets = [i for i in targets if i not in pending.replies]
                if not targets:
                    continue
            try:
                await self._publish(pending.request, pending.envelope, targets)
            except (TransportError, MessageError) as exc:
                log.warning("request %s not sent again: %s", pending.request.id, exc)
                continue
            resent += 1
        if resent:
            log.info("published %d requests in progress again after a reconnection", resent)

    async def _round(
        self,
        request: Request,
        identities: Sequence[str] | None,
        *,
        expected: frozenset[str] | None,
        wait: float,
        limit: int | None = None,
    ) -> tuple[_Pending, str | None]:
        """Send one request and collect replies until all expected came or the deadline."""
        await self.start()
        pending = _Pending(request, identities, expected, limit)
        self._pending[request.id] = pending
        failure = None
        try:
            async with asyncio.timeout(wait):
                pending.envelope = seal(request, self.signer)
                await self._publish(request, pending.envelope, identities)
                await pending.done.wait()
        except TimeoutError:
            pass
        except (TransportError, MessageError) as exc:
            failure = f"not sent: {exc}"
            log.warning("request %s %s", request.id, failure)
        finally:
            self._pending.pop(request.id, None)
        return pending, failure

    # -- high level -------------------------------------------------------------------

    async def discover(
        self,
        filter: Filter | None = None,
        *,
        timeout: float = 2.0,
        expect: int | None = None,
    ) -> list[str]:
        """Identities of the hosts answering ``rpcutil.ping`` within ``timeout``
        (or as soon as ``expect`` of them have)."""
        request = self.build("rpcutil", "ping", filter=filter, ttl=timeout)
        pending, _ = await self._round(request, None, expected=None, wait=timeout, limit=expect)
        return sorted(pending.replies)

    async def call(
        self,
        agent: str,
        action: str,
        data: dict[str, Any] | None = None,
        *,
        identities: Sequence[str] | None = None,
        filter: Filter | None = None,
        timeout: float = 10.0,
        batch_size: BatchSize = None,
        batch_sleep: float = 0.0,
        discovery_timeout: float = 2.0,
        expect: int | None = None,
        ttl: float | None = None,
    ) -> RpcResult:
        """Run ``agent.action`` on the named hosts, or on the hosts discovered with
        ``filter``; each batch waits at most ``timeout`` seconds.

        ``ttl`` (default: ``timeout``) is how long a host may still run the request;
        a longer ttl lets a host that is away run it when it returns, after this
        call has already reported it as "no response". ``expect`` ends discovery
        early once that many hosts have answered."""
        started = time.time()
        discovery_seconds = 0.0
        if identities is None:
            t0 = time.monotonic()
            targets = await self.discover(filter, timeout=discovery_timeout, expect=expect)
            discovery_seconds = time.monotonic() - t0
            broadcast = batch_size is None and len(targets) > self.direct_threshold
        else:
            targets = list(dict.fromkeys(identities))
            broadcast = False

        results: dict[str, HostResult] = {}
        unexpected: list[str] = []
        groups = [targets] if broadcast else batches(targets, batch_size)
        for number, group in enumerate(groups):
            if number and batch_sleep > 0:
                await asyncio.sleep(batch_sleep)
            request = self.build(agent, action, data, filter=filter, ttl=ttl or timeout)
            expected = frozenset(group)
            pending, failure = await self._round(
                request, None if broadcast else group, expected=expected, wait=timeout
            )
            for sender, (reply, elapsed) in pending.replies.items():
                if sender not in expected:
                    unexpected.append(sender)
                results[sender] = HostResult(
                    identity=sender,
                    statuscode=reply.statuscode,
                    statusmsg=reply.statusmsg,
                    data=reply.data,
                    elapsed=elapsed,
                    request_id=request.id,
                )
            for identity in group:
                if identity not in pending.replies:
                    results[identity] = HostResult(
                        identity=identity,
                        statuscode=NO_RESPONSE,
                        statusmsg=failure or f"no response within {timeout:g}s",
                        request_id=request.id,
                    )
        ordered = tuple(sorted(results.values(), key=lambda r: r.identity))
        stats = RpcStats(
            discovered=tuple(targets),
            responded=tuple(r.identity for r in ordered if r.responded),
            no_response=tuple(r.identity for r in ordered if not r.responded),
            unexpected=tuple(sorted(unexpected)),
            started=started,
            finished=time.time(),
            discovery_seconds=discovery_seconds,
        )
        return RpcResult(agent=agent, action=action, results=ordered, stats=stats)
