"""The shared ledger: the same rows, schema and queries as the embedded one, in PostgreSQL.

Set ``ledger_url`` (``SKILLBANK_LEDGER_URL`` when the URL holds a password) to
``postgresql://USER@HOST:PORT/DB`` and every process of every replica writes its outcomes to
one database and reads the same counts; no SQLite file is created. `PostgresLedger` is a
`skillbank.ledger.CallLedger`: the queries and the migrations are the SQLite ledger's, run
through the `skillbank.ledger.POSTGRES` dialect (``%s`` parameters, an identity key, an
advisory lock around migrations so exactly one process applies them).

Each row is one autocommit ``INSERT ... RETURNING id`` on the ledger's one connection (a lock
for threads; a forked child opens its own), so writers in many processes never wait for each
other beyond the server's own row locking and lose nothing; the server's trigger adds the row
to its skill version's tally in the same statement, so writers of one skill version take
turns on that tally's row as they commit. A connection that breaks (the
server restarted) is replaced on the next use. The ledger lives in the URL's database and in
its ``search_path`` schema, so several banks may share a server, each with a database or a
schema of its own (``?options=-csearch_path%3Dbank_a``).

psycopg 3 is an optional dependency (``pip install 'skillbank[postgres]'``), imported when the
first connection is made.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from skillbank.config import redact_url
from skillbank.errors import ConfigError, LibraryError
from skillbank.ledger import POSTGRES, CallLedger

__all__ = ["INSTALL_HINT", "PostgresLedger"]

#: What to install for a PostgreSQL ledger.
INSTALL_HINT = "pip install 'skillbank[postgres]'"


class PostgresLedger(CallLedger):
    """The outcomes of skill calls, in a PostgreSQL database shared by every replica.

    Nothing is connected until the first read or write; the first one brings the schema up
    to date (under an advisory lock: one process migrates, the others wait and find it done).

    Args:
        url: A libpq URL, ``postgresql://USER[:PASSWORD]@HOST:PORT/DB[?options]``.
        connect_timeout_s: How long a connection attempt may take before the server counts as
            unreachable.

    Raises:
        ConfigError: ``url`` is not a PostgreSQL URL (raised here), or psycopg is not
            installed (raised on first use).
        LibraryError: the server cannot be reached or refused the login (on first use).
    """

    dialect = POSTGRES

    def __init__(self, url: str, *, connect_timeout_s: float = 10.0) -> None:
        if not url.startswith(("postgresql://", "postgres://")):
            raise ConfigError(
                f"ledger_url={redact_url(url)!r} must start with postgresql:// "
                "(e.g. postgresql://skillbank@127.0.0.1:5432/skillbank)"
            )
        super().__init__()
        self._url = url
        self.connect_timeout_s = connect_timeout_s

    @property
    def where(self) -> str:
        """The URL without its password."""
        return repr(redact_url(self._url))

    def exists(self) -> bool:
        """Always True: a server's database is there (reads create nothing but the schema)."""
        return True

    def _psycopg(self) -> Any:
        """The psycopg module (raises ConfigError naming the extra when it is missing)."""
        try:
            import psycopg
        except ImportError:
            raise ConfigError(
                f"ledger_url is a PostgreSQL URL ({redact_url(self._url)}), which needs the "
                f"psycopg package: {INSTALL_HINT}",
                hint=INSTALL_HINT,
            ) from None
        return psycopg

    def _new_connection(self) -> Any:
        psycopg = self._psycopg()
        try:
            return psycopg.connect(
                self._url, autocommit=True, connect_timeout=max(1, round(self.connect_timeout_s))
            )
        except psycopg.Error as exc:
            said = " ".join(str(exc).split())
            raise LibraryError(
                f"cannot reach the PostgreSQL ledger {self.where}: {said}; check that the "
                "server is running and listening on that host and port, that it accepts this "
                "user from this machine (pg_hba.conf), and that the database exists; the "
                "password, if any, comes from SKILLBANK_LEDGER_URL"
            ) from None

    @contextlib.contextmanager
    def _connect(self) -> Iterator[Any]:
        """The base class's connection, with the driver's errors said as `LibraryError`
        (a server gone mid-query; the next use reconnects)."""
        psycopg = self._psycopg()
        try:
            with super()._connect() as conn:
                yield conn
        except psycopg.Error as exc:
            said = " ".join(str(exc).split())
            raise LibraryError(
                f"the PostgreSQL ledger {self.where} failed: {said}; check that the server "
                "is up (the next call reconnects)"
            ) from None

    def _usable(self, conn: Any) -> bool:
        return not (conn.closed or conn.broken)

    def _in_transaction(self, conn: Any) -> bool:
        from psycopg.pq import TransactionStatus

        return bool(conn.info.transaction_status != TransactionStatus.IDLE)

    def _prepare(self, create: bool) -> None:
        with self._connect() as conn:
            try:
                self._migrate(conn)
            except LibraryError as exc:
                raise LibraryError(f"cannot open the ledger {self.where}: {exc}") from None
