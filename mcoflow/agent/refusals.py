"""Refused agent messages: every one counted by reason (Prometheus), the repeats of a
reason logged as one summary line per interval instead of one line each, so that a
flood of forged or malformed messages cannot flood the log too."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, start_http_server

Clock = Callable[[], float]

# the agent's own metrics: served at /metrics by `mcoflow serve` (in-process agents) and
# at the agent's metrics_listen address by `mcoflow agent`
AGENT_REGISTRY = CollectorRegistry(auto_describe=True)
REFUSED = Counter(
    "mcoflow_agent_refused",
    "Messages and requests refused by this process's agents, by reason (nothing was run).",
    labelnames=["reason"],
    registry=AGENT_REGISTRY,
)


def serve_agent_metrics(listen: str) -> WSGIServer:
    """Serve AGENT_REGISTRY at http://LISTEN/metrics from a thread of this process."""
    host, _, port = listen.rpartition(":")
    server, _thread = start_http_server(int(port), addr=host.strip("[]"), registry=AGENT_REGISTRY)
    return server


# (label, words in the refusal's text): the first match names the reason; the label set
# is fixed, whatever a sender puts in its messages
_REASONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("revoked_key", ("revoked key",)),
    ("unknown_signer", ("unknown signer",)),
    ("forged", ("bad signature", "but is signed by", "signature has the wrong length")),
    ("replayed", ("replay", "already received")),
    ("expired", ("expired", "in the future", "ttl/time window")),
    ("not_authorized", ("not authorized",)),
    ("unknown_action", ("unknown agent", "unknown action", "unknown ")),
    ("bad_input", ("input ",)),
    ("other_collective", ("addressed to collective",)),
    ("interrupted", ("interrupted",)),
    ("malformed", ("envelope", "invalid", "exceeds", "must be", "json", "base64")),
)


def refusal_reason(text: str) -> str:
    """The reason label of a refusal's message."""
    lowered = text.lower()
    for label, words in _REASONS:
        if any(word in lowered for word in words):
            return label
    return "other"


@dataclass
class _Window:
    started: float
    logged: int = 0
    suppressed: int = 0


@dataclass
class RepeatLimiter:
    """Per key, the first ``burst`` events of each ``interval`` seconds are to be logged;
    the others only counted, for one summary when the interval ends. Pure: the caller
    gives the time."""

    burst: int = 5
    interval: float = 10.0
    _windows: dict[str, _Window] = field(default_factory=dict)

    def allow(self, key: str, now: float) -> bool:
        window = self._windows.get(key)
        if window is None or now >= window.started + self.interval:
            window = self._windows[key] = _Window(started=now)
        if window.logged < self.burst:
            window.logged += 1
            return True
        window.suppressed += 1
        return False

    def due(self, now: float) -> list[tuple[str, int]]:
        """(key, events not logged) of the intervals that ended by ``now``; those
        intervals are forgotten."""
        ended = [k for k, w in self._windows.items() if now >= w.started + self.interval]
        summaries = [(k, self._windows[k].suppressed) for k in ended]
        for key in ended:
            del self._windows[key]
        return [(k, n) for k, n in summaries if n]

    def pending(self) -> bool:
        return any(w.suppressed for w in self._windows.values())


class RefusalLog:
    """What the dispatcher calls for each refusal: count it, log it unless it repeats
    too often, and log the summary of the repeats once their interval ends."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        burst: int = 5,
        interval: float = 10.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.logger = logger
        self.limiter = RepeatLimiter(burst, interval)
        self.clock = clock
        self._flush: asyncio.TimerHandle | None = None

    def refused(self, text: str, message: str, *args: object) -> None:
        """``message % args`` at WARNING, ``text`` being the refusal's reason in words."""
        reason = refusal_reason(text)
        REFUSED.labels(reason=reason).inc()
        now = self.clock()
        self.flush(now)
        if self.limiter.allow(reason, now):
            self.logger.warning(message, *args)
        else:
            self._flush_later()

    def flush(self, now: float | None = None) -> None:
        """Log the summaries of the intervals that ended."""
        for reason, count in self.limiter.due(self.clock() if now is None else now):
            self.logger.warning(
                "%d more refused (%s) in the last %.0f s; not logged one by one",
                count,
                reason,
                self.limiter.interval,
            )

    def _flush_later(self) -> None:
        if self._flush is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop: the next refusal logs the summary

        def run() -> None:
            self._flush = None
            self.flush()
            if self.limiter.pending():
                self._flush_later()

        self._flush = loop.call_later(self.limiter.interval, run)
