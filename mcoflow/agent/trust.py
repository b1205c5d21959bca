"""The caller keys an agent trusts, read again when their directory changes.

Checked every ``trusted_keys_reload`` seconds, at once on SIGHUP, and when a request
is signed with a key the agent does not know (the key may have been added a moment
ago, before the next check: a rotation then refuses nothing). A reload that fails (an
unreadable or half-written key, a missing directory) keeps the keys loaded before and
says why, once per cause.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

from mcoflow.rpc.key_files import Stamp, directory_stamp
from mcoflow.rpc.security import TrustSet, Verifier

log = logging.getLogger("mcoflow.agent")

# re-reads the directory may cost when unknown keys arrive: a flood of forged
# messages must not turn into a flood of directory listings
MISS_CHECKS_PER_SECOND = 20.0


class TrustWatcher:
    def __init__(self, directory: Path, *, clock: Callable[[], float] = time.monotonic) -> None:
        """Reads the keys now: an unreadable key raises (the agent does not start); a
        missing directory is no key (yet)."""
        self.directory = Path(directory)
        self._clock = clock
        self._stamp: Stamp | None = None
        if self.directory.is_dir():
            self._stamp = directory_stamp(self.directory)
        self.verifier = Verifier(TrustSet.from_directory(self.directory))
        self._failure: str | None = None
        self._tokens = MISS_CHECKS_PER_SECOND
        self._refilled = clock()

    def check(self, *, force: bool = False) -> bool:
        """Read the keys again if the directory changed (``force``: in any case); True
        if the trusted or revoked keys changed."""
        try:
            stamp = directory_stamp(self.directory)
        except OSError as exc:
            self._failed(f"cannot list {self.directory}: {exc}")
            return False
        if stamp == self._stamp and not force:
            return False
        # a failure is not retried until the directory changes again (a file being written)
        self._stamp = stamp
        try:
            trust = TrustSet.from_directory(self.directory)
        except (OSError, ValueError) as exc:
            self._failed(f"cannot read the trusted keys in {self.directory}: {exc}")
            return False
        self._failure = None
        before = self.verifier.trust
        if trust.summary() == before.summary():
            return False
        self.verifier.trust = trust
        self._log_change(before, trust)
        return True

    def on_unknown_key(self) -> bool:
        """A request no trusted key verifies: check the directory now (rate-limited);
        True if the keys changed, so the request is worth checking again."""
        now = self._clock()
        self._tokens = min(
            MISS_CHECKS_PER_SECOND,
            self._tokens + (now - self._refilled) * MISS_CHECKS_PER_SECOND,
        )
        self._refilled = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return self.check()

    async def watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.check()

    def _failed(self, reason: str) -> None:
        if reason != self._failure:
            self._failure = reason
            log.warning(
                "%s; keeping the %d trusted keys loaded before",
                reason,
                len(self.verifier.trust.keys),
            )

    def _log_change(self, before: TrustSet, after: TrustSet) -> None:
        (old_keys, old_revoked), (new_keys, new_revoked) = before.summary(), after.summary()
        added = sorted(f"{n} ({fp[:12]})" for n, fp in new_keys - old_keys)
        removed = sorted(f"{n} ({fp[:12]})" for n, fp in old_keys - new_keys)
        revoked = sorted(fp[:12] for fp in new_revoked - old_revoked)
        log.info(
            "trusted keys reloaded from %s: %d trusted%s%s%s",
            self.directory,
            len(after.keys),
            f"; added {', '.join(added)}" if added else "",
            f"; no longer trusted {', '.join(removed)}" if removed else "",
            f"; revoked {', '.join(revoked)}" if revoked else "",
        )
        if not after.keys:
            log.warning("no trusted keys left in %s: every request will be refused", self.directory)
