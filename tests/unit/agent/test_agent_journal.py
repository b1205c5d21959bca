from __future__ import annotations

from pathlib import Path

from mcoflow.agent.journal import EntryState, Journal


def test_first_begin_records_running_and_repeat_returns_the_entry(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    assert journal.begin("web1", "r1", "package", "install", now=100.0) is None
    again = journal.begin("web1", "r1", "package", "install", now=101.0)
    assert again is not None
    assert again.state is EntryState.RUNNING
    assert again.started_at == 100.0
    journal.close()


def test_finished_entry_keeps_the_reply(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    journal.begin("web1", "r1", "package", "install")
    journal.finish("web1", "r1", 0, "OK", {"changed": True, "version": "2.10-3"})
    journal.close()
    reopened = Journal(tmp_path / "j.sqlite")
    entry = reopened.lookup("web1", "r1")
    assert entry is not None
    assert (entry.state, entry.statuscode, entry.statusmsg) == (EntryState.DONE, 0, "OK")
    assert entry.data == {"changed": True, "version": "2.10-3"}
    reopened.close()


def test_same_id_on_two_identities_is_two_entries() -> None:
    journal = Journal()
    assert journal.begin("sim-1", "r1", "package", "install") is None
    assert journal.begin("sim-2", "r1", "package", "install") is None
    assert len(journal) == 2


def test_prune_forgets_entries_past_retention() -> None:
    journal = Journal(retention=10.0)
    journal.begin("web1", "old", "package", "install", now=100.0)
    journal.begin("web1", "new", "package", "install", now=105.0)
    assert journal.prune(now=112.0) == 1
    assert journal.lookup("web1", "old") is None
    assert journal.lookup("web1", "new") is not None


def test_a_journal_syncs_every_commit_unless_told_not_to(tmp_path: Path) -> None:
    synced = Journal(tmp_path / "a.sqlite")
    relaxed = Journal(tmp_path / "b.sqlite", synced=False)
    assert synced.synced and not relaxed.synced
    synced.close()
    relaxed.close()
