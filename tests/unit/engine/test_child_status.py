"""The counts of a fleet's hosts: every host in exactly one status, a paused host is an
error, a host stopped without a result was cancelled, and the summary says the numbers."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcoflow.engine import Plan, PlanResult, PlanState
from mcoflow.engine.child_status import ChildCounts, ChildStatus, child_status


def host(state: PlanState, result: PlanResult, n: int = 0) -> Plan:
    return Plan(
        id=f"p{n}",
        action="a",
        label=f"h{n}",
        args={},
        state=state,
        result=result,
        flow=None,
        error=None,
        parent_plan_id="fleet",
        parent_step_id=1,
        created_at=0.0,
        started_at=None,
        ended_at=None,
        start_at=None,
        start_before=None,
        progress=0.0,
        cancel_requested=False,
    )


@pytest.mark.parametrize(
    ("state", "result", "status"),
    [
        (PlanState.PLANNED, PlanResult.PENDING, ChildStatus.PLANNED),
        (PlanState.PENDING, PlanResult.PENDING, ChildStatus.PLANNED),
        (PlanState.RUNNING, PlanResult.PENDING, ChildStatus.RUNNING),
        (PlanState.PAUSED, PlanResult.ERROR, ChildStatus.ERROR),
        (PlanState.STOPPED, PlanResult.SUCCESS, ChildStatus.SUCCESS),
        (PlanState.STOPPED, PlanResult.WARNING, ChildStatus.WARNING),
        (PlanState.STOPPED, PlanResult.ERROR, ChildStatus.ERROR),
        (PlanState.STOPPED, PlanResult.CANCELLED, ChildStatus.CANCELLED),
        (PlanState.STOPPED, PlanResult.PENDING, ChildStatus.CANCELLED),
    ],
)
def test_status_of_each_state(state: PlanState, result: PlanResult, status: ChildStatus) -> None:
    assert child_status(host(state, result)) is status


def test_five_errors_and_forty_five_cancelled_say_so() -> None:
    hosts = [host(PlanState.PAUSED, PlanResult.ERROR, n) for n in range(5)]
    hosts += [host(PlanState.STOPPED, PlanResult.CANCELLED, n) for n in range(5, 50)]
    counts = ChildCounts.of(hosts)
    assert counts.summary() == (
        "50 hosts: 0 succeeded, 5 failed (5 waiting for the operator), 45 cancelled"
    )
    assert counts.as_dict()["error"] == 5 and counts.failed == 50


PAIRS = st.sampled_from(
    [
        (PlanState.PLANNED, PlanResult.PENDING),
        (PlanState.RUNNING, PlanResult.PENDING),
        (PlanState.PAUSED, PlanResult.ERROR),
        *[(PlanState.STOPPED, r) for r in PlanResult],
    ]
)


@given(st.lists(PAIRS, max_size=60))
def test_every_host_is_counted_once(pairs: list[tuple[PlanState, PlanResult]]) -> None:
    hosts = [host(state, result, n) for n, (state, result) in enumerate(pairs)]
    counts = ChildCounts.of(hosts)
    by_status = counts.as_dict()
    assert sum(by_status[s.value] for s in ChildStatus) == counts.total == len(hosts)
    assert counts.paused == sum(state is PlanState.PAUSED for state, _ in pairs)
    assert counts.paused <= counts.error
    assert counts.error == sum(
        state is PlanState.PAUSED or (state, result) == (PlanState.STOPPED, PlanResult.ERROR)
        for state, result in pairs
    )
    text = counts.summary()
    assert text.startswith(f"{len(hosts)} hosts: {counts.success + counts.warning} succeeded")
    assert re.search(rf"\b{counts.error} failed\b", text)
    assert re.search(rf"\b{counts.cancelled} cancelled\b", text)
    assert ("running" in text) == (counts.running > 0)
