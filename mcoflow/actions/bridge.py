"""The bridge between engine and broker: outbox messages go out as signed RPC
requests; replies come back as events for the steps that wait for them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from mcoflow.actions.inventory import sighting
from mcoflow.actions.remote import RPC_DESTINATION, parse_request_id, reply_payload
from mcoflow.engine import EventKind, Store
from mcoflow.engine.executor import TRICKLE, Undeliverable
from mcoflow.engine.records import NewEvent
from mcoflow.engine.store import HostSighting
from mcoflow.engine.store.reconnect import is_unreachable
from mcoflow.rpc.client import RpcClient
from mcoflow.rpc.filters import Filter
from mcoflow.rpc.messages import MessageError, Reply
from mcoflow.rpc.transport import Transport

log = logging.getLogger("mcoflow.bridge")


class RpcPublisher:
    """The executor's OutboxPublisher: sign and publish RPC requests."""

    def __init__(self, client: RpcClient) -> None:
        self.client = client

    async def publish(self, destination: str, message: dict[str, Any]) -> None:
        if destination != RPC_DESTINATION:
            raise ValueError(f"no publisher for outbox destination {destination!r}")
        flt = Filter.model_validate(message["filter"]) if message.get("filter") else None
        try:
            request = self.client.build(
                message["agent"],
                message["action"],
                message.get("data") or {},
                filter=flt,
                ttl=float(message.get("ttl") or 60.0),
                id=message["id"],
            )
            await self.client.send(request, message.get("identities"))
        except MessageError as exc:
            # the same request fails the same way every time (e.g. a filter the hosts'
            # protocol cannot carry): retrying it would only fill the log
            raise Undeliverable(str(exc)) from exc


class LostRequests:
    """The steps still waiting for an answer have their latest request published again
    when it may be gone: at every start of the orchestrator (whatever the transport: an
    in-process broker dies with the process, and hosts may have lost what they were
    running) and after a reconnection when the transport says the broker may have lost
    what it held. Hosts answer a repeated request id from their journal; replies are
    deduplicated by (request id, sender), so a request sent twice is harmless."""

    def __init__(self, transport: Transport, store: Store, wake_outbox: Callable[[], None]):
        self.transport = transport
        self.store = store
        self.wake_outbox = wake_outbox
        self.republished = 0

    async def at_start(self) -> None:
        """Republish once: through the transport's recovery (which also tells the other
        processes sharing the broker that it is done), or here when that did not run."""
        if not await self.transport.recover_lost_requests(self._lost_by_broker):
            await self._republish("the orchestrator started")

    async def check(self) -> None:
        """After a reconnection: republish if the broker may have lost the requests."""
        await self.transport.recover_lost_requests(self._lost_by_broker)

    async def _lost_by_broker(self) -> None:
        await self._republish("the broker may have lost its requests")

    async def _republish(self, why: str) -> None:
        count = await self.store.republish_waiting(RPC_DESTINATION)
        self.republished += count
        if count:
            log.warning("%s; %d waiting steps send their requests again", why, count)
            self.wake_outbox()


class ReplyRouter:
    """Writes each reply as an event for its step, in batches (group commit), and
    returns only after the commit, so the transport acknowledges committed replies only.
    Duplicates (same request id and sender) are dropped by the store's dedupe key.
    Just before each batch, its senders' sightings go to the host inventory in one
    statement (best effort: the next reply or discovery records them again)."""

    def __init__(
        self,
        store: Store,
        *,
        on_delivered: Any = None,
        max_batch: int = 1000,
        linger: float = 0.004,
    ):
        self.store = store
        self.on_delivered = on_delivered
        self.max_batch = max_batch
        # replies come one by one: waiting a few ms lets many share one transaction
        self.linger = linger
        self.replies = 0
        self.duplicates = 0
        self.unroutable = 0
        self._pending: list[tuple[NewEvent, asyncio.Future[None]]] = []
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sightings: list[HostSighting] = []

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._flush_loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for _, fut in self._pending:
            if not fut.done():
                fut.set_exception(ConnectionError("reply router stopped"))
        self._pending.clear()

    async def on_reply(self, reply: Reply) -> None:
        target = parse_request_id(reply.request_id)
        if target is None:
            self.unroutable += 1
            log.warning("reply %s from %s matches no step; dropped", reply.request_id, reply.sender)
            return
        plan_id, step_idx = target
        payload = reply_payload(reply)
        key = f"reply:{reply.request_id}:{reply.sender}"
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        now = time.time()
        self._pending.append((NewEvent(plan_id, step_idx, EventKind.USER, payload, key, now), fut))
        self._sightings.append(sighting(reply, now))
        self._kick.set()
        self.start()
        await fut

    async def _flush_loop(self) -> None:
        while True:
            await self._kick.wait()
            self._kick.clear()
            if len(self._pending) < TRICKLE:
                await asyncio.sleep(self.linger)
            while self._pending:
                batch, self._pending = (
                    self._pending[: self.max_batch],
                    self._pending[self.max_batch :],
                )
                # first: a step that sees a reply finds its sender in the inventory
                await self._record_sightings()
                try:
                    fresh = await self._deliver(batch)
                except Exception as exc:
                    # not committed: the broker redelivers what we do not acknowledge
                    log.exception("storing %d replies failed", len(batch))
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                self.replies += sum(fresh)
                self.duplicates += len(fresh) - sum(fresh)
                for _, fut in batch:
                    if not fut.done():
                        fut.set_result(None)
                if self.on_delivered is not None:
                    self.on_delivered()

    async def _deliver(self, batch: list[tuple[NewEvent, asyncio.Future[None]]]) -> list[bool]:
        """Store the batch; while the database is unreachable, hold it and try again (the
        store's link logs the outage once): its deliveries stay unacknowledged meanwhile,
        rather than going back to the broker and coming straight back, again and again."""
        return await self.store.link.retry(
            lambda: self.store.deliver_events([item for item, _ in batch])
        )

    async def _record_sightings(self) -> None:
        seen, self._sightings = self._sightings, []
        if not seen:
            return
        try:
            await self.store.record_sightings(seen)
        except Exception as exc:
            if is_unreachable(exc):  # said once by the store's link; best effort anyway
                return
            log.exception("recording %d host sightings failed", len(seen))
