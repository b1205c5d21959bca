"""JetStream API calls of the NATS transport that a cluster makes harder: retried while
its leaders are elected or it answers late, and a stream's replicas raised to the
setting."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TypeVar

import nats
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError, ServiceUnavailableError

from mcoflow.rpc.transport import TransportError

__all__ = ["bind_durable", "raise_replicas", "retried", "stream_exists"]

log = logging.getLogger("mcoflow.rpc.transports.nats")

T = TypeVar("T")


async def retried(
    what: str, call: Callable[[], Awaitable[T]], *, limit: float, stop: Callable[[], bool]
) -> T:
    """``call`` (a JetStream API request), tried again for up to ``limit`` seconds while
    it times out or JetStream is unavailable, unless ``stop()``: a cluster that lost a
    node elects new leaders, and one under load answers a consumer's creation late (a
    repeated creation with the same settings is accepted)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while True:
        try:
            return await call()
        except (nats.errors.TimeoutError, ServiceUnavailableError) as exc:
            if stop() or loop.time() >= deadline:
                raise
            log.info("%s: %r; trying again", what, exc)
        await asyncio.sleep(0.2)


async def raise_replicas(js: JetStreamContext, name: str, replicas: int) -> None:
    """Give stream ``name`` at least ``replicas`` (made earlier with fewer); a failure
    is logged, the stream is used as it is."""
    existing = (await js.stream_info(name)).config
    if (existing.num_replicas or 1) >= replicas:
        return
    try:
        await js.update_stream(replace(existing, num_replicas=replicas))
        log.info("stream %s: replicas raised to %d", name, replicas)
    except Exception as exc:
        log.warning(
            "stream %s has %d replicas and nats_replicas is %d; raising them failed: %r",
            name, existing.num_replicas or 1, replicas, exc,
        )  # fmt: skip


async def stream_exists(js: JetStreamContext, subject: str) -> bool:
    """Whether a stream takes ``subject``; True when that cannot be told now (the
    cluster elects): the caller's publish is then retried."""
    try:
        await js.find_stream_name_by_subject(subject)
    except NotFoundError:
        return False
    except Exception as exc:
        log.info("stream lookup for %r failed: %r", subject, exc)
    return True


async def bind_durable(
    js: JetStreamContext,
    stream: str,
    config: api.ConsumerConfig,
    cb: Callable[[Msg], Awaitable[None]],
) -> JetStreamContext.PushSubscription:
    """A push subscription to the durable consumer ``config.durable_name`` of
    ``stream``, made with ``config`` when missing; acknowledged by the callback.

    What ``js.subscribe`` does, except that it can be retried: a creation that timed
    out may have happened, and the consumer it made (same deliver subject) is bound
    to; one another subscription serves already is refused, as there."""
    durable = config.durable_name
    assert durable is not None and config.deliver_subject is not None
    try:
        info = await js.consumer_info(stream, durable)
    except NotFoundError:
        info = await js.add_consumer(stream, config=config)
    else:
        theirs = info.config.deliver_subject != config.deliver_subject
        if info.push_bound and not info.config.deliver_group and theirs:
            raise TransportError(
                f"JetStream consumer {durable} is already bound to a subscription "
                "(another process serves this host)"
            )
    return await js.subscribe_bind(
        stream=stream, config=info.config, consumer=durable, cb=cb, manual_ack=True
    )
