"""Refused messages: the repeats of a reason are summed up instead of logged one by one,
and every refusal is counted by reason (issue 16: a flood must not flood the log)."""

from __future__ import annotations

import logging

import pytest

from mcoflow.agent.refusals import REFUSED, RefusalLog, RepeatLimiter, refusal_reason


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _refusal_log(caplog: pytest.LogCaptureFixture, burst: int) -> tuple[RefusalLog, Clock]:
    """A RefusalLog on a test clock (10 s intervals), its warnings captured."""
    caplog.set_level(logging.WARNING, logger="test.refusals")
    clock = Clock()
    logger = logging.getLogger("test.refusals")
    return RefusalLog(logger, burst=burst, interval=10.0, clock=clock), clock


def test_the_first_of_each_interval_pass_the_rest_are_counted_for_the_summary() -> None:
    limiter = RepeatLimiter(burst=3, interval=10.0)
    assert [limiter.allow("forged", 0.0 + i) for i in range(5)] == [True] * 3 + [False] * 2
    assert limiter.allow("expired", 5.0), "another reason has its own budget"
    assert limiter.due(9.9) == []
    assert limiter.pending()
    assert limiter.due(10.0) == [("forged", 2)]
    assert limiter.due(15.0) == [], "expired logged all of its one; nothing to sum up"
    assert not limiter.pending()
    assert limiter.allow("forged", 10.5), "a new interval starts with a new budget"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("unknown signer 'intruder'", "unknown_signer"),
        ("bad signature from 'ops'", "forged"),
        ("reply claims sender 'a' but is signed by 'b'", "forged"),
        ("request r1 was already received (replay)", "replayed"),
        ("request r1 expired 30s ago", "expired"),
        ("request r1 is dated 99s in the future", "expired"),
        ("outside its ttl/time window", "expired"),
        ("not authorized (policy denies package.install)", "not_authorized"),
        ("unknown action package.frobnicate", "unknown_action"),
        ("input package: field required", "bad_input"),
        ("addressed to collective 'other'", "other_collective"),
        ("not a signed envelope: invalid JSON", "malformed"),
        ("invalid request: ttl: must be positive", "malformed"),
        ("something new", "other"),
    ],
)
def test_reasons_are_a_fixed_set_of_labels(text: str, reason: str) -> None:
    assert refusal_reason(text) == reason


def test_a_flood_logs_a_few_lines_and_one_summary_and_counts_every_refusal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    refusals, clock = _refusal_log(caplog, burst=5)
    before = REFUSED.labels(reason="forged")._value.get()
    for n in range(5000):
        clock.now = 1000.0 + n * 0.001  # 5,000 in 5 s
        refusals.refused("bad signature from 'ops'", "refused message %d: bad signature", n)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [f"refused message {n}: bad signature" for n in range(5)]
    clock.now = 1010.0
    refusals.flush()
    assert caplog.records[-1].getMessage() == (
        "4995 more refused (forged) in the last 10 s; not logged one by one"
    )
    assert len(caplog.records) == 6
    assert REFUSED.labels(reason="forged")._value.get() - before == 5000
    # after the interval a refusal is logged again, in full
    refusals.refused("bad signature from 'ops'", "refused again")
    assert caplog.records[-1].getMessage() == "refused again"


def test_the_summary_comes_with_the_next_refusal_when_nothing_flushed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    refusals, clock = _refusal_log(caplog, burst=1)
    refusals.refused("unknown signer 'x'", "first")
    refusals.refused("unknown signer 'x'", "second")
    clock.now += 11
    refusals.refused("unknown signer 'x'", "third")
    assert [r.getMessage() for r in caplog.records] == [
        "first",
        "1 more refused (unknown_signer) in the last 10 s; not logged one by one",
        "third",
    ]
