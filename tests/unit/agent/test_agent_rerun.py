"""The journal's re-run rule: a request the agent stopped in the middle of (found
*running* after a restart) runs once more when its action is idempotent in effect, and is
refused otherwise; a request completes at most once per host, and the journal counts
every execution started (``runs``)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from mcoflow.agent.dispatcher import Dispatcher
from mcoflow.agent.interface import ActionInterface
from mcoflow.agent.journal import EntryState, Journal
from mcoflow.agent.plugins import AGENT_CLASSES, Agent, AgentAction, HostContext
from mcoflow.rpc.envelope import open_replies
from mcoflow.rpc.messages import Reply, Request, StatusCode
from mcoflow.rpc.security import Verifier
from tests.unit.agent.conftest import Keys, make_request


class CountingAgent(Agent):
    """``touch`` is idempotent in effect, ``append`` is not; both count their runs."""

    name = "counting"

    def __init__(self) -> None:
        self.runs: dict[str, int] = {"touch": 0, "append": 0}
        self.release = asyncio.Event()
        self.release.set()
        super().__init__()

    def declare(self) -> Mapping[str, AgentAction]:
        return {
            "touch": AgentAction(ActionInterface("touch", idempotent=True), self.touch),
            "append": AgentAction(ActionInterface("append"), self.append),
        }

    async def touch(self, host: HostContext, inputs: dict[str, Any]) -> dict[str, Any]:
        self.runs["touch"] += 1
        await self.release.wait()
        return {}

    async def append(self, host: HostContext, inputs: dict[str, Any]) -> dict[str, Any]:
        self.runs["append"] += 1
        return {}


class Site:
    """A dispatcher (one agent process) on a journal file; a restart is a new Site."""

    def __init__(self, keys: Keys, journal_file: Path) -> None:
        self.agent = CountingAgent()
        self.path = journal_file
        self.journal = Journal(journal_file, synced=False)
        self.replies: list[Reply] = []
        self.host = HostContext("web1", "mcoflow", {}, (), ("counting",))
        self.keys = keys

        async def publish(envelope: bytes, reply_to: str) -> None:
            self.replies.extend(open_replies(envelope, keys.reply_verifier))

        self.dispatcher = Dispatcher(
            verifier=Verifier({}),
            signer=keys.host,
            agents={"counting": self.agent},
            publish=publish,
            journal=self.journal,
        )


def _crashed_journal(path: Path, request_id: str, action: str, runs: int = 1) -> None:
    """What a crash in the middle of ``runs`` executions leaves on disk."""
    journal = Journal(path)
    assert journal.begin("web1", request_id, "counting", action) is None
    for _ in range(runs - 1):
        assert journal.rerun("web1", request_id)
    journal.close()


def _rows(path: Path) -> list[tuple[str, str, int]]:
    """(request id, state, runs) per journal row, read from the file itself."""
    with sqlite3.connect(path) as db:
        return list(db.execute("SELECT request_id, state, runs FROM handled ORDER BY request_id"))


def _restarted_after_crash(
    keys: Keys, tmp_path: Path, action: str, runs: int = 1
) -> tuple[Request, Site]:
    """A request of ``action`` left *running* by ``runs`` interrupted executions, and the
    agent process started after the last one."""
    request = make_request("counting", action, {})
    path = tmp_path / "journal.sqlite"
    _crashed_journal(path, request.id, action, runs)
    return request, Site(keys, path)


async def test_idempotent_action_interrupted_once_is_run_again_once(
    keys: Keys, tmp_path: Path
) -> None:
    request, site = _restarted_after_crash(keys, tmp_path, "touch")
    await site.dispatcher.serve(site.host, request)
    assert site.agent.runs["touch"] == 1
    [reply] = site.replies
    assert reply.statuscode is StatusCode.OK
    assert _rows(site.path) == [(request.id, "done", 2)]
    # once done, a repeat (the caller republished it) is answered from the journal
    site.journal.close()
    again = Site(keys, site.path)
    await again.dispatcher.serve(again.host, request)
    assert again.agent.runs["touch"] == 0
    assert [r.statuscode for r in again.replies] == [StatusCode.OK]
    assert _rows(site.path) == [(request.id, "done", 2)]


@pytest.mark.parametrize(
    ("action", "runs", "says"),
    [
        pytest.param(
            "touch", 2, ("stopped twice", "not run a third time"), id="idempotent-interrupted-twice"
        ),
        pytest.param("append", 1, ("not run a second time",), id="not-idempotent-interrupted"),
    ],
)
async def test_an_interrupted_request_that_may_not_run_again_is_refused(
    keys: Keys, tmp_path: Path, action: str, runs: int, says: tuple[str, ...]
) -> None:
    request, site = _restarted_after_crash(keys, tmp_path, action, runs)
    await site.dispatcher.serve(site.host, request)
    assert site.agent.runs[action] == 0
    [reply] = site.replies
    assert reply.statuscode is StatusCode.ABORTED
    assert all(part in reply.statusmsg for part in says), reply.statusmsg
    assert _rows(site.path) == [(request.id, "running", runs)]


async def test_a_repeat_while_the_rerun_runs_waits_for_it(keys: Keys, tmp_path: Path) -> None:
    """Two copies after a restart (a redelivery and a republish): one re-run, one reply."""
    request, site = _restarted_after_crash(keys, tmp_path, "touch")
    site.agent.release.clear()
    first = asyncio.create_task(site.dispatcher.serve(site.host, request))
    while site.agent.runs["touch"] == 0:
        await asyncio.sleep(0.001)
    await site.dispatcher.serve(site.host, request)  # the replay guard sends it to the journal
    assert site.replies == []
    site.agent.release.set()
    await first
    assert site.agent.runs["touch"] == 1
    assert [r.statuscode for r in site.replies] == [StatusCode.OK]
    assert _rows(site.path) == [(request.id, "done", 2)]


def test_journal_from_before_reruns_gains_the_runs_column(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE handled (identity TEXT NOT NULL, request_id TEXT NOT NULL,"
            " agent TEXT NOT NULL, action TEXT NOT NULL, state TEXT NOT NULL,"
            " statuscode INTEGER, statusmsg TEXT, data TEXT, started_at REAL NOT NULL,"
            " PRIMARY KEY (identity, request_id)) WITHOUT ROWID"
        )
        db.execute(
            "INSERT INTO handled VALUES ('h', 'r1', 'package', 'install', 'running',"
            " NULL, NULL, NULL, 1.0)"
        )
    db.close()
    journal = Journal(path)
    entry = journal.lookup("h", "r1")
    assert entry is not None
    assert (entry.state, entry.runs) == (EntryState.RUNNING, 1)
    assert journal.rerun("h", "r1")
    assert not journal.rerun("h", "r1")
    journal.close()


@pytest.mark.parametrize(
    ("agent", "action", "idempotent"),
    [("package", name, True) for name in ("install", "uninstall", "purge", "update", "status")]
    + [("service", name, True) for name in ("start", "stop", "restart", "status")]
    + [("rpcutil", name, True) for name in ("ping", "inventory", "get_fact", "agent_interfaces")],
)
def test_each_action_declares_whether_it_is_idempotent(
    agent: str, action: str, idempotent: bool
) -> None:
    declared = AGENT_CLASSES[agent]().actions[action].interface
    assert declared.idempotent is idempotent
    assert declared.describe()["idempotent"] is idempotent
