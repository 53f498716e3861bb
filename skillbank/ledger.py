"""The ledger: every call of a skill and how it went, in SQLite under the bank's state folder.

One row per skill call (or per task outcome charged to a skill): when, which skill and
version, whether it worked, how long it took, the error, and who called it. The file is local
state (``.skillbank/ledger.sqlite``), never committed: usage statistics differ per machine,
while a stage change that follows from them is a commit.

The file is shared by every process that uses the bank (agents, ``skillbank run``, an MCP
server), so it is opened in WAL mode (readers never block the writer) with a busy timeout
(writers wait for each other instead of failing), and each operation uses its own short-lived
connection, so a `Ledger` may be used from any thread or process. The ledger knows only its
file: it takes a path (or the state folder), never the bank.

`skillbank.bank.SkillBank.run` writes one row per call it runs (so do `call_tool`, the MCP
server and the agent, which go through it); the agent adds one ``"agent:outcome"`` failure row
per skill used in a task that failed although the skill's calls worked. `skillbank.maturity`
turns the counts into the success posterior and the stage.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from skillbank.errors import LibraryError

__all__ = ["LEDGER_FILE", "CallRecord", "Ledger"]

#: The ledger's file name inside the bank's state folder.
LEDGER_FILE = "ledger.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    id        INTEGER PRIMARY KEY,
    ts        REAL NOT NULL,
    skill_id  TEXT NOT NULL,
    version   TEXT NOT NULL,
    ok        INTEGER NOT NULL,
    latency_s REAL,
    error     TEXT,
    caller    TEXT
);
CREATE INDEX IF NOT EXISTS calls_skill ON calls (skill_id, id);
"""


@dataclass(frozen=True)
class CallRecord:
    """One row of the ledger: a call of a skill and how it went."""

    #: The row id; ids grow in the order rows were written.
    id: int
    #: When it was recorded, in seconds since the epoch.
    ts: float
    #: The skill that was called.
    skill_id: str
    #: The skill's version at the time (``""`` when unknown).
    version: str
    #: True when the call (or the task it served) succeeded.
    ok: bool
    #: Wall-clock seconds the call took (None for an outcome that is not one call).
    latency_s: float | None
    #: What went wrong, when it did.
    error: str | None
    #: Who called it, e.g. ``"agent"`` (None when not said).
    caller: str | None


class Ledger:
    """The outcomes of skill calls, in one SQLite file.

    Args:
        path: The database file (created with its table if missing).
        busy_timeout_s: How long a write waits for another process's write to finish.

    Raises:
        LibraryError: when the file cannot be opened or is not a ledger.

    Example:
        >>> ledger = Ledger.in_state_dir(bank_root / ".skillbank")  # doctest: +SKIP
        >>> ledger.record("order_history", ok=True, caller="agent")  # doctest: +SKIP
        1
        >>> ledger.stats("order_history")["successes"]              # doctest: +SKIP
        1
    """

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as conn:
                # Persistent for the file: every later connection is in WAL mode too.
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise LibraryError(
                f"cannot open the ledger {str(self.path)!r}: {exc}; remove the file if it is "
                "not a skillbank ledger (it holds only local usage statistics)"
            ) from None

    @classmethod
    def in_state_dir(cls, state_dir: str | Path, *, busy_timeout_s: float = 30.0) -> Ledger:
        """The ledger in a state folder (``<state_dir>/ledger.sqlite``), e.g. a bank's
        ``<root>/.skillbank``."""
        return cls(Path(state_dir) / LEDGER_FILE, busy_timeout_s=busy_timeout_s)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # One short-lived connection per operation: safe across threads and processes, and
        # nothing to close on the Ledger itself.
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            yield conn
        finally:
            conn.close()

    def record(
        self,
        skill_id: str,
        *,
        ok: bool,
        version: str = "",
        latency_s: float | None = None,
        error: str | None = None,
        caller: str | None = None,
        ts: float | None = None,
    ) -> int:
        """Append one outcome; return its row id.

        Args:
            skill_id: The skill called.
            ok: Whether it worked.
            version: The skill's version when called.
            latency_s: Seconds the call took (None for a task outcome).
            error: What went wrong.
            caller: Who called, e.g. ``"agent"``.
            ts: When (default: now).
        """
        with self._connect() as conn:
            cursor = conn.execute(
                "INSERT INTO calls (ts, skill_id, version, ok, latency_s, error, caller) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    time.time() if ts is None else ts,
                    skill_id,
                    version,
                    int(bool(ok)),
                    latency_s,
                    error,
                    caller,
                ),
            )
            return int(cursor.lastrowid or 0)

    def outcomes(self, skill_id: str) -> list[CallRecord]:
        """Every row recorded for ``skill_id``, oldest first."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT id, ts, skill_id, version, ok, latency_s, error, caller FROM calls "
                "WHERE skill_id = ? ORDER BY id",
                (skill_id,),
            ).fetchall()
        return [
            CallRecord(int(r[0]), float(r[1]), str(r[2]), str(r[3]), bool(r[4]), r[5], r[6], r[7])
            for r in rows
        ]

    def counts(self, versions: Mapping[str, str] | None = None) -> dict[str, tuple[int, int]]:
        """``{skill_id: (successes, failures)}`` for every skill with rows, in one query.

        With ``versions`` (skill id -> version), only those skills are counted, and only rows
        of that version (or of no recorded version).
        """
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT skill_id, version, coalesce(sum(ok), 0), count(*) FROM calls "
                "GROUP BY skill_id, version"
            ).fetchall()
        out: dict[str, tuple[int, int]] = {}
        for sid, version, ok, n in rows:
            sid = str(sid)
            if versions is not None and (sid not in versions or version not in (versions[sid], "")):
                continue
            s, f = out.get(sid, (0, 0))
            out[sid] = (s + int(ok), f + int(n) - int(ok))
        return out

    def stats(self, skill_id: str | None = None) -> dict[str, int | float | None]:
        """Counts over one skill's rows (or all rows): calls, successes, failures, latency.

        Returns:
            ``{"calls": n, "successes": n, "failures": n, "mean_latency_s": seconds or None}``;
            the mean is over rows that have a latency.
        """
        where, params = ("WHERE skill_id = ?", (skill_id,)) if skill_id is not None else ("", ())
        with self._connect() as conn:
            calls, successes, mean = conn.execute(
                f"SELECT count(*), coalesce(sum(ok), 0), avg(latency_s) FROM calls {where}",
                params,
            ).fetchone()
        return {
            "calls": int(calls),
            "successes": int(successes),
            "failures": int(calls) - int(successes),
            "mean_latency_s": None if mean is None else float(mean),
        }
