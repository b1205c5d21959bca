"""An orchestrator on the in-process broker that stops with a request in flight loses that
request with the process; at its next start the waiting step sends it again, and the
host, which had started running it (its journal says *running*), runs it once more."""

from __future__ import annotations

from pathlib import Path

from mcoflow.actions import Install
from mcoflow.agent.journal import EntryState, Journal
from mcoflow.engine import PlanResult, StepState
from mcoflow.orchestrator import build_orchestrator
from mcoflow.settings import Settings
from mcoflow.testing import assert_eventually
from tests.embedded import orchestrator_settings

HOST = "sim-00001"


def _settings(tmp_path: Path) -> Settings:
    # a new in-process broker at each call: a new process, a new broker
    return orchestrator_settings(f"sqlite:///{tmp_path / 'mcoflow.db'}", tmp_path)


async def test_a_request_lost_with_the_process_is_sent_again_at_the_next_start(
    tmp_path: Path,
) -> None:
    # the first process has no agents: its request is published and lost with it
    first = await build_orchestrator(_settings(tmp_path))
    await first.start()
    try:
        assert first.lost_requests is not None
        assert first.lost_requests.republished == 0
        plan = await first.world.trigger(Install, hostname=HOST, package="nginx", timeout=120)

        async def published() -> str:
            [step] = [s for s in await first.world.steps(plan.id) if s.action == Install.name]
            assert step.state is StepState.SUSPENDED
            [message] = await first.store.outbox_messages(plan.id)
            assert message["published_at"] is not None
            request_id: str = message["message"]["id"]
            return request_id

        request_id = await assert_eventually(published, timeout=10)
    finally:
        await first.stop()
    # the host had begun the install when everything stopped
    crashed = Journal(tmp_path / "simulated-journal.sqlite")
    assert crashed.begin(HOST, request_id, "package", "install") is None
    crashed.close()

    second = await build_orchestrator(_settings(tmp_path), simulate_hosts=2)
    await second.start()
    try:
        assert second.lost_requests is not None
        assert second.lost_requests.republished == 1
        done = await second.world.wait(plan.id, timeout=10)
        assert done.result is PlanResult.SUCCESS, done.error
    finally:
        await second.stop()
    journal = Journal(tmp_path / "simulated-journal.sqlite")
    try:
        entry = journal.lookup(HOST, request_id)
        assert entry is not None
        assert (entry.state, entry.runs, entry.statuscode) == (EntryState.DONE, 2, 0)
        assert len(journal) == 1
    finally:
        journal.close()
