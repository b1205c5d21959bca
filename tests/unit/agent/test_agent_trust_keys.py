"""The orchestrator's side of a rotation (mcoflow.caller_keys, `mcoflow keys`): a new
key published before it signs, the old one trusted until retired, revocation, the
listing; and a signer that follows its key file (issue 20 item 7)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcoflow.caller_keys import (
    KeysError,
    KeyState,
    list_directory,
    list_keys,
    retire,
    revoke,
    rotate,
    signing_fingerprint,
    use,
)
from mcoflow.orchestrator import ensure_caller_key
from mcoflow.rpc.key_files import FileSigner
from mcoflow.rpc.security import RevokedKey, Verifier


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _states(keys: Path) -> dict[str, KeyState]:
    return {row.name: row.state for row in list_keys(keys, "mcoflow") if row.kind == "caller"}


def test_rotate_publishes_the_new_key_and_keeps_the_old_one_trusted(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    key_file = ensure_caller_key(keys, "mcoflow")
    old = signing_fingerprint(keys, "mcoflow")
    signer = FileSigner(key_file, "mcoflow")
    new = rotate(keys, "mcoflow")
    assert new.name == f"mcoflow+{new.fingerprint[:12]}" and new.state is KeyState.SIGNING
    assert signing_fingerprint(keys, "mcoflow") == new.fingerprint != old
    assert _states(keys) == {"mcoflow": KeyState.TRUSTED, new.name: KeyState.SIGNING}
    agents = Verifier.from_directory(keys / "callers")
    assert signer.refresh() and signer.fingerprint == new.fingerprint
    assert agents.open(signer.sign(b"x")) == ("mcoflow", b"x")

    with pytest.raises(KeysError, match="signs with"):
        retire(keys, "mcoflow", new.name)
    retired = retire(keys, "mcoflow", "mcoflow")
    assert retired.state is KeyState.RETIRED and not (keys / "callers" / "mcoflow.pub").exists()
    # a restart does not publish the signing key a second time under the caller's name
    ensure_caller_key(keys, "mcoflow")
    assert _states(keys) == {"mcoflow": KeyState.RETIRED, new.name: KeyState.SIGNING}

    assert old is not None
    revoked = revoke(keys, "mcoflow", old[:10])  # by the start of its fingerprint
    assert revoked.path == keys / "callers" / "revoked" / "mcoflow.pub"
    assert _states(keys) == {"mcoflow": KeyState.REVOKED, new.name: KeyState.SIGNING}
    rows = list_directory(keys / "callers")
    assert {(r.name, r.state) for r in rows} == {
        (new.name, KeyState.TRUSTED),
        ("mcoflow", KeyState.REVOKED),
    }


def test_a_staged_key_signs_only_after_use(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    ensure_caller_key(keys, "mcoflow")
    old = signing_fingerprint(keys, "mcoflow")
    staged = rotate(keys, "mcoflow", stage=True)
    assert signing_fingerprint(keys, "mcoflow") == old
    assert _states(keys)[staged.name] is KeyState.STAGED
    use(keys, "mcoflow", staged.name)
    assert signing_fingerprint(keys, "mcoflow") == staged.fingerprint
    assert _states(keys)[staged.name] is KeyState.SIGNING
    with pytest.raises(KeysError, match="not a staged key"):
        use(keys, "mcoflow", "mcoflow")

    other = rotate(keys, "mcoflow", stage=True)
    retire(keys, "mcoflow", other.name)  # a staged key given up: its private half goes
    assert not (keys / "orchestrator" / f"{other.name}.key").exists()


def test_revoking_a_trusted_key_refuses_it_and_the_signing_key_cannot_be(
    tmp_path: Path,
) -> None:
    keys = tmp_path / "keys"
    ensure_caller_key(keys, "mcoflow")
    stolen = FileSigner(keys / "orchestrator" / "mcoflow.key", "mcoflow")
    with pytest.raises(KeysError, match="rotate` first"):
        revoke(keys, "mcoflow", "mcoflow")
    rotate(keys, "mcoflow")
    revoke(keys, "mcoflow", "mcoflow")  # straight from trusted: a compromised key
    with pytest.raises(RevokedKey):
        Verifier.from_directory(keys / "callers").open(stolen.sign(b"x"))
    with pytest.raises(KeysError, match="no key named"):
        retire(keys, "mcoflow", "nonesuch")


def test_a_file_signer_follows_its_file_at_most_every_interval(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    clock = Clock()
    signer = FileSigner(ensure_caller_key(keys, "mcoflow"), "mcoflow", clock=clock)
    before = signer.fingerprint
    new = rotate(keys, "mcoflow")
    signer.sign(b"x")
    assert signer.fingerprint == before, "checked at most once a second"
    clock.now += 1.0
    signer.sign(b"x")
    assert signer.fingerprint == new.fingerprint

    (keys / "orchestrator" / "mcoflow.key").write_text("not a key")
    clock.now += 1.0
    signer.sign(b"x")
    assert signer.fingerprint == new.fingerprint, "an unreadable file keeps the key"
