"""Hosts for the rpc tests: receive, check, run, reply, with no agent daemon.

``Responder`` serves one or many host identities over a transport with a table of
async action functions (signature check before parsing, ttl/time window, replay
guard, filter, reply signing), so the transports and the client are tested against
hosts that answer as a test wants. The real host side is ``mcoflow.agent``'s daemon
and dispatcher. Answers to a repeated request id come from a small in-memory journal
of recent replies, so a redelivered request is answered again but never run twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict

from mcoflow.rpc.envelope import open_request, seal
from mcoflow.rpc.messages import MessageError, Request, StatusCode, build_reply
from mcoflow.rpc.security import ReplayGuard, SecurityError, Signer, Verifier
from mcoflow.rpc.transport import Subscription, Transport

__all__ = ["ActionFunc", "HostProfile", "Outcome", "Refusal", "Responder"]

log = logging.getLogger(__name__)


class HostProfile(BaseModel):
    """What a host answers to: its identity, facts and classes."""

    model_config = ConfigDict(frozen=True)

    identity: str
    facts: dict[str, Any] = {}
    classes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outcome:
    statuscode: StatusCode = StatusCode.OK
    statusmsg: str = "OK"
    data: dict[str, Any] = field(default_factory=dict)


ActionFunc = Callable[[Request, HostProfile], Awaitable[Outcome]]


class Refusal(Enum):
    SECURITY = "security"  # unsigned, forged, unknown signer, impersonated caller
    MALFORMED = "malformed"
    EXPIRED = "expired"  # outside the ttl/time window, or replayed while in progress
    DUPLICATE = "duplicate"  # seen before: answered from the journal, not run
    COLLECTIVE = "collective"


class Responder:
    JOURNAL_SIZE = 100_000

    def __init__(
        self,
        transport: Transport,
        *,
        collective: str,
        signer: Signer,
        verifier: Verifier,
        actions: Mapping[str, Mapping[str, ActionFunc]],
        hosts: Sequence[HostProfile],
        clock_skew: float = 60.0,
    ) -> None:
        self.transport = transport
        self.collective = collective
        self.signer = signer
        self.verifier = verifier
        self.actions = actions
        self.hosts = list(hosts)
        self.agents = sorted(actions)
        self.refusals: Counter[Refusal] = Counter()
        self.refusal_log: deque[tuple[str, Refusal, str]] = deque(maxlen=1000)
        self.handled = 0
        self._guards = {h.identity: ReplayGuard(clock_skew=clock_skew) for h in self.hosts}
        self._journal: OrderedDict[tuple[str, str], tuple[str, bytes]] = OrderedDict()
        self._opened: OrderedDict[bytes, Request] = OrderedDict()
        self._running: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._subscriptions: list[Subscription] = []

    async def start(self) -> None:
        for host in self.hosts:
            self._subscriptions.append(
                await self.transport.subscribe_host(
                    identity=host.identity,
                    collective=self.collective,
                    agents=self.agents,
                    handler=self._handler_for(host),
                )
            )

    async def stop(self) -> None:
        subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            await subscription.cancel()

    def _handler_for(self, host: HostProfile) -> Callable[[bytes], Awaitable[None]]:
        async def handle(envelope: bytes) -> None:
            await self.handle(host, envelope)

        return handle

    def _refuse(self, host: HostProfile, kind: Refusal, reason: str) -> None:
        self.refusals[kind] += 1
        self.refusal_log.append((host.identity, kind, reason))
        log.warning("%s refused a request (%s): %s", host.identity, kind.value, reason)

    async def handle(self, host: HostProfile, envelope: bytes) -> None:
        """Process one delivered envelope for ``host``; raises only if the reply
        could not be published (so the broker redelivers the request)."""
        try:
            request = self._open(envelope)
        except SecurityError as exc:
            self._refuse(host, Refusal.SECURITY, exc.reason)
            return
        except MessageError as exc:
            self._refuse(host, Refusal.MALFORMED, exc.reason)
            return
        if request.collective != self.collective:
            self._refuse(host, Refusal.COLLECTIVE, f"collective {request.collective!r}")
            return
        key = (host.identity, request.id)
        if await self._answer_again(host, key, request.id):
            return
        guard = self._guards[host.identity]
        try:
            guard.check(request.id, request.time, request.ttl)
        except SecurityError as exc:
            self._refuse(host, Refusal.EXPIRED, exc.reason)
            return
        if not request.filter.matches(
            identity=host.identity, facts=host.facts, classes=host.classes, agents=self.agents
        ):
            return
        running = asyncio.get_running_loop().create_future()
        self._running[key] = running
        try:
            sealed = await self._execute(request, host)
            # Recorded before publishing so a redelivery after a failed publish is
            # answered from here rather than run again.
            self._journal[key] = (request.reply_to, sealed)
            if len(self._journal) > self.JOURNAL_SIZE:
                self._journal.popitem(last=False)
        except BaseException:
            guard.forget(request.id)  # interrupted before it counted: may run again
            raise
        finally:
            del self._running[key]
            running.set_result(None)
        self.handled += 1
        await self.transport.publish_reply(sealed, reply_to=request.reply_to)

    def _open(self, envelope: bytes) -> Request:
        # A broadcast reaches every identity served here with the same bytes:
        # verify and parse it once. Requests are immutable, so sharing is safe.
        request = self._opened.get(envelope)
        if request is None:
            request = open_request(envelope, self.verifier)
            self._opened[envelope] = request
            if len(self._opened) > 64:
                self._opened.popitem(last=False)
        return request

    async def _answer_again(self, host: HostProfile, key: tuple[str, str], rid: str) -> bool:
        """Answer a request id seen before from the journal; True if it was one."""
        running = self._running.get(key)
        if running is not None:
            # A redelivery while the first delivery still runs (e.g. its reply waits
            # for the broker): answer once that one is done.
            await asyncio.shield(running)
        recorded = self._journal.get(key)
        if recorded is None:
            return False
        self._refuse(host, Refusal.DUPLICATE, f"request {rid} already answered; not run again")
        await self.transport.publish_reply(recorded[1], reply_to=recorded[0])
        return True

    async def _execute(self, request: Request, host: HostProfile) -> bytes:
        outcome = await self._run(request, host)
        reply = build_reply(
            request,
            sender=host.identity,
            statuscode=outcome.statuscode,
            statusmsg=outcome.statusmsg,
            data=outcome.data,
        )
        try:
            return seal(reply, self.signer)
        except MessageError as exc:
            return seal(
                build_reply(
                    request,
                    sender=host.identity,
                    statuscode=StatusCode.UNKNOWN_ERROR,
                    statusmsg=f"reply not sendable: {exc.reason}",
                ),
                self.signer,
            )

    async def _run(self, request: Request, host: HostProfile) -> Outcome:
        agent = self.actions.get(request.agent)
        action = agent.get(request.action) if agent is not None else None
        if action is None:
            return Outcome(
                StatusCode.UNKNOWN_ACTION, f"unknown action {request.agent}.{request.action}"
            )
        try:
            return await action(request, host)
        except Exception as exc:
            log.exception("%s.%s failed on %s", request.agent, request.action, host.identity)
            return Outcome(StatusCode.UNKNOWN_ERROR, f"{type(exc).__name__}: {exc}")


async def ping(request: Request, host: HostProfile) -> Outcome:
    """``rpcutil.ping``: what discovery broadcasts."""
    return Outcome(data={"pong": time.time()})
