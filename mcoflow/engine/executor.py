"""The executor: claims runnable steps in batches, runs them on asyncio, and commits
their outcomes in batches (group commit). No thread is held by a waiting step: a
suspended step is only a row in the database until an event or timer makes it due."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from functools import partial
from typing import Any, Protocol

from mcoflow.engine.action import registered_action
from mcoflow.engine.liveness import Liveness
from mcoflow.engine.loops import Loop, guarded
from mcoflow.engine.planner import Planner, error_record
from mcoflow.engine.records import ClaimedStep, OutboxMessage, StepOutcome, SubPlanCounts
from mcoflow.engine.runner import finalize_step, run_step, unstorable
from mcoflow.engine.states import PlanState
from mcoflow.engine.store import Store, is_transient_error
from mcoflow.engine.store.reconnect import is_unreachable
from mcoflow.engine.unheard_claims import UnheardClaims
from mcoflow.engine.upkeep import delete_old_plans, refresh_statistics
from mcoflow.engine.waiting import wait_set
from mcoflow.engine.wakeups import listen, watch

# fewer items than this ready at once: a trickle worth waiting a few ms to batch
TRICKLE = 32
log = logging.getLogger("mcoflow.executor")


class Undeliverable(Exception):
    """Raised by a publisher for a message no retry can send (it cannot be encoded for
    the hosts): the message is given up at once; the step waiting for its answer times
    out. Any other exception is retried."""


class OutboxPublisher(Protocol):
    """Where committed outbox messages go (the broker, once the RPC bridge plugs in)."""

    async def publish(self, destination: str, message: dict[str, Any]) -> None: ...


class Executor:
    def __init__(
        self,
        store: Store,
        *,
        executor_id: str | None = None,
        batch_size: int = 500,
        max_in_flight: int = 5000,
        poll_interval: float = 0.5,
        heartbeat_interval: float = 2.0,
        dead_after: float = 20.0,
        publisher: OutboxPublisher | None = None,
        outbox_retry_after: float = 5.0,
        outbox_batch_size: int = 500,
        outbox_lease: float = 60.0,
        retention: float | None = None,
        clean_interval: float = 3600.0,
        linger: float = 0.004,
        statistics_interval: float | None = 2.0,
    ) -> None:
        self.store = store
        self.id = executor_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.batch_size = batch_size
        self.max_in_flight = max_in_flight
        self.poll_interval = poll_interval
        self.heartbeat_interval = heartbeat_interval
        self.dead_after = dead_after
        self.publisher = publisher
        self.outbox_retry_after = outbox_retry_after
        self.outbox_batch_size = outbox_batch_size
        # a claimed batch is this executor's for so long (longer than a publish may take);
        # if it dies meanwhile, its batches go out again once it is found dead
        self.outbox_lease = outbox_lease
        self.retention = retention
        self.clean_interval = clean_interval
        # Work that trickles in (replies arriving one by one) would otherwise cost a
        # transaction per item; waiting a few ms when woken lets it share one. Only for a
        # trickle: when big batches flow, waiting would only slow them.
        self.linger = linger
        # PostgreSQL: how often to look for tables grown stale for the planner (None: never)
        self.statistics_interval = statistics_interval
        self._last_claimed = 0
        self.in_flight = 0
        self.steps_run = 0
        self._wake = asyncio.Event()
        self._outbox_wake = asyncio.Event()
        self._plan_wake = asyncio.Event()
        self._room = asyncio.Event()
        self._results: asyncio.Queue[StepOutcome] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._step_tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        # set when it stops by itself (declared dead, a loop failed): its process should
        # end non-zero, for a supervisor to start a new one
        self.failed = asyncio.Event()
        self.failure: str | None = None
        self._stopped = asyncio.Event()
        # set while a LISTEN connection is up (PostgreSQL): other processes' commits
        # wake this executor at once instead of at its next poll
        self.listening = asyncio.Event()
        # PostgreSQL: a lock held for life, so that others find this one dead in seconds
        self.liveness = Liveness(store, self.id) if store.is_postgresql else None
        # whose loops speak when the database goes away and comes back
        store.link.name = f"executor {self.id}"
        self._unheard = UnheardClaims(store, self.id)

    # ---- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        if self.liveness is not None:
            await self.liveness.start()
        await self.store.register_executor(self.id)
        await self.store.release_dead_executors(self.dead_after, by=self.id)
        if self.publisher is not None:
            # batches a stopped executor had claimed go out now, not when their lease ends
            await self.store.release_outbox_claims()
        # PostgreSQL takes concurrent writers (plan locks are taken in id order); SQLite
        # has one writer at a time anyway
        writers = [self._write_loop for _ in range(2 if self.store.is_postgresql else 1)]
        loops: list[Loop] = [self._claim_loop, *writers, self._heartbeat_loop, self._plan_loop]
        if self.publisher is not None:
            loops.append(self._outbox_loop)
        if self.liveness is not None:
            loops.append(partial(self.liveness.watch, self._stopping, self._fail, self._wake.set))
        store, stopping = self.store, self._stopping
        if store.is_postgresql:
            loops.append(partial(listen, store, self._woken, self.listening, stopping, self.id))
        else:
            loops.append(partial(watch, store, self._woken, self._stopped))
        if self.retention is not None:
            loops.append(
                partial(delete_old_plans, store, self.retention, self.clean_interval, stopping)
            )
        if store.is_postgresql and self.statistics_interval is not None:
            loops.append(
                partial(refresh_statistics, store, self.statistics_interval, stopping, self.id)
            )
        self._tasks = [
            asyncio.create_task(guarded(loop, self.store.link, self._stopping, self._fail, self.id))
            for loop in loops
        ]
        log.info("executor %s started", self.id)

    def _fail(self, reason: str) -> None:
        self.failure = self.failure or reason
        self.failed.set()
        self._stopping.set()
        self._wake.set()

    async def stop(self) -> None:
        """Stop claiming, let running steps finish and commit, then unregister."""
        self._stopping.set()
        self._wake.set()
        self._room.set()
        if self._step_tasks:
            await asyncio.wait(self._step_tasks, timeout=30)
        deadline = time.monotonic() + 30
        while (self.in_flight > 0 or not self._results.empty()) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            await self.store.unregister_executor(self.id)
        except Exception as exc:
            if not is_unreachable(exc):
                raise
            # its claims stay until another executor finds it gone (its lock, its heartbeat)
            log.warning("executor %s: not unregistered: the database is unreachable", self.id)
        if self.liveness is not None:
            await self.liveness.close()
        self._stopped.set()
        log.info("executor %s stopped after %d step runs", self.id, self.steps_run)

    async def run_forever(self) -> None:
        await self.start()
        try:
            await self._stopping.wait()
        finally:
            await self.stop()

    def wake(self) -> None:
        """New work may be due now (in-process triggers, events)."""
        self._wake.set()
        self._plan_wake.set()

    def wake_steps(self) -> None:
        """Events were delivered to steps: they may be due now (no plan-level work is)."""
        self._wake.set()

    def wake_outbox(self) -> None:
        """Outbox messages may be due now (e.g. marked for publishing again)."""
        self._outbox_wake.set()

    # ---- claiming and running -------------------------------------------------------

    async def _claim_loop(self) -> None:
        while not self._stopping.is_set():
            room = self.max_in_flight - self.in_flight
            if room <= 0:
                self._room.clear()
                await self._room.wait()
                continue
            self._wake.clear()
            await self._unheard.give_back_steps()
            claimed = await self.store.claim_steps(self.id, min(self.batch_size, room), time.time())
            self._last_claimed = len(claimed)
            self._unheard.claimed(claimed)
            if claimed:
                self.in_flight += len(claimed)
                for step in claimed:
                    task = asyncio.create_task(self._run(step))
                    self._step_tasks.add(task)
                    task.add_done_callback(self._step_tasks.discard)
                if len(claimed) == min(self.batch_size, room):
                    continue
            await self._sleep_until_due()

    async def _sleep_until_due(self) -> None:
        timeout = self.poll_interval
        if not self._wake.is_set():
            nxt = await self.store.next_wake()
            if nxt is not None:
                timeout = max(0.0, min(timeout, nxt - time.time()))
        if await wait_set(self._wake, timeout):
            await self._linger(self._last_claimed)

    async def _linger(self, flowing: int) -> None:
        """Wait ``linger`` s when the last batch (``flowing`` items) was a trickle."""
        if self.linger > 0 and flowing < TRICKLE:
            await asyncio.sleep(self.linger)

    async def _run(self, claimed: ClaimedStep) -> None:
        outcome = await run_step(claimed, self._sub_plan_counts)
        await self._results.put(outcome)

    async def _sub_plan_counts(self, plan_id: str, step_idx: int) -> SubPlanCounts:
        """For a run (WithSubPlans): waits out an outage within the run's time limit,
        rather than failing the step and pausing its plan (a fleet job)."""
        return await self.store.link.retry(partial(self.store.sub_plan_counts, plan_id, step_idx))

    async def _write_loop(self) -> None:
        while True:
            batch = [await self._results.get()]
            await self._linger(self._results.qsize() + 1)
            while not self._results.empty() and len(batch) < self.batch_size * 2:
                batch.append(self._results.get_nowait())
            finalizing = await self._write(batch)
            self._unheard.written(batch)
            self.in_flight -= len(batch)
            self.steps_run += len(batch)
            self._room.set()
            self._wake.set()
            if finalizing:
                self._plan_wake.set()
            if any(o.messages for o in batch):
                self._outbox_wake.set()

    async def _write(self, batch: list[StepOutcome]) -> bool:
        """Commit outcomes. While the database is unreachable keep them and try again (our
        claims stay ours); an outcome that cannot be stored at all must not hold up the
        others: it is written alone, as the step's error, so its plan pauses. True if a
        plan became due for its finalize phase."""
        backoff = self.store.link.backoff()
        while True:
            try:
                return await self.store.write_outcomes(batch, by=self.id)
            except Exception as exc:
                if not is_transient_error(exc):
                    log.exception("executor %s: storing %d outcomes failed", self.id, len(batch))
                    failure = exc
                    break
                if not is_unreachable(exc):  # unreachable: the store's link said so once
                    log.warning("executor %s: storing outcomes: %s; retrying", self.id, exc)
                await backoff.sleep()
        if len(batch) > 1:
            finalizing = False
            for outcome in batch:
                finalizing |= await self._write([outcome])
            return finalizing
        (outcome,) = batch
        try:
            return await self.store.write_outcomes([unstorable(outcome, failure)], by=self.id)
        except Exception:
            log.exception(
                "executor %s: step %s/%d could not be stored even as an error; it stays "
                "claimed until this executor restarts",
                self.id,
                outcome.plan_id,
                outcome.idx,
            )
            return False

    # ---- plans that need an executor themselves ---------------------------------------

    async def _plan_loop(self) -> None:
        while not self._stopping.is_set():
            self._plan_wake.clear()
            await self._unheard.give_back_plans()
            # a read first: claiming is a write transaction, wasted when nothing is due
            nxt = await self.store.next_plan_wake()
            now = time.time()
            if nxt is not None and nxt <= now:
                claimed = await self.store.claim_plans(self.id, 50, now)
                for plan in claimed:
                    if plan.state is PlanState.SCHEDULED:
                        await self._start_delayed(plan.id)
                    elif plan.needs_finalize:
                        await self._finalize(plan.id)
                    self._wake.set()
                if claimed:
                    continue
                nxt = await self.store.next_plan_wake()  # due elsewhere: claimed by another
            timeout = self.poll_interval
            if nxt is not None:
                # not below 5 ms: a due plan another executor holds must not spin this loop
                timeout = max(0.005, min(timeout, nxt - time.time()))
            await wait_set(self._plan_wake, timeout)

    async def _start_delayed(self, plan_id: str) -> None:
        # claimed: from here on, retried rather than dropped (nobody else would start it)
        retry = self.store.link.retry
        plan = await retry(lambda: self.store.get_plan(plan_id))
        if plan is None or plan.state is not PlanState.SCHEDULED:
            return
        now = time.time()
        if plan.start_before is not None and now > plan.start_before:
            late = now - plan.start_before
            missed = f"missed its start window: start_before passed {late:.1f} s ago"
            await retry(lambda: self.store.start_scheduled_plan(plan_id, None, missed, self.id))
            return
        try:
            new_plan = Planner().plan(
                registered_action(plan.action), plan.args, label=plan.label, plan_id=plan_id
            )
        except Exception as exc:
            failed = f"planning failed: {exc}"
            await retry(lambda: self.store.start_scheduled_plan(plan_id, None, failed, self.id))
            return
        new_plan.start_at, new_plan.start_before = plan.start_at, plan.start_before
        await retry(lambda: self.store.start_scheduled_plan(plan_id, new_plan, None, self.id))

    async def _finalize(self, plan_id: str) -> None:
        failed: int | None = None
        error: dict[str, Any] | None = None
        # claimed: retried rather than dropped (nobody else would finalize it)
        retry = self.store.link.retry
        for step in await retry(lambda: self.store.finalize_steps(plan_id)):
            try:
                await finalize_step(step)
            except Exception as exc:
                failed, error = step.idx, error_record(exc)
                break
        await retry(lambda: self.store.finish_finalize(plan_id, error, failed, self.id))

    # ---- health ---------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while not self._stopping.is_set():
            await asyncio.sleep(self.heartbeat_interval)
            if not await self.store.heartbeat(self.id):
                log.error("executor %s was declared dead by another executor; stopping", self.id)
                self._fail("declared dead by another executor (no heartbeat in time)")
                return
            if self.store.link.since_back() < self.dead_after:
                # everyone's heartbeats stopped with the database: give the others as long
                # to send one again before judging them by it
                continue
            dead = await self.store.release_dead_executors(self.dead_after, by=self.id)
            if dead:
                log.warning("released the claims of dead executors %s", ", ".join(dead))
                self._wake.set()

    def _woken(self) -> None:
        """Another process made work due (its commit)."""
        self.wake()
        self._outbox_wake.set()

    # ---- outbox ---------------------------------------------------------------------

    async def _outbox_loop(self) -> None:
        assert self.publisher is not None
        publisher = self.publisher
        while True:
            self._outbox_wake.clear()
            # fresh messages are sent at once, failed ones again after a backoff; claimed,
            # so that several executors on one database do not publish a message twice
            messages = await self.store.claim_unpublished(
                self.outbox_batch_size, time.time(), self.outbox_lease
            )

            async def send(message: OutboxMessage) -> int:
                await publisher.publish(message.destination, message.message)
                return message.id

            # concurrently: brokers pipeline publisher confirms
            results = await asyncio.gather(*(send(m) for m in messages), return_exceptions=True)
            sent = [r for r in results if isinstance(r, int)]
            errors = [
                (m.id, r)
                for m, r in zip(messages, results, strict=True)
                if isinstance(r, BaseException)
            ]
            for message_id, why in errors:
                if isinstance(why, Undeliverable):
                    log.error("outbox message %d cannot be sent, given up: %s", message_id, why)
                    sent.append(message_id)  # marked published: not tried again
            failed = [(i, r) for i, r in errors if not isinstance(r, Undeliverable)]
            if failed:
                now = time.time()
                log.error(
                    "publishing %d outbox messages failed (will retry): %s",
                    len(failed),
                    failed[0][1],
                )
                ids = [i for i, _ in failed]
                await self.store.link.retry(partial(self.store.mark_publish_failed, ids, now))
            # published: not marked, they would go out again when their lease ends
            await self.store.link.retry(partial(self.store.mark_published, sent))
            if len(messages) == self.outbox_batch_size:
                continue
            if await wait_set(self._outbox_wake, self.outbox_retry_after):
                await self._linger(len(messages))
