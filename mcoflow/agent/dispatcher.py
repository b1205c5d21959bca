"""From a received envelope to a signed reply, with every check before anything runs.

Order, per message: signature (and caller == signer) → parse → per host: collective →
ttl/time window → filter → replay guard / journal → authorization → agent and action lookup →
input validation → journal "running" → run → journal "done" → signed reply.

Refusals for security reasons (forged, unknown signer, malformed, expired, future,
replayed) get no reply: nothing in them can be trusted, not even reply_to. Refusals
of a genuine request (not authorized, unknown action, bad input) get a reply with the
status code, so the caller does not wait for its deadline. Everything refused is
logged with the reason, caller and request id, and nothing is run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from mcoflow.agent.interface import InputError, MissingInput
from mcoflow.agent.journal import EntryState, Journal, JournalEntry
from mcoflow.agent.plugins.base import ActionFailed, Agent, AgentAction, HostContext
from mcoflow.agent.policy import Policy
from mcoflow.agent.providers.base import ProviderError
from mcoflow.agent.refusals import RefusalLog
from mcoflow.agent.replies import Publish, ReplyBatcher
from mcoflow.rpc.envelope import open_request
from mcoflow.rpc.messages import (
    MessageError,
    Request,
    StatusCode,
    build_reply,
    encode_message,
    policy_denied_message,
)
from mcoflow.rpc.security import (
    ReplayGuard,
    SecurityError,
    Signer,
    UntrustedKey,
    Verifier,
    unpack_envelope,
)

log = logging.getLogger("mcoflow.agent")


class ShuttingDown(RuntimeError):
    """A message arrived while the agent drains: it is not taken."""


Clock = Callable[[], float]


class Dispatcher:
    def __init__(
        self,
        *,
        verifier: Verifier,
        signer: Signer,
        agents: Mapping[str, Agent],
        publish: Publish,
        policy: Policy | None = None,
        journal: Journal | None = None,
        replay_guard: ReplayGuard | None = None,
        clock: Clock = time.time,
        reply_batch: int = 1,
        refresh_trust: Callable[[], bool] | None = None,
    ) -> None:
        """``reply_batch`` > 1 lets replies to the same destination that are ready
        together share one signed envelope (see ReplyBatcher); 1 sends each alone.
        ``refresh_trust`` is called when no trusted key verifies a message; True (the
        trusted keys changed) has the message checked once more."""
        self.verifier = verifier
        self._refresh_trust = refresh_trust
        self.signer = signer
        self.agents = dict(agents)
        self.policy = policy if policy is not None else Policy.allow_all()
        self.journal = journal if journal is not None else Journal()
        self.replay_guard = replay_guard if replay_guard is not None else ReplayGuard()
        self._publish = publish
        self._clock = clock
        # a flood of refused messages: each counted, a reason's repeats summed up in one line
        self._refusals = RefusalLog(log)
        self._in_flight: set[tuple[str, str]] = set()
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self.batcher = (
            ReplyBatcher(signer, publish, max_replies=reply_batch) if reply_batch > 1 else None
        )

    # -- entry points -------------------------------------------------------------

    async def handle(self, host: HostContext, envelope: bytes) -> None:
        """A message from ``host``'s own queue (a direct request, or a broadcast)."""
        with self._tracked():
            request = self._open(envelope)
            if request is not None:
                await self.serve(host, request)

    async def handle_fanout(self, hosts: Sequence[HostContext], envelope: bytes) -> None:
        """One broadcast received once for all ``hosts`` this process serves."""
        with self._tracked():
            request = self._open(envelope)
            if request is not None:
                await asyncio.gather(*(self.serve(host, request) for host in hosts))

    async def drain(self, grace: float) -> bool:
        """Take no new messages and wait up to ``grace`` s for running ones; True if idle."""
        self._closing = True
        try:
            async with asyncio.timeout(grace):
                await self._idle.wait()
        except TimeoutError:
            log.warning(
                "%d requests still running after %.0f s; stopping anyway", self._active, grace
            )
            return False
        return True

    @contextlib.contextmanager
    def _tracked(self) -> Iterator[None]:
        if self._closing:
            # Raising gives the message back to the broker for redelivery after the restart.
            raise ShuttingDown("the agent is shutting down")
        self._active += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._active -= 1
            if self._active == 0:
                self._idle.set()

    # -- the checks -----------------------------------------------------------------

    def _open(self, envelope: bytes) -> Request | None:
        try:
            try:
                return open_request(envelope, self.verifier)
            except UntrustedKey:
                # signed with a key added since the last reload, perhaps: look again
                if self._refresh_trust is None or not self._refresh_trust():
                    raise
                return open_request(envelope, self.verifier)
        except (SecurityError, MessageError) as exc:
            self._refusals.refused(
                exc.reason,
                "refused message claiming signer %s: %s; nothing was run",
                _claimed_signer(envelope),
                exc.reason,
            )
            return None

    async def serve(self, host: HostContext, request: Request) -> None:
        """Answer ``request`` on ``host`` (publishing the reply), or refuse it."""
        if request.collective != host.collective:
            self._refuse(host, request, f"addressed to collective {request.collective!r}")
            return
        now = self._clock()
        skew = self.replay_guard.clock_skew
        if request.time > now + skew or now > request.time + request.ttl:
            self._refuse(host, request, "outside its ttl/time window")
            return
        if not request.filter.matches(
            identity=host.identity, facts=host.facts, classes=host.classes, agents=host.agents
        ):
            # Silent, as MCollective: a host's own queue carries both its direct requests
            # and the broadcasts, and discovery counts every reply.
            log.debug("request %s: filter does not match %s", request.id, host.identity)
            return
        agent = self.agents.get(request.agent)
        action = agent.action(request.action) if agent is not None else None
        key = (host.identity, request.id)
        try:
            self.replay_guard.check(f"{host.identity}/{request.id}", request.time, request.ttl, now)
        except SecurityError as exc:
            await self._repeat(host, request, action, exc.reason)
            return
        decision = self.policy.check(
            caller=request.caller, agent=request.agent, action=request.action
        )
        if not decision.allowed:
            self._refuse(host, request, f"not authorized ({decision.reason})")
            await self._reply(
                host,
                request,
                StatusCode.ABORTED,
                policy_denied_message(request.caller, request.agent, request.action),
            )
            return
        if agent is None or action is None:
            what = "agent" if agent is None else "action"
            self._refuse(host, request, f"unknown {what}")
            await self._reply(
                host,
                request,
                StatusCode.UNKNOWN_ACTION,
                f"unknown {what} {request.agent}.{request.action} on {host.identity}",
            )
            return
        try:
            inputs = action.interface.validate_inputs(request.data)
        except InputError as exc:
            code = (
                StatusCode.MISSING_DATA
                if isinstance(exc, MissingInput)
                else StatusCode.INVALID_DATA
            )
            self._refuse(host, request, f"input {exc}")
            await self._reply(host, request, code, f"input {exc.field} {exc.reason}")
            return
        if not action.read_only:
            earlier = self.journal.begin(
                host.identity, request.id, request.agent, request.action, now
            )
            if earlier is not None and not self._rerun(host, request, action, earlier):
                await self._repeat(host, request, action, "request id already in the journal")
                return
        self._in_flight.add(key)
        try:
            code, message, data = await self._run(host, request, action, inputs)
            if not action.read_only:
                self.journal.finish(host.identity, request.id, code, message, data)
        finally:
            self._in_flight.discard(key)
        await self._reply(host, request, code, message, data)

    def _rerun(
        self, host: HostContext, request: Request, action: AgentAction, earlier: JournalEntry
    ) -> bool:
        """An idempotent request the agent stopped in the middle of (found *running* in the
        journal, not running here) is run once more; True if it may run now."""
        if (
            earlier.state is not EntryState.RUNNING
            or not action.interface.idempotent
            or (host.identity, request.id) in self._in_flight
            or not self.journal.rerun(host.identity, request.id)
        ):
            return False
        log.warning(
            "request %s (%s.%s) on %s was interrupted by an agent stop; it is idempotent:"
            " running it again",
            request.id,
            request.agent,
            request.action,
            host.identity,
        )
        return True

    async def _repeat(
        self, host: HostContext, request: Request, action: AgentAction | None, reason: str
    ) -> None:
        """A request id seen before on this host: answer from the journal, never run again."""
        entry = self.journal.lookup(host.identity, request.id) if action else None
        if entry is None:
            self._refuse(host, request, reason)
            return
        if entry.state is EntryState.DONE and entry.statuscode is not None:
            log.info(
                "request %s from %s on %s already handled: answering from the journal",
                request.id,
                request.caller,
                host.identity,
            )
            await self._reply(
                host, request, StatusCode(entry.statuscode), entry.statusmsg, entry.data
            )
        elif (host.identity, request.id) in self._in_flight:
            log.info(
                "request %s on %s is still running; its reply will follow",
                request.id,
                host.identity,
            )
        else:
            self._refuse(host, request, "interrupted earlier run found in the journal")
            await self._reply(
                host,
                request,
                StatusCode.ABORTED,
                "the agent stopped while running this request; it is not run a second time"
                if entry.runs < 2
                else "the agent stopped twice while running this request;"
                " it is not run a third time",
            )

    async def _run(
        self, host: HostContext, request: Request, action: AgentAction, inputs: dict[str, Any]
    ) -> tuple[StatusCode, str, dict[str, Any]]:
        interface = action.interface
        # Read-only calls (discovery pings reach thousands of hosts) are not worth a line each.
        log.log(
            logging.DEBUG if action.read_only else logging.INFO,
            "running %s.%s on %s for %s (request %s)",
            request.agent,
            request.action,
            host.identity,
            request.caller,
            request.id,
        )
        try:
            data = await action.handler(host, inputs)
        except ActionFailed as exc:
            return StatusCode.ABORTED, str(exc), interface.complete_outputs(exc.data)
        except ProviderError as exc:
            return StatusCode.ABORTED, str(exc), interface.complete_outputs({"output": exc.output})
        except Exception as exc:
            log.exception("%s.%s failed on %s", request.agent, request.action, host.identity)
            return (
                StatusCode.UNKNOWN_ERROR,
                f"unexpected error: {type(exc).__name__}: {exc}",
                interface.complete_outputs({}),
            )
        return StatusCode.OK, "OK", interface.complete_outputs(data)

    # -- replies and logs ------------------------------------------------------------

    def _refuse(self, host: HostContext, request: Request, reason: str) -> None:
        self._refusals.refused(
            reason,
            "refused request %s from caller %s for %s.%s on %s: %s; nothing was run",
            request.id,
            request.caller,
            request.agent,
            request.action,
            host.identity,
            reason,
        )

    async def _reply(
        self,
        host: HostContext,
        request: Request,
        code: StatusCode,
        message: str,
        data: dict[str, Any] | None = None,
    ) -> None:
        try:
            reply = build_reply(
                request, sender=host.identity, statuscode=code, statusmsg=message, data=data
            )
            body = encode_message(reply)
        except MessageError as exc:
            log.error("reply to %s on %s cannot be encoded: %s", request.id, host.identity, exc)
            reply = build_reply(
                request,
                sender=host.identity,
                statuscode=StatusCode.UNKNOWN_ERROR,
                statusmsg=f"the reply could not be encoded: {exc.reason}",
            )
            body = encode_message(reply)
        if self.batcher is not None:
            await self.batcher.add(body, request.reply_to)
        else:
            await self._publish(self.signer.sign(body), request.reply_to)


def _claimed_signer(envelope: bytes) -> str:
    try:
        return unpack_envelope(bytes(envelope))[0]
    except (SecurityError, TypeError, ValueError):
        return "unknown"
