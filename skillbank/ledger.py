"""The ledger: every call of a skill and how it went, in SQLite under the bank's state folder
(or, shared by many machines, in PostgreSQL: `skillbank.ledger_postgres`).

One row per skill call (or per task outcome charged to a skill): when, which skill and
version, whether it worked, how long it took, the error, and who called it. The file is local
state (``.skillbank/ledger.sqlite``), never committed: usage statistics differ per machine,
while a stage change that follows from them is a commit.

The file is shared by every process that uses the bank (agents, ``skillbank run``, an MCP
server), so it is opened in WAL mode (readers never block the writer) with a busy timeout
(writers wait for each other instead of failing). The ledger knows only its file: it takes a
path (or the state folder), never the bank.

A skill call records one row, so the cost of a row is on every call's path. A `Ledger` keeps
one connection open (opened on first use, closed by `Ledger.close`), guarded by a lock, so a
row is one ``INSERT`` on a warm connection rather than a connect, pragmas and a close (about
1.5 ms of a 2.6 ms call, measured by ``benchmarks/run_bench.py``). The lock makes the object
safe to share between threads; a forked child never touches the connection its parent opened
(SQLite forbids using one across ``fork``): it leaves that one alone, unclosed, and opens its
own. The connection writes with ``synchronous = NORMAL``, which in WAL mode makes a commit
durable against a crash of the process but not of the machine: a power cut may lose the last
few rows of usage statistics, never corrupt the file.

Reading never creates the file: a ledger nobody has written to yet reads as empty, and the
file (with its folder) appears on the first `Ledger.record`.

The schema and its migrations
-----------------------------
The file carries its schema version in a one-row table, ``schema_version``. `_MIGRATIONS` is an
ordered list of steps, each taking the schema from version ``n - 1`` to ``n`` (migration 1
creates the ``calls`` table and its index; version 0 is an empty file). Opening a ledger
brings it up to `SCHEMA_VERSION`:

1. read the version without a lock (the common case: already current, nothing to do);
2. otherwise begin a transaction that holds the database's write lock (SQLite:
   ``BEGIN IMMEDIATE``), read the version again under it, run every missing migration and set
   the new version, and commit. A second process opening the same new file at the same
   moment waits for the lock (the busy timeout), then finds the version current and runs
   nothing: no migration is ever applied twice, and a failed one leaves the file as it was.

A file written before the version table existed (it has ``calls`` but no ``schema_version``)
is adopted as version 1, its rows untouched. A file whose version is newer than this code
knows is refused with a `LibraryError` (upgrade skillbank) and never written to; a database
holding other tables but neither of ours is refused too, rather than written into.

Migrations are append-only (never edit a released one: files out there have run it) and
written in SQL that SQLite and PostgreSQL both accept (``DOUBLE PRECISION``, ``TEXT``,
``INTEGER``, plain ``CREATE TABLE`` / ``CREATE INDEX`` / ``ALTER TABLE``; DDL is
transactional in both). What differs between databases is kept in one place, `Dialect`:
the auto-numbered key's type (spelled ``{serial_key}`` in a migration), how to list tables,
how to begin a transaction holding the write lock (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL:
a transaction-scoped advisory lock), and how a query marks its parameters. The queries are
written once, in `CallLedger`, the one interface; `Ledger` (the embedded SQLite file) and
`skillbank.ledger_postgres.PostgresLedger` (a shared database) say only how to connect.

A process checks the version once per `Ledger` object, when it first opens the file; a
long-running process keeps using the schema it checked, so upgrade every process sharing a
ledger together.

`skillbank.bank.SkillBank.run` writes one row per call it runs (so do `call_tool`, the MCP
server and the agent, which go through it); the agent adds one ``"agent:outcome"`` failure row
per skill used in a task that failed although the skill's calls worked. `skillbank.maturity`
turns the counts into the success posterior and the stage.
"""

from __future__ import annotations

import abc
import contextlib
import json
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol

from skillbank.errors import LibraryError, storage_error

__all__ = [
    "LEDGER_FILE",
    "POSTGRES",
    "SCHEMA_VERSION",
    "SQLITE",
    "CallLedger",
    "CallRecord",
    "Connection",
    "Dialect",
    "Ledger",
    "Outcomes",
]

#: The ledger's file name inside the bank's state folder.
LEDGER_FILE = "ledger.sqlite"


@dataclass(frozen=True)
class Dialect:
    """Everything about the schema and the queries that differs between databases (see the
    module docstring)."""

    #: The database's name, for messages.
    name: str
    #: The column type of an auto-numbered integer primary key (``{serial_key}`` in migrations).
    serial_key: str
    #: A query returning the name of every table in the ledger's database (or schema).
    list_tables: str
    #: Statements beginning a transaction that holds the write lock until it ends, so only one
    #: connection at a time can migrate.
    begin_locked: tuple[str, ...]
    #: How a query marks a parameter (the shared queries are written with ``?``).
    placeholder: str
    #: Statements making the database keep ``tallies`` as rows are added to ``calls`` (a
    #: trigger: every writer's rows are counted, whatever code wrote them).
    tally_trigger: tuple[str, ...] = ()

    def sql(self, query: str) -> str:
        """``query`` (written with ``?`` placeholders) in this database's parameter style."""
        return query if self.placeholder == "?" else query.replace("?", self.placeholder)


#: 1 for a row that counts as the skill's failure: not ok, and not blamed on the caller.
_FAILED = "CASE WHEN ok = 0 AND blame IS NULL THEN 1 ELSE 0 END"
#: The same for the row a trigger is adding.
_NEW_FAILED = "CASE WHEN NEW.ok = 0 AND NEW.blame IS NULL THEN 1 ELSE 0 END"

#: The embedded ledger (`Ledger`).
SQLITE = Dialect(
    name="SQLite",
    # An alias of the rowid: numbered in insertion order, which `outcomes` relies on.
    serial_key="INTEGER PRIMARY KEY",
    list_tables="SELECT name FROM sqlite_master WHERE type = 'table'",
    # IMMEDIATE takes the write lock at BEGIN, so two migrators cannot both read "version 0".
    begin_locked=("BEGIN IMMEDIATE",),
    placeholder="?",
    tally_trigger=(
        "CREATE TRIGGER calls_tally AFTER INSERT ON calls BEGIN"
        " INSERT INTO tallies (skill_id, version, successes, failures)"
        f" VALUES (NEW.skill_id, NEW.version, NEW.ok, {_NEW_FAILED})"
        " ON CONFLICT (skill_id, version) DO UPDATE SET"
        " successes = successes + excluded.successes,"
        " failures = failures + excluded.failures; END",
    ),
)
#: The shared ledger (`skillbank.ledger_postgres.PostgresLedger`).
POSTGRES = Dialect(
    name="PostgreSQL",
    # Numbered in insertion order by one sequence: ids grow in the order rows were written
    # (across processes, in the order their INSERTs took a number).
    serial_key="BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    list_tables=(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
    ),
    # A transaction-scoped advisory lock (released at COMMIT or ROLLBACK) on a fixed key:
    # 0x736b696c6c ("skill"), so two migrators take turns; readers and writers of rows never
    # touch it.
    begin_locked=("BEGIN", "SELECT pg_advisory_xact_lock(495891442796)"),
    placeholder="%s",
    tally_trigger=(
        # Writers wait while the tallies are filled from the rows, so none is missed.
        "LOCK TABLE calls IN SHARE MODE",
        "CREATE FUNCTION skillbank_tally() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " INSERT INTO tallies (skill_id, version, successes, failures)"
        f" VALUES (NEW.skill_id, NEW.version, NEW.ok, {_NEW_FAILED})"
        " ON CONFLICT (skill_id, version) DO UPDATE SET"
        " successes = tallies.successes + excluded.successes,"
        " failures = tallies.failures + excluded.failures;"
        " RETURN NULL; END $$",
        "CREATE TRIGGER calls_tally AFTER INSERT ON calls"
        " FOR EACH ROW EXECUTE FUNCTION skillbank_tally()",
    ),
)


@dataclass(frozen=True)
class _Migration:
    """One step of the schema, from ``version - 1`` to ``version``."""

    version: int
    #: Why the step exists, for whoever reads the list.
    why: str
    #: Portable SQL, run in order in the migration's transaction; ``{serial_key}`` is filled
    #: in from the `Dialect`.
    statements: tuple[str, ...]


#: Every schema step, oldest first; append, never edit (see the module docstring).
_MIGRATIONS: tuple[_Migration, ...] = (
    _Migration(
        1,
        "one row per skill call or task outcome; the index reads one skill's rows in order",
        # The schema of the ledgers from before versioning (they said REAL: in SQLite the
        # same column affinity as DOUBLE PRECISION, which PostgreSQL also reads as 8 bytes).
        (
            "CREATE TABLE calls ("
            " id {serial_key},"
            " ts DOUBLE PRECISION NOT NULL,"
            " skill_id TEXT NOT NULL,"
            " version TEXT NOT NULL,"
            " ok INTEGER NOT NULL,"
            " latency_s DOUBLE PRECISION,"
            " error TEXT,"
            " caller TEXT)",
            "CREATE INDEX calls_skill ON calls (skill_id, id)",
        ),
    ),
    _Migration(
        2,
        "who a failure counts against: the skill, or the caller whose input a tool refused",
        ("ALTER TABLE calls ADD COLUMN blame TEXT",),  # NULL: the skill (every older row)
    ),
    _Migration(
        3,
        "the arguments skillbank itself chose for a call (a reflex), as JSON, for review",
        ("ALTER TABLE calls ADD COLUMN args TEXT",),  # NULL: not recorded (every older row)
    ),
    _Migration(
        4,
        "each skill version's successes and failures, kept by the database as rows are added "
        "(a trigger), so ranking a search reads one row per skill version instead of every "
        "call ever recorded",
        (
            "CREATE TABLE tallies ("
            " skill_id TEXT NOT NULL,"
            " version TEXT NOT NULL,"
            " successes BIGINT NOT NULL,"
            " failures BIGINT NOT NULL,"
            " PRIMARY KEY (skill_id, version))",
            "{tally_trigger}",
            "INSERT INTO tallies (skill_id, version, successes, failures)"
            " SELECT skill_id, version, coalesce(sum(ok), 0),"
            f" coalesce(sum({_FAILED}), 0)"
            " FROM calls GROUP BY skill_id, version",
        ),
    ),
)

#: The schema version this code writes (that of the last migration).
SCHEMA_VERSION = _MIGRATIONS[-1].version


class _NewerSchema(Exception):
    """The file's schema is newer than this code knows (becomes a `LibraryError`)."""

    def __init__(self, version: int, known: int) -> None:
        super().__init__(version, known)
        self.version = version
        self.known = known


class Connection(Protocol):
    """What the shared queries need of a database connection: ``execute`` with parameters,
    returning a cursor (sqlite3's and psycopg's connections both are one)."""

    def execute(self, query: Any, params: Any = ..., /) -> Any:
        """Run one statement; return a cursor with ``fetchone``/``fetchall``."""
        ...


def _tables(conn: Connection, dialect: Dialect) -> set[str]:
    return {str(row[0]) for row in conn.execute(dialect.list_tables).fetchall()}


def _schema_version(conn: Connection, dialect: Dialect) -> tuple[int, bool]:
    """The database's schema version, and whether it records it (False for an empty
    database, version 0, and for a ledger from before the version table, version 1).

    Raises:
        LibraryError: the database holds other tables, but not a ledger.
    """
    tables = _tables(conn, dialect)
    if "schema_version" in tables:
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        if row is not None:
            return int(row[0]), True
    if "calls" in tables:
        return 1, False  # written before the version table existed; migration 1 is that schema
    if tables - {"schema_version"}:
        raise LibraryError(
            f"it holds tables {sorted(tables)!r} but no skillbank ledger; move the file away "
            "(a ledger holds only local usage statistics), point state_dir elsewhere, or give "
            "a PostgreSQL ledger a database (or schema) of its own"
        )
    return 0, False


def _migrate(conn: Connection, dialect: Dialect) -> int:
    """Bring the database's schema up to the last of `_MIGRATIONS`; return the version found.

    ``conn`` must be in autocommit mode: the migrations run in a transaction begun here.

    Raises:
        _NewerSchema: the database is newer than this code; nothing was written.
        LibraryError: the database is not a ledger.
    """
    migrations = _MIGRATIONS
    latest = migrations[-1].version
    found, recorded = _schema_version(conn, dialect)  # no lock: usually already current
    if found > latest:
        raise _NewerSchema(found, latest)
    if found == latest and recorded:
        return found
    for statement in dialect.begin_locked:
        conn.execute(statement)
    try:
        # Again, under the lock: another process may have migrated in the meantime.
        found, recorded = _schema_version(conn, dialect)
        if found > latest:
            raise _NewerSchema(found, latest)
        if not recorded:
            if "schema_version" not in _tables(conn, dialect):
                conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            conn.execute(f"INSERT INTO schema_version (version) VALUES ({int(found)})")
        for migration in migrations:
            if migration.version > found:
                for step in migration.statements:
                    # "{tally_trigger}" stands for the dialect's own statements.
                    own = dialect.tally_trigger if step == "{tally_trigger}" else (step,)
                    for statement in own:
                        conn.execute(statement.replace("{serial_key}", dialect.serial_key))
                conn.execute(f"UPDATE schema_version SET version = {int(migration.version)}")
        conn.execute("COMMIT")
    except BaseException:
        # Some errors (a full disk) have rolled the transaction back already.
        with contextlib.suppress(Exception):
            conn.execute("ROLLBACK")
        raise
    return found


#: Who a failure counts against.
Blame = Literal["skill", "caller"]


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
    #: Who a failure counts against: ``"skill"``, or ``"caller"`` when a tool refused a value
    #: the caller gave (an unknown email): such a failure says nothing of the skill.
    blame: Blame = "skill"
    #: The arguments, when the call recorded them (a reflex records the ones it read off
    #: the task); None otherwise.
    args: Mapping[str, Any] | None = None

    @property
    def failed_skill(self) -> bool:
        """True when this row is a failure of the skill itself."""
        return not self.ok and self.blame != "caller"


class Outcomes(NamedTuple):
    """How a skill's calls went, by the ledger's rows: the two numbers its stage and its search
    weight are computed from (`skillbank.maturity`, `skillbank.search`).

    A tuple, so ``successes, failures = outcomes`` works; ``Outcomes(0, 0)`` is a skill the
    ledger has no row of.
    """

    #: Rows that succeeded: calls that worked (and tasks served).
    successes: int
    #: Rows that failed: failed calls, and failed tasks charged to the skill.
    failures: int


#: Every ledger alive in this process, so a forked child can drop their connections.
_LIVE: weakref.WeakSet[CallLedger] = weakref.WeakSet()
#: Connections a forked child inherited: kept referenced, so they are never closed (or used)
#: in the child, where they are no longer theirs (SQLite's per-process file locks, a
#: PostgreSQL session's socket shared with the parent).
_INHERITED: list[object] = []


def _after_fork() -> None:
    for ledger in list(_LIVE):
        ledger._forget_connection()  # noqa: SLF001 - this module's own class


class CallLedger(abc.ABC):
    """The one interface of a ledger, whichever database holds it.

    The queries and the schema (with its migrations) are shared; a backend says only how to
    connect: `Ledger`, the embedded SQLite file, or
    `skillbank.ledger_postgres.PostgresLedger`, a shared PostgreSQL database. Every method
    may be called from any thread (a lock guards the one connection) and from a forked child
    (which opens its own connection).
    """

    #: The database's differences from the others.
    dialect: Dialect

    def __init__(self) -> None:
        self._ready = False  # the database has the current schema
        self._lock = threading.Lock()  # one statement at a time on the shared connection
        self._conn: Any = None
        self._pid = os.getpid()  # the process that may use ``_conn``
        _LIVE.add(self)

    @property
    @abc.abstractmethod
    def where(self) -> str:
        """Where the ledger lives, fit for a message (a file path, or a URL without secrets)."""

    @abc.abstractmethod
    def exists(self) -> bool:
        """True when the ledger's database is there: a SQLite file once the first `record`
        created it; a PostgreSQL database always (reading never creates anything)."""

    @abc.abstractmethod
    def _new_connection(self) -> Any:
        """A new autocommit connection to the database."""

    @abc.abstractmethod
    def _prepare(self, create: bool) -> None:
        """Create (when ``create``) and migrate the database (`_migrate`), translating the
        database's own errors into `LibraryError`."""

    def _close_connection(self, conn: Any) -> None:
        conn.close()

    def _in_transaction(self, conn: Any) -> bool:
        return False

    def _usable(self, conn: Any) -> bool:
        """False for a connection that can no longer be used (a server that restarted)."""
        return True

    def _migrate(self, conn: Connection) -> int:
        """Bring ``conn``'s database to the current schema (for `_prepare`)."""
        return _migrate(conn, self.dialect)

    @property
    def schema_version(self) -> int:
        """The database's schema version (0 when there is none yet); this code writes
        `SCHEMA_VERSION`."""
        if not self._open(create=False):
            return 0
        with self._connect() as conn:
            return _schema_version(conn, self.dialect)[0]

    def _open(self, *, create: bool) -> bool:
        """Make sure the database has the current schema, creating it when ``create``; False
        when there is none (and ``create`` is False)."""
        if self._ready and self.exists():
            return True
        self._ready = False  # never opened, or removed since: check again
        self.close()  # a connection to a removed file would write into nothing
        if not create and not self.exists():
            return False
        try:
            try:
                self._prepare(create)
            except BaseException:
                self.close()  # hold nothing open on a database this ledger refused
                raise
        except _NewerSchema as exc:
            raise LibraryError(
                f"the ledger {self.where} has schema version {exc.version}, but this "
                f"skillbank knows versions up to {exc.known}: a newer skillbank wrote it; "
                "upgrade skillbank (pip install -U skillbank) in every process that uses this "
                "ledger. It was left unchanged."
            ) from None
        self._ready = True
        return True

    @contextlib.contextmanager
    def _connect(self) -> Iterator[Any]:
        """The ledger's connection, held alone for the ``with`` block (see the module docstring).

        Autocommit: each statement is its own transaction unless a migration begins one.
        """
        if self._pid != os.getpid():  # forked by a means that skipped `_after_fork`
            self._forget_connection()
        with self._lock:
            if self._conn is not None and not self._usable(self._conn):
                stale, self._conn = self._conn, None
                with contextlib.suppress(Exception):
                    self._close_connection(stale)
            if self._conn is None:
                self._conn = self._new_connection()
            try:
                yield self._conn
            finally:
                if self._in_transaction(self._conn):  # never leave the write lock held
                    with contextlib.suppress(Exception):
                        self._conn.execute("ROLLBACK")

    def close(self) -> None:
        """Close the ledger's connection (the next operation opens a new one)."""
        if self._pid != os.getpid():
            self._forget_connection()
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None and self._pid == os.getpid():
            with contextlib.suppress(Exception):
                self._close_connection(conn)

    def __del__(self) -> None:
        # A connection sits in a reference cycle (its statement cache), so without this it
        # would stay open, its WAL file unmerged, until the cycle collector happened by.
        with contextlib.suppress(Exception):  # also at interpreter exit, half torn down
            conn = getattr(self, "_conn", None)
            if conn is not None and self._pid == os.getpid():
                self._close_connection(conn)

    def _forget_connection(self) -> None:
        """In a forked child: drop the parent's connection and lock without using either."""
        if self._conn is not None:
            _INHERITED.append(self._conn)  # never closed here: closing may checkpoint the WAL
        self._conn = None
        self._lock = threading.Lock()  # another thread of the parent may have held it
        self._pid = os.getpid()

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
        blame: Blame = "skill",
        args: Mapping[str, Any] | None = None,
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
            blame: Who a failure counts against (see `CallRecord.blame`).
            args: The call's arguments, to keep (JSON data); None keeps none.

        Raises:
            LibraryError: the database cannot be created or reached, or is not a current
                ledger.
        """
        self._open(create=True)
        stored_blame = None if ok or blame == "skill" else blame
        with self._connect() as conn:
            # One statement: the database's trigger adds the row to its skill version's tally.
            row = conn.execute(
                self.dialect.sql(
                    "INSERT INTO calls"
                    " (ts, skill_id, version, ok, latency_s, error, caller, blame, args)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"
                ),
                (
                    time.time() if ts is None else ts,
                    skill_id,
                    version,
                    int(bool(ok)),
                    latency_s,
                    error,
                    caller,
                    stored_blame,
                    None if args is None else json.dumps(args, sort_keys=True, default=str),
                ),
            ).fetchone()
            return int(row[0]) if row else 0

    def outcomes(self, skill_id: str) -> list[CallRecord]:
        """Every row recorded for ``skill_id``, oldest first."""
        if not self._open(create=False):
            return []
        with self._connect() as conn:
            rows = conn.execute(
                self.dialect.sql(
                    "SELECT id, ts, skill_id, version, ok, latency_s, error, caller, blame, args"
                    " FROM calls WHERE skill_id = ? ORDER BY id"
                ),
                (skill_id,),
            ).fetchall()
        return [
            CallRecord(
                int(r[0]), float(r[1]), str(r[2]), str(r[3]), bool(r[4]), r[5], r[6], r[7],
                "caller" if r[8] == "caller" else "skill", _args(r[9]),
            )
            for r in rows
        ]  # fmt: skip

    def counts(self, versions: Mapping[str, str] | None = None) -> dict[str, Outcomes]:
        """``{skill_id: Outcomes(successes, failures)}`` for every skill with rows, in one query.

        With ``versions`` (skill id -> version), only those skills are counted, and only rows
        of that version (or of no recorded version). A failure blamed on the caller counts
        neither way.
        """
        if not self._open(create=False):
            return {}
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT skill_id, version, successes, failures FROM tallies"
            ).fetchall()
        out: dict[str, Outcomes] = {}
        for sid, version, ok, failed in rows:
            sid = str(sid)
            if versions is not None and (sid not in versions or version not in (versions[sid], "")):
                continue
            s, f = out.get(sid, Outcomes(0, 0))
            out[sid] = Outcomes(s + int(ok), f + int(failed))
        return out

    def stats(self, skill_id: str | None = None) -> dict[str, int | float | None]:
        """Counts over one skill's rows (or all rows): calls, successes, failures, latency.

        Returns:
            ``{"calls": n, "successes": n, "failures": n, "mean_latency_s": seconds or None}``;
            the mean is over rows that have a latency.
        """
        if not self._open(create=False):
            return {"calls": 0, "successes": 0, "failures": 0, "mean_latency_s": None}
        where, params = ("WHERE skill_id = ?", (skill_id,)) if skill_id is not None else ("", ())
        with self._connect() as conn:
            calls, successes, mean, failures = conn.execute(
                self.dialect.sql(
                    "SELECT count(*), coalesce(sum(ok), 0), avg(latency_s),"
                    f" coalesce(sum({_FAILED}), 0)"
                    f" FROM calls {where}"
                ),
                params,
            ).fetchone()
        return {
            "calls": int(calls),
            "successes": int(successes),
            "failures": int(failures),
            "mean_latency_s": None if mean is None else float(mean),
        }


class Ledger(CallLedger):
    """The outcomes of skill calls, in one SQLite file (the embedded default).

    An existing file is opened (and its schema brought up to date) here; a missing one is
    created, with its folder, by the first `record`. Until then every read is empty.

    Args:
        path: The database file.
        busy_timeout_s: How long a write waits for another process's write to finish.

    Raises:
        LibraryError: when the file cannot be opened, is not a ledger, or was written by a
            newer skillbank (its schema version is above `SCHEMA_VERSION`).

    Example:
        >>> ledger = Ledger.in_state_dir(bank_root / ".skillbank")  # doctest: +SKIP
        >>> ledger.record("order_history", ok=True, caller="agent")  # doctest: +SKIP
        1
        >>> ledger.stats("order_history")["successes"]              # doctest: +SKIP
        1
    """

    dialect = SQLITE

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0) -> None:
        super().__init__()
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        if self.path.exists():
            self._open(create=False)

    @classmethod
    def in_state_dir(cls, state_dir: str | Path, *, busy_timeout_s: float = 30.0) -> Ledger:
        """The ledger in a state folder (``<state_dir>/ledger.sqlite``), e.g. a bank's
        ``<root>/.skillbank``."""
        return cls(Path(state_dir) / LEDGER_FILE, busy_timeout_s=busy_timeout_s)

    @property
    def where(self) -> str:
        """The file's path, quoted."""
        return repr(str(self.path))

    def exists(self) -> bool:
        """True once the file exists (the first `record` creates it)."""
        return self.path.exists()

    def _in_transaction(self, conn: Any) -> bool:
        return bool(conn.in_transaction)

    def _new_connection(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout_s,
            isolation_level=None,
            check_same_thread=False,  # any thread may use it, one at a time (the lock)
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            conn.execute("PRAGMA synchronous = NORMAL")
        except BaseException:
            conn.close()
            raise
        return conn

    def _prepare(self, create: bool) -> None:
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # Readable by the user only: the ledger keeps arguments of reflex calls and
                # error messages. SQLite gives its -wal and -shm files the same mode.
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
            self._migrate_waiting()
        except LibraryError as exc:
            raise LibraryError(f"cannot open the ledger {self.where}: {exc}") from None
        except (OSError, sqlite3.Error) as exc:
            storage = storage_error(exc, f"the ledger {self.where}")
            if storage is not None:
                raise storage from None
            raise LibraryError(
                f"cannot open the ledger {self.where}: {exc}; remove the file if it is "
                "not a skillbank ledger (it holds only local usage statistics)"
            ) from None

    def _migrate_waiting(self) -> None:
        """Migrate the file and put it in WAL mode, waiting out other first openers.

        SQLite answers "database is locked" at once, without waiting on the busy timeout,
        when waiting could deadlock (two connections that both read, then both want to write;
        a journal-mode change while another connection reads). Several processes opening a
        new file together meet exactly that, so such an answer is retried, with a growing
        pause, until the busy timeout has passed.
        """
        deadline = time.monotonic() + self.busy_timeout_s
        pause = 0.005
        while True:
            try:
                with self._connect() as conn:
                    self._migrate(conn)
                    # Persistent for the file: every later connection is in WAL mode too.
                    if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                        conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                said = str(exc).lower()
                if ("locked" not in said and "busy" not in said) or time.monotonic() > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.25)


def _args(text: str | None) -> dict[str, Any] | None:
    """A row's recorded arguments (None when none were, or they do not read back)."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


os.register_at_fork(after_in_child=_after_fork)
