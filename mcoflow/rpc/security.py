"""Ed25519 signing of message bodies, signature checks, and replay protection.

A signed envelope is JSON ``{"v": 1, "signer": NAME, "body": B64, "sig": B64}``; the
signature covers the raw body bytes, so a receiver checks it before parsing the body.

Key files are PEM (``cryptography``); signing and checking go through libsodium
(PyNaCl), which checks a signature in half the time OpenSSL takes. Every request and
reply is checked at least once, by processes that handle thousands a second. Ed25519
signatures are deterministic, so both produce the same bytes: the wire is unchanged.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import time
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from mcoflow.rpc.messages import MAX_MESSAGE_BYTES

__all__ = [
    "MAX_ENVELOPE_BYTES",
    "ReplayGuard",
    "SecurityError",
    "Signer",
    "Verifier",
    "generate_keypair",
    "load_private_key",
    "load_public_key",
]

# base64 grows the body by 4/3; the rest is the small JSON frame.
MAX_ENVELOPE_BYTES = MAX_MESSAGE_BYTES * 4 // 3 + 4096
_KEY_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,254}$")


class SecurityError(ValueError):
    """A message refused for a security reason (``reason`` says which)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Created with 0600 from the start: never readable by others, not even briefly.
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_pem)
    public_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private_path, public_path


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
        self._key = private_key
        self._sodium = SigningKey(
            private_key.private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
        )

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


class Verifier:
    """Opens envelopes signed by one of the trusted keys."""

    # One broadcast reaches every identity a process serves with identical bytes;
    # remembering recent good envelopes saves repeating the same Ed25519 check.
    CACHE_SIZE = 256

    def __init__(self, trusted: Mapping[str, Ed25519PublicKey]) -> None:
        self._trusted = {_check_name(name): _verify_key(key) for name, key in trusted.items()}
        self._cache: OrderedDict[bytes, tuple[str, bytes]] = OrderedDict()

    @classmethod
    def from_directory(cls, directory: Path) -> Verifier:
        """Trust every ``*.pub`` in ``directory``; the key name is the file stem."""
        return cls({p.stem: load_public_key(p) for p in sorted(Path(directory).glob("*.pub"))})

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._trusted)

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
        key = self._trusted.get(signer)
        if key is None:
            raise SecurityError(f"unknown signer {signer!r}")
        try:
            key.verify(body, signature)
        except BadSignatureError:
            raise SecurityError(f"bad signature from {signer!r}") from None
        self._cache[envelope] = (signer, body)
        if len(self._cache) > self.CACHE_SIZE:
            self._cache.popitem(last=False)
        return signer, body


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
