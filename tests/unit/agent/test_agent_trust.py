"""An agent trusts a set of caller keys that it reads again when their directory
changes: keys added and removed without a refusal, revoked keys refused at once and
counted, a reload that fails keeps the keys it had (issue 20 item 7)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mcoflow.agent.daemon import run_agent
from mcoflow.agent.refusals import REFUSED, refusal_reason
from mcoflow.agent.trust import MISS_CHECKS_PER_SECOND, TrustWatcher
from mcoflow.rpc.messages import Request, StatusCode
from mcoflow.rpc.security import (
    RevokedKey,
    Signer,
    TrustSet,
    UntrustedKey,
    Verifier,
    generate_keypair,
)
from mcoflow.rpc.transports.memory import MemoryTransport
from mcoflow.testing import assert_eventually

MakeRequest = Callable[..., Request]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _new_key(folder: Path, name: str) -> tuple[Signer, Path]:
    """A key of caller ``name`` (file stem ``name``, e.g. ops+2) and its public file."""
    private, public = generate_keypair(folder, name.replace("+", "-"))
    return Signer.from_file(private, name.partition("+")[0]), public


@dataclass
class Folders:
    keys: Path
    trusted: Path
    ops: Signer  # trusted as "ops"
    ops_pub: Path
    new: Signer  # another key of ops, not trusted yet
    new_pub: Path


@pytest.fixture
def folders(tmp_path: Path) -> Folders:
    keys, trusted = tmp_path / "keys", tmp_path / "trusted"
    trusted.mkdir()
    ops, ops_pub = _new_key(keys, "ops")
    new, new_pub = _new_key(keys, "ops+2")
    _trust(trusted, ops_pub, "ops")
    return Folders(keys, trusted, ops, ops_pub, new, new_pub)


def _trust(folder: Path, public: Path, name: str) -> Path:
    target = folder / f"{name}.pub"
    target.write_bytes(public.read_bytes())
    return target


def _revoke(folder: Path, name: str) -> None:
    (folder / "revoked").mkdir(exist_ok=True)
    os.replace(folder / f"{name}.pub", folder / "revoked" / f"{name}.pub")


def _refused(reason: str) -> float:
    return float(REFUSED.labels(reason=reason)._value.get())


# -- the trust set ----------------------------------------------------------------------


def test_every_key_of_a_caller_verifies_and_the_revoked_one_is_refused_by_name(
    folders: Folders,
) -> None:
    trusted, old, old_pub, new = folders.trusted, folders.ops, folders.ops_pub, folders.new
    new_pub = folders.new_pub
    _trust(trusted, new_pub, "ops+2")
    verifier = Verifier.from_directory(trusted)
    assert verifier.names == {"ops"}
    assert verifier.open(old.sign(b"a")) == ("ops", b"a")
    assert verifier.open(new.sign(b"b")) == ("ops", b"b")

    # a copy of the revoked key still in the trusted folder does not make it trusted
    _trust(trusted, old_pub, "ops-copy")
    (trusted / "revoked").mkdir()
    (trusted / "revoked" / "ops.pub").write_bytes(old_pub.read_bytes())
    verifier.trust = TrustSet.from_directory(trusted)
    with pytest.raises(RevokedKey, match="revoked key"):
        verifier.open(old.sign(b"a"))  # also the envelope verified (and cached) before
    assert verifier.open(new.sign(b"c")) == ("ops", b"c")
    assert {k.name for k in verifier.trust.keys} == {"ops+2"}


def test_unknown_and_forged_are_untrusted_keys(folders: Folders) -> None:
    keys = folders.keys
    mallory, _ = _new_key(keys, "mallory")
    verifier = Verifier(TrustSet.from_directory(folders.trusted))
    with pytest.raises(UntrustedKey, match="unknown signer 'mallory'"):
        verifier.open(mallory.sign(b"x"))
    forged = Signer.from_file(keys / "mallory.key", "ops")  # mallory's key, ops's name
    with pytest.raises(UntrustedKey, match="bad signature from 'ops'"):
        verifier.open(forged.sign(b"x"))


def test_revoked_is_its_own_refusal_reason() -> None:
    assert refusal_reason("signed with revoked key 0123456789ab of 'ops'") == "revoked_key"


def test_a_key_name_with_a_bad_tag_is_refused(tmp_path: Path) -> None:
    _, public = _new_key(tmp_path, "ops")
    _trust(tmp_path, public, "ops+has space")
    with pytest.raises(ValueError, match="CALLER\\+TAG"):
        TrustSet.from_directory(tmp_path)


# -- reloading ----------------------------------------------------------------------------


def test_a_reload_picks_up_added_removed_and_revoked_keys(
    folders: Folders, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mcoflow.agent")
    trusted, old, new, new_pub = folders.trusted, folders.ops, folders.new, folders.new_pub
    watcher = TrustWatcher(trusted)
    assert not watcher.check(), "nothing changed"

    _trust(trusted, new_pub, "ops+2")
    assert watcher.check()
    assert watcher.verifier.open(new.sign(b"n")) == ("ops", b"n")
    assert "added ops+2" in caplog.text

    _revoke(trusted, "ops")
    assert watcher.check()
    with pytest.raises(RevokedKey):
        watcher.verifier.open(old.sign(b"o"))
    assert "revoked" in caplog.records[-1].getMessage()

    (trusted / "ops+2.pub").unlink()
    assert watcher.check()
    assert watcher.verifier.names == set()
    assert "every request will be refused" in caplog.text


def test_a_reload_that_fails_keeps_the_keys_and_says_why_once(
    tmp_path: Path, folders: Folders, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="mcoflow.agent")
    trusted, ops, ops_pub = folders.trusted, folders.ops, folders.ops_pub
    watcher = TrustWatcher(trusted)

    (trusted / "half.pub").write_bytes(ops_pub.read_bytes()[:20])  # a copy in progress
    assert not watcher.check()
    assert not watcher.check(force=True)
    assert watcher.verifier.open(ops.sign(b"x")) == ("ops", b"x")
    failures = [r for r in caplog.records if "keeping the 1 trusted keys" in r.getMessage()]
    assert len(failures) == 1 and "half.pub" in failures[0].getMessage()

    (trusted / "half.pub").unlink()
    trusted.rename(tmp_path / "elsewhere")  # a deployment swapping the folder
    assert not watcher.check()
    assert watcher.verifier.names == {"ops"}
    assert "cannot list" in caplog.records[-1].getMessage()


def test_unknown_keys_look_at_the_folder_at_a_bounded_rate(tmp_path: Path) -> None:
    _, public = _new_key(tmp_path / "keys", "ops")
    trusted = tmp_path / "trusted"
    trusted.mkdir()
    clock = Clock()
    watcher = TrustWatcher(trusted, clock=clock)
    looks = 0
    original = watcher.check

    def counted(*, force: bool = False) -> bool:
        nonlocal looks
        looks += 1
        return original(force=force)

    watcher.check = counted  # type: ignore[method-assign]
    for _ in range(100):
        watcher.on_unknown_key()
    assert looks == MISS_CHECKS_PER_SECOND
    clock.now += 1.0
    _trust(trusted, public, "ops")
    assert watcher.on_unknown_key(), "a second later it looks again, and finds the key"


# -- in the daemon ------------------------------------------------------------------------


async def test_a_key_added_a_moment_ago_is_accepted_and_a_revoked_one_refused(
    harness_factory: Any, make_request: MakeRequest, tmp_path: Path
) -> None:
    # a long interval: only the look on an unknown key and SIGHUP can see the changes
    harness = await harness_factory(trusted_keys_reload=3600.0)
    trusted = harness.keys.trusted
    new, new_pub = _new_key(tmp_path / "more", "ops+2")
    _trust(trusted, new_pub, "ops+2")
    request = make_request()
    await harness.send(request, signer=new)
    await assert_eventually(lambda: _one_reply(harness, request), timeout=5.0)

    revoked_before = _refused("revoked_key")
    _revoke(trusted, "ops")
    harness.daemon.reload_trusted_keys()  # what SIGHUP does
    install = make_request("package", "install", {"package": "hello"})
    await harness.send(install)  # signed with the revoked key
    await assert_eventually(lambda: _counted(revoked_before), timeout=5.0)
    assert harness.replies_to(install) == []
    assert harness.fleet.install_count("web1") == 0, "nothing was run"
    again = make_request()
    await harness.send(again, signer=new)
    await assert_eventually(lambda: _one_reply(harness, again), timeout=5.0)


async def test_the_daemon_looks_at_the_folder_every_interval(
    harness_factory: Any, make_request: MakeRequest
) -> None:
    harness = await harness_factory(trusted_keys_reload=0.05)
    revoked_before = _refused("revoked_key")
    _revoke(harness.keys.trusted, "ops")
    await assert_eventually(lambda: _not_trusted(harness), timeout=2.0)
    request = make_request()
    await harness.send(request)
    await assert_eventually(lambda: _counted(revoked_before), timeout=5.0)
    assert harness.replies_to(request) == []


async def test_sighup_reads_the_keys_again(
    harness_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mcoflow.agent")
    harness = await harness_factory()  # for its settings and broker
    stop = asyncio.Event()
    transport = MemoryTransport(harness.broker)
    await transport.connect()
    config = harness.daemon.config.model_copy(
        update={"identity": "web2", "trusted_keys_reload": 3600.0}
    )
    caplog.clear()  # the harness's daemon said "agent ready" already
    running = asyncio.create_task(run_agent(config, transport=transport, stop=stop))
    try:
        await assert_eventually(lambda: _logged(caplog, "agent ready"), timeout=5.0)
        os.kill(os.getpid(), signal.SIGHUP)
        await assert_eventually(lambda: _logged(caplog, "SIGHUP: reading"), timeout=5.0)
    finally:
        stop.set()
        await running
        await transport.close()


def _logged(caplog: pytest.LogCaptureFixture, text: str) -> None:
    assert any(text in r.getMessage() for r in caplog.records)


def _one_reply(harness: Any, request: Request) -> None:
    replies = harness.replies_to(request)
    assert len(replies) == 1 and replies[0].statuscode is StatusCode.OK, replies


def _counted(before: float) -> None:
    assert _refused("revoked_key") > before


def _not_trusted(harness: Any) -> None:
    assert harness.daemon.verifier.names == set()
