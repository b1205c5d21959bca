"""The orchestrator's caller keys: rotation, retirement, revocation and their listing.

Under ``keys_dir`` (see orchestrator.py for the rest of the layout)::

    orchestrator/<caller>.key        the signing key: always this file (a rotation replaces it)
    orchestrator/<caller>+<tag>.key  a staged key (`rotate --stage`): trusted, not signing yet
    callers/<caller>[+<tag>].pub     the keys agents trust, several per caller during a rotation
    callers/revoked/<name>.pub       revoked keys: agents refuse requests signed with them
    retired/<name>.pub               keys agents no longer trust, kept here to revoke them later

``<tag>`` is the start of the key's fingerprint. Every file is written under a temporary
name and renamed into place, so an agent or a signer never reads half a key.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mcoflow.rpc.security import (
    REVOKED_FOLDER,
    TAG_SEPARATOR,
    TrustedKey,
    fingerprint,
    load_private_key,
    load_public_key,
    public_pem,
    write_private_key,
)

__all__ = [
    "KeyInfo",
    "KeyState",
    "KeysError",
    "list_directory",
    "list_keys",
    "publish_signing_key",
    "retire",
    "revoke",
    "rotate",
    "use",
]

log = logging.getLogger("mcoflow.keys")

TAG_LENGTH = 12
MIN_FINGERPRINT_PREFIX = 8


class KeysError(ValueError):
    """A key operation that cannot be done; the message says why."""


class KeyState(StrEnum):
    SIGNING = "signing"  # the orchestrator signs requests with it
    STAGED = "staged"  # published for the agents, signing after `mcoflow keys use`
    TRUSTED = "trusted"  # agents accept it, the orchestrator no longer signs with it
    RETIRED = "retired"  # agents no longer trust it
    REVOKED = "revoked"  # agents refuse it, wherever a copy of it is trusted


@dataclass(frozen=True)
class KeyInfo:
    kind: str  # caller | host
    name: str
    fingerprint: str
    state: KeyState
    path: Path


def _folders(keys_dir: Path) -> tuple[Path, Path, Path, Path]:
    """orchestrator/, callers/, callers/revoked/, retired/"""
    callers = keys_dir / "callers"
    return keys_dir / "orchestrator", callers, callers / REVOKED_FOLDER, keys_dir / "retired"


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def _write_private_atomic(path: Path, key: Ed25519PrivateKey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    write_private_key(temporary, key)
    os.replace(temporary, path)


def _keys_in(folder: Path) -> list[tuple[Path, TrustedKey]]:
    return [(p, TrustedKey.from_file(p)) for p in sorted(folder.glob("*.pub"))]


def signing_fingerprint(keys_dir: Path, caller: str) -> str | None:
    path = _folders(keys_dir)[0] / f"{caller}.key"
    if not path.exists():
        return None
    return fingerprint(load_private_key(path).public_key())


def publish_signing_key(keys_dir: Path, caller: str) -> None:
    """Put the public half of ``caller``'s signing key in callers/, unless it is there
    already (under any name) or revoked."""
    orchestrator, callers, revoked, _ = _folders(keys_dir)
    public = load_private_key(orchestrator / f"{caller}.key").public_key()
    mine = fingerprint(public)
    if any(k.fingerprint == mine for _, k in _keys_in(revoked)):
        log.warning("the signing key of %s is revoked: agents refuse its requests", caller)
        return
    if any(k.fingerprint == mine for _, k in _keys_in(callers)):
        return
    name = caller if not (callers / f"{caller}.pub").exists() else _tagged(caller, mine)
    _write_atomic(callers / f"{name}.pub", public_pem(public))


def _tagged(caller: str, key_fingerprint: str) -> str:
    return f"{caller}{TAG_SEPARATOR}{key_fingerprint[:TAG_LENGTH]}"


def rotate(keys_dir: Path, caller: str, *, stage: bool = False) -> KeyInfo:
    """A new key for ``caller``, published in callers/ first; then the signing key (at
    once, or with ``stage`` after `use`). The old key stays trusted until retired."""
    orchestrator, callers, _, _ = _folders(keys_dir)
    if signing_fingerprint(keys_dir, caller) is None:
        raise KeysError(f"{caller} has no signing key yet: run `mcoflow keys init`")
    key = Ed25519PrivateKey.generate()
    new = fingerprint(key.public_key())
    name = _tagged(caller, new)
    _write_atomic(callers / f"{name}.pub", public_pem(key.public_key()))
    if stage:
        _write_private_atomic(orchestrator / f"{name}.key", key)
        _write_atomic(orchestrator / f"{name}.pub", public_pem(key.public_key()))
        return KeyInfo("caller", name, new, KeyState.STAGED, callers / f"{name}.pub")
    _write_private_atomic(orchestrator / f"{caller}.key", key)
    _write_atomic(orchestrator / f"{caller}.pub", public_pem(key.public_key()))
    return KeyInfo("caller", name, new, KeyState.SIGNING, callers / f"{name}.pub")


def use(keys_dir: Path, caller: str, reference: str) -> KeyInfo:
    """Sign with the staged key ``reference`` (name or fingerprint) from now on."""
    orchestrator, callers, _, _ = _folders(keys_dir)
    path, key = _find(reference, callers)
    staged = orchestrator / f"{key.name}.key"
    if key.caller != caller or TAG_SEPARATOR not in key.name or not staged.exists():
        raise KeysError(f"{key.name} is not a staged key of {caller}")
    os.replace(staged, orchestrator / f"{caller}.key")
    os.replace(staged.with_suffix(".pub"), orchestrator / f"{caller}.pub")
    return KeyInfo("caller", key.name, key.fingerprint, KeyState.SIGNING, path)


def retire(keys_dir: Path, caller: str, reference: str) -> KeyInfo:
    """Agents stop trusting ``reference`` (name or fingerprint): moved to retired/."""
    _, callers, _, retired = _folders(keys_dir)
    path, key = _find(reference, callers)
    _refuse_signing(keys_dir, caller, key, "retire")
    return _move(keys_dir, path, key, retired, KeyState.RETIRED)


def revoke(keys_dir: Path, caller: str, reference: str) -> KeyInfo:
    """Agents refuse ``reference`` (a trusted or retired key, by name or fingerprint)
    from their next look at the directory: moved to callers/revoked/."""
    _, callers, revoked, retired = _folders(keys_dir)
    path, key = _find(reference, callers, retired)
    _refuse_signing(keys_dir, caller, key, "revoke")
    return _move(keys_dir, path, key, revoked, KeyState.REVOKED)


def _refuse_signing(keys_dir: Path, caller: str, key: TrustedKey, verb: str) -> None:
    if key.fingerprint == signing_fingerprint(keys_dir, caller):
        raise KeysError(
            f"{key.name} is the key {caller} signs with: `mcoflow keys rotate` first, then "
            f"{verb} it"
        )


def _move(keys_dir: Path, path: Path, key: TrustedKey, folder: Path, state: KeyState) -> KeyInfo:
    target = folder / path.name
    if target.exists() and TrustedKey.from_file(target).fingerprint != key.fingerprint:
        target = folder / f"{_tagged(key.caller, key.fingerprint)}.pub"
    _write_atomic(target, path.read_bytes())
    path.unlink()
    # a staged key that will never sign: its private half goes
    staged = _folders(keys_dir)[0] / f"{key.name}.key"
    if TAG_SEPARATOR in key.name and staged.exists():
        staged.unlink()
        staged.with_suffix(".pub").unlink(missing_ok=True)
    return KeyInfo("caller", key.name, key.fingerprint, state, target)


def _find(reference: str, *folders: Path) -> tuple[Path, TrustedKey]:
    candidates = [found for folder in folders for found in _keys_in(folder)]
    named = [c for c in candidates if c[1].name == reference]
    if named:
        return named[0]
    prefix = reference.lower()
    if len(prefix) >= MIN_FINGERPRINT_PREFIX and all(c in "0123456789abcdef" for c in prefix):
        matches = [c for c in candidates if c[1].fingerprint.startswith(prefix)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise KeysError(f"fingerprint {reference} is the start of several keys")
    known = ", ".join(sorted(c[1].name for c in candidates)) or "none"
    raise KeysError(f"no key named or with fingerprint {reference!r} (keys: {known})")


def list_keys(keys_dir: Path, caller: str) -> list[KeyInfo]:
    """Every caller key under ``keys_dir`` with its state, then the host keys."""
    orchestrator, callers, revoked, retired = _folders(keys_dir)
    signing = signing_fingerprint(keys_dir, caller)
    rows: list[KeyInfo] = []
    for path, key in _keys_in(callers):
        if key.fingerprint == signing:
            state = KeyState.SIGNING
        elif TAG_SEPARATOR in key.name and (orchestrator / f"{key.name}.key").exists():
            state = KeyState.STAGED
        else:
            state = KeyState.TRUSTED
        rows.append(KeyInfo("caller", key.name, key.fingerprint, state, path))
    if signing is not None and all(r.fingerprint != signing for r in rows):
        path = orchestrator / f"{caller}.key"
        rows.append(KeyInfo("caller", caller, signing, KeyState.SIGNING, path))
    for folder, state in ((retired, KeyState.RETIRED), (revoked, KeyState.REVOKED)):
        rows.extend(KeyInfo("caller", k.name, k.fingerprint, state, p) for p, k in _keys_in(folder))
    for path in sorted((keys_dir / "hosts").glob("*.pub")):
        key_fingerprint = fingerprint(load_public_key(path))
        rows.append(KeyInfo("host", path.stem, key_fingerprint, KeyState.TRUSTED, path))
    return rows


def list_directory(directory: Path) -> list[KeyInfo]:
    """A trusted-keys directory as an agent reads it."""
    revoked_rows = [
        KeyInfo("caller", k.name, k.fingerprint, KeyState.REVOKED, p)
        for p, k in _keys_in(directory / REVOKED_FOLDER)
    ]
    banned = {r.fingerprint for r in revoked_rows}
    rows = [
        KeyInfo(
            "caller",
            k.name,
            k.fingerprint,
            KeyState.REVOKED if k.fingerprint in banned else KeyState.TRUSTED,
            p,
        )
        for p, k in _keys_in(directory)
    ]
    return rows + revoked_rows
