"""Helpers of the crash-recovery acceptance tests: what the agents' journal files say,
a seeded moment to kill a process at, and a fleet job followed to its end.

"Each host ran the install exactly once" means, read from a journal file: one row per
host for the job's request, *done* with status 0 (one completed execution), and a
``runs`` count of 1, or 2 where the agent was killed in the middle of it and ran the
install again after its restart (idempotent in effect, see mcoflow.agent.journal).
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from mcoflow.actions import host_results
from mcoflow.engine import PlanResult, PlanState, World
from mcoflow.testing import assert_eventually


@dataclass(frozen=True)
class Handled:
    identity: str
    state: str
    runs: int
    statuscode: int | None


def installs(journal: Path, plans: set[str]) -> dict[str, Handled]:
    """The journal's ``package.install`` rows of the requests of ``plans`` (the hosts'
    plans of one job: a request id starts with its plan id), by host, read from the file
    (beside a running agent too: WAL)."""
    if not journal.exists():
        return {}
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=10)
    try:
        rows = db.execute(
            "SELECT identity, state, runs, statuscode, request_id FROM handled"
            " WHERE agent = 'package' AND action = 'install'"
        ).fetchall()
    finally:
        db.close()
    seen: dict[str, Handled] = {}
    for identity, state, runs, statuscode, request_id in rows:
        if request_id.split(".", 1)[0] in plans:
            assert identity not in seen, f"{identity}: two install requests in one job"
            seen[identity] = Handled(identity, state, runs, statuscode)
    return seen


def assert_installed_once(
    journal: Path, plans: set[str], hosts: list[str], interrupted: set[str]
) -> None:
    """Every host completed the install once; those in ``interrupted`` (running when
    their agent was killed) started it twice, all the others once."""
    rows = installs(journal, plans)
    assert sorted(rows) == sorted(hosts), f"{len(rows)} of {len(hosts)} hosts in the journal"
    unfinished = [r for r in rows.values() if (r.state, r.statuscode) != ("done", 0)]
    assert unfinished == [], f"{len(unfinished)} not done once: {unfinished[:5]}"
    expected = {identity: 2 if identity in interrupted else 1 for identity in hosts}
    wrong = {h: (rows[h].runs, expected[h]) for h in hosts if rows[h].runs != expected[h]}
    assert wrong == {}, f"(runs, expected) per host: {dict(list(wrong.items())[:10])}"


def running(journal: Path, plans: set[str]) -> set[str]:
    """The hosts whose install is journalled as *running*."""
    return {h for h, r in installs(journal, plans).items() if r.state == "running"}


def seeded_rng(name: str) -> random.Random:
    """``CRASH_TEST_SEED=<n>`` repeats a run; the seed is printed either way."""
    seed = int(os.environ.get("CRASH_TEST_SEED") or random.SystemRandom().randrange(2**32))
    print(f"{name}: CRASH_TEST_SEED={seed}")
    return random.Random(seed)


async def wait_until_in_flight(journal: Path, plans: set[str], timeout: float = 30.0) -> None:
    """Until some host runs the install (its agent journalled it as *running*)."""

    def some_running() -> None:
        assert running(journal, plans), "no install running yet"

    await assert_eventually(some_running, timeout=timeout, interval=0.02)


async def host_plans(db_url: str, plan_id: str, count: int, timeout: float = 30.0) -> set[str]:
    """The ids of the hosts' plans of a fleet job, once it made all ``count``."""
    world = await World.open(db_url, upgrade=False)
    try:

        async def made() -> set[str]:
            children = {child.id for child in await world.store.child_plans(plan_id)}
            assert len(children) == count, f"{len(children)} of {count} host plans"
            return children

        return await assert_eventually(made, timeout=timeout, interval=0.05)
    finally:
        await world.close()


async def wait_fleet_success(db_url: str, plan_id: str, hosts: list[str], within: float) -> float:
    """Until the fleet job stopped, every host a success, at most ``within`` s; the
    seconds it took."""
    started = time.monotonic()
    world = await World.open(db_url, upgrade=False)
    try:

        async def finished() -> None:
            plan = await world.get_plan(plan_id)
            assert plan.state is PlanState.STOPPED, f"fleet job {plan.state.value}"

        try:
            await assert_eventually(finished, timeout=within, interval=0.2)
        finally:
            results = await host_results(world, plan_id)
            failed = [(r.host, r.state.value, r.result.value, r.message) for r in results]
            failed = [f for f in failed if f[2] != PlanResult.SUCCESS.value]
            print(f"fleet {plan_id}: {len(results) - len(failed)} of {len(hosts)} succeeded")
        assert sorted(r.host for r in results) == sorted(hosts)
        assert failed == [], f"{len(failed)} hosts did not succeed: {failed[:5]}"
        plan = await world.get_plan(plan_id)
        assert plan.result is PlanResult.SUCCESS, plan.error
    finally:
        await world.close()
    return time.monotonic() - started
