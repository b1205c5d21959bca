"""Key files that change while a process runs: the signing key a rotation replaces, and
the trusted-keys directory an agent re-reads."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from mcoflow.rpc.security import (
    REVOKED_FOLDER,
    Signer,
    fingerprint,
    load_private_key,
)

__all__ = ["FileSigner", "directory_stamp"]

log = logging.getLogger("mcoflow.rpc.security")

Stamp = tuple[tuple[str, int, int, int], ...]


class FileSigner(Signer):
    """Signs with the key in ``path``, read again when the file changes (checked at most
    every ``check_interval`` s): a key replaced by `mcoflow keys rotate` is used without
    a restart. A file that cannot be read keeps the key in use (and says why once)."""

    def __init__(
        self,
        path: Path,
        name: str | None = None,
        *,
        check_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.check_interval = check_interval
        self._clock = clock
        self._stamp: tuple[int, int, int] | None = _file_stamp(self.path)
        super().__init__(name or self.path.stem, load_private_key(self.path))
        self._checked = clock()

    def sign(self, body: bytes) -> bytes:
        if self._clock() - self._checked >= self.check_interval:
            self.refresh()
        return super().sign(body)

    def refresh(self) -> bool:
        """Read the key file again if it changed; True if the key did."""
        self._checked = self._clock()
        try:
            stamp = _file_stamp(self.path)
        except OSError:
            stamp = None
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            key = load_private_key(self.path)
        except (OSError, ValueError) as exc:
            log.warning(
                "signing key %s unreadable (%s); still signing with %s",
                self.path,
                exc,
                self.fingerprint[:12],
            )
            return False
        if fingerprint(key.public_key()) == self.fingerprint:
            return False
        self._use(key)
        log.info(
            "%s signs with key %s from now on (%s)", self.name, self.fingerprint[:12], self.path
        )
        return True


def _file_stamp(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def directory_stamp(directory: Path) -> Stamp:
    """What changes when a key is added, removed, replaced or revoked in ``directory``:
    (name, inode, mtime, size) of its ``*.pub`` and of those in its ``revoked/``. A
    listing, not the folder's mtime, whose resolution can hide a quick change."""
    entries = []
    for folder, prefix in ((Path(directory), ""), (Path(directory) / REVOKED_FOLDER, "revoked/")):
        try:
            listing = list(os.scandir(folder))
        except FileNotFoundError:
            if prefix:
                continue
            raise
        for entry in listing:
            if entry.name.endswith(".pub"):
                stat = entry.stat()
                entries.append((prefix + entry.name, stat.st_ino, stat.st_mtime_ns, stat.st_size))
    return tuple(sorted(entries))
