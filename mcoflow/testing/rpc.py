"""Calling agents directly, without the engine: for an agent author's tests, for
scripts against a running fleet, and for the RPC benchmark.

``DirectClient`` is the orchestrator's ``RpcClient`` that also waits for the answers:
``call`` runs an agent action on named or discovered hosts, in batches, and
``discover`` lists the hosts answering ``rpcutil.ping``. Every call has a deadline:
hosts that have not answered by then are reported with the ``NO_RESPONSE`` marker, so
a call always returns. Replies that belong to no call in progress go to ``on_reply``
as with ``RpcClient``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict

from mcoflow.job_request import JobInputError, host_count
from mcoflow.rpc.client import RpcClient
from mcoflow.rpc.filters import Filter
from mcoflow.rpc.messages import MessageError, Reply, Request, StatusCode
from mcoflow.rpc.security import Signer
from mcoflow.rpc.transport import Transport, TransportError

__all__ = [
    "NO_RESPONSE",
    "BatchSize",
    "DirectClient",
    "HostResult",
    "NoResponse",
    "RpcResult",
    "RpcStats",
    "batches",
]

log = logging.getLogger(__name__)

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
    """Split ``targets`` into batches of ``n`` hosts or ``"n%"`` of them (a ValueError
    names a bad size)."""
    items = list(targets)
    if batch_size is None or not items:
        return [items] if items else []
    size = host_count(str(batch_size), len(items), "batch size")
    if size is None:
        raise JobInputError("batch size", "empty")
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


class DirectClient(RpcClient):
    def __init__(
        self, transport: Transport, signer: Signer, *, direct_threshold: int = 10, **options: Any
    ) -> None:
        """``options`` as for ``RpcClient``. Hosts are addressed directly up to
        ``direct_threshold`` of them; above that a discovered set is reached with one
        broadcast carrying the filter (as MCollective does)."""
        super().__init__(transport, signer, **options)
        self.direct_threshold = direct_threshold
        self._pending: dict[str, _Pending] = {}
        self._stop_resending: Callable[[], None] | None = None

    async def start(self) -> None:
        await super().start()
        if self._stop_resending is None:
            self._stop_resending = self.transport.on_reconnect(self._resend_pending)

    async def close(self) -> None:
        if self._stop_resending is not None:
            self._stop_resending()
            self._stop_resending = None
        await super().close()

    async def __aenter__(self) -> DirectClient:
        await self.start()
        return self

    def _take(self, reply: Reply) -> bool:
        pending = self._pending.get(reply.request_id)
        if pending is None:
            return False
        pending.add(reply)
        return True

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
                pending.envelope = self.wire.seal(request)
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
