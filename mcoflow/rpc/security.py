"""Ed25519 signing of message bodies, signature checks, and replay protection.

A signed envelope is JSON ``{"v": 1, "signer": NAME, "body": B64, "sig": B64}``; the
signature covers the raw body bytes, so a receiver checks it before parsing the body.

Key files are PEM (``cryptography``); signing and checking go through libsodium
(PyNaCl), which checks a signature in half the time OpenSSL takes. Every request and
reply is checked at least once, by processes that handle thousands a second. Ed25519
signatures are deterministic, so both produce the same bytes: the wire is unchanged.

Key rotation. A caller may have several trusted keys at once: a directory's
``NAME.pub`` and ``NAME+TAG.pub`` are all keys of the caller NAME (the envelope still
names the caller only, so the wire is unchanged), and a request verifies against any
of them. Keys in the directory's ``revoked/`` folder are refused, under whatever name
a copy of them is also trusted, with a refusal of their own ("revoked key").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from mcoflow.rpc.messages import MAX_MESSAGE_BYTES

__all__ = [
    "MAX_ENVELOPE_BYTES",
    "ReplayGuard",
    "RevokedKey",
    "SecurityError",
    "Signer",
    "TrustSet",
    "TrustedKey",
    "UntrustedKey",
    "Verifier",
    "fingerprint",
    "generate_keypair",
    "load_private_key",
    "load_public_key",
    "public_pem",
    "write_private_key",
]

# base64 grows the body by 4/3; the rest is the small JSON frame.
MAX_ENVELOPE_BYTES = MAX_MESSAGE_BYTES * 4 // 3 + 4096
_KEY_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,254}$")
# NAME+TAG.pub: one more key of the caller NAME ('+' is in no caller or key name)
TAG_SEPARATOR = "+"
_KEY_TAG = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
REVOKED_FOLDER = "revoked"


class SecurityError(ValueError):
    """A message refused for a security reason (``reason`` says which)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UntrustedKey(SecurityError):
    """No trusted key verifies the envelope (unknown signer or bad signature): a key
    added since the trusted set was read would, so the set is worth re-reading."""


class RevokedKey(SecurityError):
    """The envelope is signed with a revoked key."""


def _check_name(name: str) -> str:
    if not _KEY_NAME.match(name):
        raise ValueError(f"invalid key name {name!r}: letters, digits and _.:@- only")
    return name


def generate_keypair(directory: Path, name: str) -> tuple[Path, Path]:
    """Write ``name.key`` (PEM private key, mode 0600) and ``name.pub`` in ``directory``."""
    _check_name(name)
    directory.mkdir(parents=True, exist_ok=True)
    private_path, public_path = directory / f"{name}.key", directory / f"{name}.pub"
    key = Ed25519PrivateKey.generate()
    write_private_key(private_path, key)
    public_path.write_bytes(public_pem(key.public_key()))
    return private_path, public_path


def write_private_key(path: Path, key: Ed25519PrivateKey) -> None:
    """A new PEM file (it must not exist), mode 0600."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Created with 0600 from the start: never readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def fingerprint(key: Ed25519PublicKey) -> str:
    """SHA-256 of the raw public key, in hex: what `mcoflow keys list` shows."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def load_private_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise SecurityError(f"{path}: not an Ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(Path(path).read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise SecurityError(f"{path}: not an Ed25519 public key")
    return key


class Signer:
    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        self.name = _check_name(name)
        self._use(private_key)

    def _use(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self._sodium = SigningKey(
            private_key.private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
        )
        self.fingerprint = fingerprint(private_key.public_key())

    @classmethod
    def from_file(cls, path: Path, name: str | None = None) -> Signer:
        return cls(name or Path(path).stem, load_private_key(path))

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._key.public_key()

    def sign(self, body: bytes) -> bytes:
        signature = self._sodium.sign(body).signature
        envelope = {
            "v": 1,
            "signer": self.name,
            "body": base64.b64encode(body).decode(),
            "sig": base64.b64encode(signature).decode(),
        }
        return json.dumps(envelope, separators=(",", ":")).encode()


@dataclass(frozen=True)
class TrustedKey:
    """A public key and the name it is trusted under: ``CALLER`` or ``CALLER+TAG``."""

    name: str
    fingerprint: str
    key: VerifyKey

    @property
    def caller(self) -> str:
        return self.name.partition(TAG_SEPARATOR)[0]

    @classmethod
    def of(cls, name: str, key: Ed25519PublicKey) -> TrustedKey:
        caller, separator, tag = name.partition(TAG_SEPARATOR)
        _check_name(caller)
        if separator and not _KEY_TAG.match(tag):
            raise ValueError(f"invalid key name {name!r}: CALLER+TAG, TAG of letters, digits _.-")
        return cls(name, fingerprint(key), _verify_key(key))

    @classmethod
    def from_file(cls, path: Path) -> TrustedKey:
        try:
            return cls.of(path.stem, load_public_key(path))
        except SecurityError:
            raise
        except ValueError as exc:  # the PEM parser's message does not name the file
            raise ValueError(f"{path.name}: {exc}") from None


@dataclass(frozen=True)
class TrustSet:
    """The keys requests may be signed with, and the revoked ones (refused by name)."""

    keys: tuple[TrustedKey, ...] = ()
    revoked: tuple[TrustedKey, ...] = ()

    @classmethod
    def of(cls, trusted: Mapping[str, Ed25519PublicKey]) -> TrustSet:
        return cls(tuple(TrustedKey.of(name, key) for name, key in trusted.items()))

    @classmethod
    def from_directory(cls, directory: Path) -> TrustSet:
        """Every ``*.pub`` of ``directory`` (its stem names the key), except those whose
        key is also in ``directory/revoked/``."""
        directory = Path(directory)
        keys = [TrustedKey.from_file(p) for p in sorted(directory.glob("*.pub"))]
        revoked_dir = directory / REVOKED_FOLDER
        revoked = [TrustedKey.from_file(p) for p in sorted(revoked_dir.glob("*.pub"))]
        banned = {k.fingerprint for k in revoked}
        return cls(tuple(k for k in keys if k.fingerprint not in banned), tuple(revoked))

    @property
    def callers(self) -> frozenset[str]:
        return frozenset(k.caller for k in self.keys)

    def summary(self) -> tuple[frozenset[tuple[str, str]], frozenset[str]]:
        """(name, fingerprint) of the trusted keys and the revoked fingerprints."""
        return (
            frozenset((k.name, k.fingerprint) for k in self.keys),
            frozenset(k.fingerprint for k in self.revoked),
        )


class Verifier:
    """Opens envelopes signed by one of the trusted keys; ``trust`` can be replaced
    while it runs (a reloaded directory)."""

    # One broadcast reaches every identity a process serves with identical bytes;
    # remembering recent good envelopes saves repeating the same Ed25519 check.
    CACHE_SIZE = 256

    def __init__(self, trusted: Mapping[str, Ed25519PublicKey] | TrustSet) -> None:
        self.trust = trusted if isinstance(trusted, TrustSet) else TrustSet.of(trusted)

    @classmethod
    def from_directory(cls, directory: Path) -> Verifier:
        """Trust every ``*.pub`` in ``directory`` (see TrustSet.from_directory)."""
        return cls(TrustSet.from_directory(directory))

    @property
    def trust(self) -> TrustSet:
        return self._trust

    @trust.setter
    def trust(self, trust: TrustSet) -> None:
        by_caller: dict[str, list[TrustedKey]] = {}
        for key in trust.keys:
            by_caller.setdefault(key.caller, []).append(key)
        revoked: dict[str, list[TrustedKey]] = {}
        for key in trust.revoked:
            revoked.setdefault(key.caller, []).append(key)
        self._trust, self._keys, self._revoked = trust, by_caller, revoked
        # an envelope verified with a key no longer trusted must be checked again
        self._cache: OrderedDict[bytes, tuple[str, bytes]] = OrderedDict()

    @property
    def names(self) -> frozenset[str]:
        """The callers with at least one trusted key."""
        return frozenset(self._keys)

    def open(self, envelope: bytes) -> tuple[str, bytes]:
        """Return (signer, body) of a genuine envelope; raise SecurityError otherwise."""
        if not isinstance(envelope, bytes | bytearray | memoryview):
            raise SecurityError("envelope must be bytes")
        envelope = bytes(envelope)
        cached = self._cache.get(envelope)
        if cached is not None:
            self._cache.move_to_end(envelope)
            return cached
        signer, body, signature = unpack_envelope(envelope)
        keys = self._keys.get(signer, [])
        for index, key in enumerate(keys):
            if _verifies(key, body, signature):
                if index:  # during a rotation: the key in use is tried first from now on
                    keys.insert(0, keys.pop(index))
                self._cache[envelope] = (signer, body)
                if len(self._cache) > self.CACHE_SIZE:
                    self._cache.popitem(last=False)
                return signer, body
        for key in self._revoked.get(signer, ()):
            if _verifies(key, body, signature):
                raise RevokedKey(f"signed with revoked key {key.fingerprint[:12]} of {signer!r}")
        if not keys:
            raise UntrustedKey(f"unknown signer {signer!r}")
        raise UntrustedKey(f"bad signature from {signer!r}")


def _verifies(key: TrustedKey, body: bytes, signature: bytes) -> bool:
    try:
        key.key.verify(body, signature)
    except BadSignatureError:
        return False
    return True


def _verify_key(key: Ed25519PublicKey) -> VerifyKey:
    return VerifyKey(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def unpack_envelope(envelope: bytes) -> tuple[str, bytes, bytes]:
    """Split an envelope into (signer, body, signature) WITHOUT checking the signature."""
    if len(envelope) > MAX_ENVELOPE_BYTES:
        raise SecurityError(f"envelope of {len(envelope)} bytes exceeds {MAX_ENVELOPE_BYTES}")
    try:
        frame = json.loads(envelope)
    except (ValueError, RecursionError):
        raise SecurityError("not a signed envelope: invalid JSON") from None
    if not isinstance(frame, dict) or frame.get("v") != 1:
        raise SecurityError("not a signed envelope (version 1 expected)")
    signer, body, signature = frame.get("signer"), frame.get("body"), frame.get("sig")
    if not isinstance(signer, str) or not _KEY_NAME.match(signer):
        raise SecurityError("envelope without a valid signer name")
    if not isinstance(body, str) or not isinstance(signature, str):
        raise SecurityError("unsigned envelope: body and sig must be base64 strings")
    try:
        raw_body = base64.b64decode(body, validate=True)
        raw_signature = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        raise SecurityError("envelope body or signature is not valid base64") from None
    if len(raw_signature) != 64:
        raise SecurityError("envelope signature has the wrong length")
    return signer, raw_body, raw_signature


class ReplayGuard:
    """Refuses expired, future-dated and already seen request ids.

    An id only needs remembering until its request expires, after which the time
    check refuses it anyway; that bounds memory to the ids of one ttl window
    (and ``max_entries`` caps even that).
    """

    def __init__(self, *, clock_skew: float = 60.0, max_entries: int = 1_000_000) -> None:
        self.clock_skew = clock_skew
        self.max_entries = max_entries
        self._seen: dict[str, float] = {}  # id -> time after which it may be forgotten
        self._sweep_at = 0.0

    def __len__(self) -> int:
        return len(self._seen)

    def check(self, request_id: str, time: float, ttl: float, now: float | None = None) -> None:
        now = _now() if now is None else now
        if time > now + self.clock_skew:
            raise SecurityError(f"request {request_id} is dated {time - now:.0f}s in the future")
        expires = time + ttl
        if now > expires:
            raise SecurityError(f"request {request_id} expired {now - expires:.0f}s ago")
        if request_id in self._seen:
            raise SecurityError(f"request {request_id} was already received (replay)")
        self._sweep(now)
        if len(self._seen) >= self.max_entries:
            raise SecurityError("replay guard is full; refusing until old ids expire")
        # Keep until no clock-skew-tolerant check could accept it again.
        self._seen[request_id] = expires + self.clock_skew

    def forget(self, request_id: str) -> None:
        """Accept ``request_id`` again (its handling was interrupted before it ran)."""
        self._seen.pop(request_id, None)

    def _sweep(self, now: float) -> None:
        if now < self._sweep_at and len(self._seen) < self.max_entries:
            return
        self._sweep_at = now + 1.0
        stale = [rid for rid, until in self._seen.items() if until < now]
        for rid in stale:
            del self._seen[rid]


def _now() -> float:
    return time.time()
