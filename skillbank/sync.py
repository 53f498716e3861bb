"""Replicas: a bank's clone follows the shared git remote, so skills merged elsewhere are used
without a restart.

Several ``skillbank serve --http`` processes (replicas), each in its own clone of one git
remote and all writing to one ledger (``ledger_url``), serve the same skills. What agents are
offered is always the checked-out branch (ARCHITECTURE.md), so a replica picks up a merge by
fetching the remote and fast-forwarding its checked-out branch: `sync` does that once,
`Follower` does it every ``sync_interval_s`` seconds and whenever `Follower.trigger` is
called (the ``POST /sync`` webhook of ``serve --http``). The server already re-reads the
library on every listing and announces changes to connected clients, so nothing restarts.

A replica never merges: when its branch has commits the remote lacks (someone committed on
the replica itself with ``--branch current``), the fast-forward is refused and reported, and
the replica keeps serving what it has. The fast-forward runs under the bank's writer lock, so
it never interleaves with a commit of this bank.

Learners on different replicas never race on one branch: with ``replica`` set, every review
branch a replica writes is named ``skillbank/<replica>/<verb>-...`` (`skillbank.library`), so
two replicas learning the same runs in the same second still write (and push) two branches.
Stage changes, decided from the shared ledger's counts, are commits too: exactly one process
applies them, the replica named by ``stages_updater`` (or ``skillbank stages`` run as a job,
with no replica name); the others refuse (`skillbank.lifecycle.Lifecycle.update_stages`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from skillbank.errors import ConfigError
from skillbank.library import SkillLibrary, git

__all__ = ["Follower", "SyncResult", "sync"]


@dataclass(frozen=True)
class SyncResult:
    """What one fetch and fast-forward did."""

    #: True when the checked-out branch moved.
    updated: bool
    #: The checked-out commit before and after.
    before: str
    after: str
    #: What was followed, ``REMOTE/BRANCH``.
    source: str
    #: Why nothing moved although the remote has new commits (diverged, fetch failed), or None.
    error: str | None = None
    #: When it ran (seconds since the epoch).
    at: float = 0.0

    def to_json(self) -> dict[str, object]:
        """As JSON data (the webhook's answer)."""
        return {
            "ok": self.error is None,
            "updated": self.updated,
            "before": self.before,
            "after": self.after,
            "source": self.source,
            "error": self.error,
        }


def _source(root: Path, sync_from: str) -> tuple[str, str]:
    """(remote, branch) to follow: ``sync_from``, else the checked-out branch's upstream."""
    if sync_from:
        remote, _, branch = sync_from.strip("/").partition("/")
        return remote, branch
    upstream = git(
        root, "rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{u}", check=False
    ).stdout.strip()
    if not upstream or "/" not in upstream:
        raise ConfigError(
            f"the bank at {root} has no upstream to follow; set sync_from = 'origin/main' "
            "(SKILLBANK_SYNC_FROM), or `git branch --set-upstream-to origin/main`"
        )
    remote, _, branch = upstream.partition("/")
    return remote, branch


def sync(library: SkillLibrary, sync_from: str = "") -> SyncResult:
    """Fetch the followed branch and fast-forward the checked-out branch to it.

    Raises:
        ConfigError: there is nothing to follow (no ``sync_from`` and no upstream).
    """
    root = library.root
    remote, branch = _source(root, sync_from)
    source = f"{remote}/{branch}"
    before = git(root, "rev-parse", "HEAD", check=False).stdout.strip()
    fetched = git(root, "fetch", "-q", remote, branch, check=False)
    if fetched.returncode != 0:
        said = " ".join(fetched.stderr.split())
        return SyncResult(False, before, before, source, f"git fetch {source}: {said}", time.time())
    with library.lock():
        merged = git(root, "merge", "-q", "--ff-only", "FETCH_HEAD", check=False)
        after = git(root, "rev-parse", "HEAD", check=False).stdout.strip()
    error = None
    if merged.returncode != 0:
        error = (
            f"cannot fast-forward to {source}: {' '.join(merged.stderr.split())}; this replica "
            "keeps serving its own commit (a replica should not commit on its checked-out "
            "branch; use review branches)"
        )
    return SyncResult(after != before, before, after, source, error, time.time())


class Follower:
    """Runs `sync` every ``interval_s`` seconds (0: only when triggered), on its own thread.

    Args:
        library: The replica's library.
        sync_from: ``REMOTE/BRANCH`` to follow ("": the upstream).
        interval_s: Seconds between two syncs; 0 for none but `trigger`'s.
    """

    def __init__(self, library: SkillLibrary, sync_from: str = "", interval_s: float = 0.0):
        self.library = library
        self.sync_from = sync_from
        self.interval_s = interval_s
        #: The last result (None before the first sync).
        self.last: SyncResult | None = None
        self._lock = threading.Lock()  # one sync at a time
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Follower:
        """Start the periodic syncs (a no-op with ``interval_s == 0``)."""
        if self.interval_s > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="skillbank-sync", daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.trigger()
            except Exception:  # noqa: BLE001, S110 - a failed sync is retried next interval
                pass

    def trigger(self) -> SyncResult:
        """Sync now (waiting for a sync already running, then running one more)."""
        with self._lock:
            try:
                self.last = sync(self.library, self.sync_from)
            except ConfigError as exc:
                self.last = SyncResult(False, "", "", self.sync_from, str(exc), time.time())
            return self.last

    def stop(self) -> None:
        """Stop the periodic syncs."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
