"""The ledger: rows in, counts out, and no lost writes when processes write at once."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skillbank.bank import SkillBank
from skillbank.errors import LibraryError, SkillArgumentError
from skillbank.examples.shop import Shop
from skillbank.ledger import LEDGER_FILE, SCHEMA_VERSION, CallRecord, Ledger, Outcomes
from skillbank.trajectory import load_trajectories
from tests.conftest import EXAMPLE_TRAJECTORIES

HISTORY = "list_orders_by_email"


def test_record_outcomes_and_stats(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "state" / "ledger.sqlite")
    first = ledger.record("a", ok=True, version="1.0.0", latency_s=0.5, caller="agent", ts=1.0)
    ledger.record("a", ok=False, version="1.0.0", latency_s=1.5, error="boom", caller="agent")
    ledger.record("a", ok=False, version="1.1.0", error="task failed", caller="agent:outcome")
    ledger.record("b", ok=True)

    rows = ledger.outcomes("a")
    assert [r.ok for r in rows] == [True, False, False]
    assert rows[0] == CallRecord(first, 1.0, "a", "1.0.0", True, 0.5, None, "agent")
    assert rows[1].error == "boom" and rows[2].latency_s is None
    assert ledger.outcomes("nobody") == []

    assert ledger.stats("a") == {
        "calls": 3,
        "successes": 1,
        "failures": 2,
        "mean_latency_s": 1.0,  # over the rows that have a latency
    }
    assert ledger.stats() == {"calls": 4, "successes": 2, "failures": 2, "mean_latency_s": 1.0}
    assert ledger.stats("nobody") == {
        "calls": 0,
        "successes": 0,
        "failures": 0,
        "mean_latency_s": None,
    }


def test_file_is_in_wal_mode_and_reopens(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    Ledger(path).record("a", ok=True)
    assert Ledger(path).stats("a")["calls"] == 1
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_the_banks_ledger_lives_in_its_state_dir(bank) -> None:
    ledger = bank.ledger
    assert ledger.path == bank.root / ".skillbank" / LEDGER_FILE
    assert Ledger.in_state_dir(bank.root / ".skillbank").path == ledger.path
    ledger.record("x", ok=True)
    assert ledger.path.is_file()


def test_reading_never_creates_the_file(tmp_path: Path) -> None:
    ledger = Ledger.in_state_dir(tmp_path / "state")
    assert ledger.outcomes("a") == [] and ledger.counts() == {}
    assert ledger.stats()["calls"] == 0 and ledger.schema_version == 0
    assert not (tmp_path / "state").exists()
    ledger.record("a", ok=True)
    assert ledger.schema_version == SCHEMA_VERSION
    assert ledger.stats()["calls"] == 1
    ledger.path.unlink()  # removed under a live Ledger: reads are empty, a write starts afresh
    assert ledger.counts() == {} and not ledger.path.exists()
    ledger.record("a", ok=False)
    assert ledger.counts() == {"a": (0, 1)}


def test_not_a_ledger_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    path.write_text("this is not a database" * 100)
    with pytest.raises(LibraryError, match="cannot open the ledger"):
        Ledger(path)


def _writer(path: str, worker: int, n: int, go: Any) -> None:
    ledger = Ledger(path)
    go.wait(30)  # all writers start together, so the writes really contend
    for i in range(n):
        ledger.record(f"skill_{worker}", ok=i % 3 != 0, latency_s=0.001 * i, caller=str(worker))


def test_concurrent_processes_lose_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "ledger.sqlite")
    workers, n = 4, 200
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter each: no shared state
    go = ctx.Barrier(workers)
    procs = [ctx.Process(target=_writer, args=(path, w, n, go)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0] * workers
    ledger = Ledger(path)
    assert ledger.stats()["calls"] == workers * n
    for w in range(workers):
        rows = ledger.outcomes(f"skill_{w}")
        assert len(rows) == n
        assert sum(r.ok for r in rows) == sum(1 for i in range(n) if i % 3 != 0)
        # Each process's rows keep its own order.
        assert [r.latency_s for r in rows] == pytest.approx([0.001 * i for i in range(n)])
    for p in procs:
        p.close()


def test_counts_are_per_skill_in_bulk(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    assert ledger.counts() == {}
    for ok in (True, True, False):
        ledger.record("a", ok=ok)
    ledger.record("b", ok=False, caller="agent:outcome")
    counts = ledger.counts()
    assert counts == {"a": Outcomes(successes=2, failures=1), "b": Outcomes(0, 1)}
    successes, failures = counts["a"]  # still a pair
    assert (successes, failures) == (counts["a"].successes, counts["a"].failures) == (2, 1)


@pytest.fixture
def shop_bank(tmp_path: Path) -> Iterator[tuple[SkillBank, Shop]]:
    with SkillBank.init(tmp_path / "bank") as bank:
        bank.learn(load_trajectories(EXAMPLE_TRAJECTORIES), branch="current")
        yield bank, Shop.create(tmp_path / "shop.sqlite")


def test_every_run_is_recorded_once_with_its_caller(shop_bank: tuple[SkillBank, Shop]) -> None:
    bank, shop = shop_bank
    skill = bank.get(HISTORY)
    assert bank.run(HISTORY, {"email": "bob@example.com"}, shop.tools()).ok
    reply = json.loads(
        bank.call_tool(HISTORY, '{"email": "nobody@example.com"}', shop.tools(), caller="mcp:x")
    )
    assert reply["ok"] is False
    # Misuse never reaches the sandbox and is not the skill's failure: no row.
    bank.call_tool(HISTORY, '{"mail": 1}', shop.tools(), caller="mcp:x")
    with pytest.raises(SkillArgumentError):
        bank.run(HISTORY, {}, shop.tools())

    first, second = bank.ledger.outcomes(HISTORY)
    row = (first.ok, first.caller, first.version, first.error)
    assert row == (True, None, str(skill.version), None)  # the ledger keeps "1.0.0", text
    assert first.latency_s is not None and first.latency_s > 0
    assert (second.ok, second.caller) == (False, "mcp:x")
    assert second.error is not None and second.error.startswith(reply["error"]["error_type"])
    assert reply["error"]["message"] in second.error


def test_a_ledger_that_cannot_be_written_never_fails_a_call(
    shop_bank: tuple[SkillBank, Shop], capsys: pytest.CaptureFixture[str]
) -> None:
    bank, shop = shop_bank
    (bank.root / ".skillbank" / LEDGER_FILE).mkdir(parents=True)  # a folder, not a database
    for _ in range(3):
        assert bank.run(HISTORY, {"email": "bob@example.com"}, shop.tools()).ok
    err = capsys.readouterr().err
    assert err.count("cannot record calls in the ledger") == 1  # said once, not per call


def test_counts_can_be_limited_to_the_current_versions(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    for _ in range(3):
        ledger.record("a", ok=False, version="1.0.0")
    ledger.record("a", ok=True, version="1.1.0")
    ledger.record("a", ok=True, version="")
    ledger.record("b", ok=True, version="2.0.0")
    assert ledger.counts() == {"a": (2, 3), "b": (1, 0)}
    # A repaired skill (1.1.0) is judged on its own calls, not on those of the broken 1.0.0.
    assert ledger.counts({"a": "1.1.0"}) == {"a": (2, 0)}


# --- the schema and its migrations ------------------------------------------------------

# The schema every ledger had before the version table: what version 1 adopts.
_UNVERSIONED_SCHEMA = """
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


def _sql(path: Path, query: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


def _unversioned_ledger(path: Path) -> None:
    """A ledger as skillbank wrote it before schema versions, with three rows."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(_UNVERSIONED_SCHEMA)
        conn.executemany(
            "INSERT INTO calls (ts, skill_id, version, ok, latency_s, error, caller) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (1.0, "a", "1.0.0", 1, 0.25, None, "agent"),
                (2.0, "a", "1.0.0", 0, 0.5, "boom", None),
                (3.0, "b", "", 1, None, None, "agent:outcome"),
            ],
        )
        conn.commit()
    finally:
        conn.close()


_ROW = st.tuples(
    st.sampled_from(["a", "b", "c"]),
    st.sampled_from(["", "1.0.0", "1.1.0"]),
    st.booleans(),
    st.sampled_from(["skill", "caller"]),
)


@settings(max_examples=25, deadline=None)
@given(st.lists(_ROW, max_size=30), st.none() | st.dictionaries(st.sampled_from("abc"),
       st.sampled_from(["", "1.0.0", "1.1.0"])))  # fmt: skip
def test_counts_kept_as_rows_are_added_equal_counting_every_row(
    rows: list[tuple[str, str, bool, Any]], versions: dict[str, str] | None
) -> None:
    # `counts` reads the tallies `record` keeps; they must say what counting all rows says.
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ledger.sqlite"
        ledger = Ledger(path)
        for skill_id, version, ok, blame in rows:
            ledger.record(skill_id, ok=ok, version=version, blame=blame)
        expected: dict[str, Outcomes] = {}
        for skill_id, version, ok, blame in rows:
            if versions is not None and (
                skill_id not in versions or version not in (versions[skill_id], "")
            ):
                continue
            s, f = expected.get(skill_id, Outcomes(0, 0))
            expected[skill_id] = Outcomes(s + ok, f + (not ok and blame == "skill"))
        assert ledger.counts(versions) == expected
        assert ledger.counts(versions) == Ledger(path).counts(versions)
        ledger.close()


def test_rows_any_code_writes_are_counted(tmp_path: Path) -> None:
    # The tallies are the database's (a trigger): rows a process running older code adds
    # with a plain INSERT, as a rolling upgrade would, are counted too.
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path)
    ledger.record("a", ok=True, version="1.0.0")
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "INSERT INTO calls (ts, skill_id, version, ok, blame) VALUES"
            " (1.0, 'a', '1.0.0', 0, NULL), (2.0, 'a', '1.0.0', 0, 'caller'),"
            " (3.0, 'b', '', 1, NULL)"
        )
    conn.close()
    assert ledger.counts() == {"a": Outcomes(1, 1), "b": Outcomes(1, 0)}
    assert ledger.stats("a")["failures"] == 1


def test_a_new_ledger_records_its_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    Ledger(path).record("a", ok=True)
    assert _sql(path, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]


def test_a_ledger_from_before_versions_is_adopted_as_version_1(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    _unversioned_ledger(path)

    ledger = Ledger(path)  # opening an existing file brings it up to date at once

    assert _sql(path, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
    assert ledger.outcomes("a") == [
        CallRecord(1, 1.0, "a", "1.0.0", True, 0.25, None, "agent"),
        CallRecord(2, 2.0, "a", "1.0.0", False, 0.5, "boom", None),
    ]
    assert ledger.counts() == {"a": (1, 1), "b": (1, 0)}
    assert ledger.record("b", ok=False) == 4  # ids go on where they were
    assert Ledger(path).counts() == {"a": (1, 1), "b": (1, 1)}  # and a second open is a no-op


def test_a_ledger_from_a_newer_skillbank_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    Ledger(path).record("a", ok=True)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    conn.close()
    before = path.read_bytes()

    expected = rf"schema version {SCHEMA_VERSION + 1}.*up to {SCHEMA_VERSION}.*upgrade skillbank"
    with pytest.raises(LibraryError, match=expected):
        Ledger(path)
    fresh = Ledger(tmp_path / "other.sqlite")
    path.replace(fresh.path)  # a file that appears after the Ledger was made is checked too
    with pytest.raises(LibraryError, match="upgrade skillbank"):
        fresh.record("a", ok=True)
    assert fresh.path.read_bytes() == before


def test_a_database_that_is_not_a_ledger_is_not_written_into(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
    conn.close()
    with pytest.raises(LibraryError, match=r"cannot open the ledger.*'notes'.*no skillbank ledger"):
        Ledger(path)
    assert [name for (name,) in _sql(path, "SELECT name FROM sqlite_master")] == ["notes"]


def _add_a_column(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend the code knows a migration 2 (a real one would be appended to the list)."""
    from skillbank import ledger as ledger_module

    step = ledger_module._Migration(
        ledger_module.SCHEMA_VERSION + 1,
        "test: a column with a default, filled in for old rows",
        ("ALTER TABLE calls ADD COLUMN session TEXT NOT NULL DEFAULT 'unknown'",),
    )
    monkeypatch.setattr(ledger_module, "_MIGRATIONS", (*ledger_module._MIGRATIONS, step))


def test_rows_survive_a_migration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ledger.sqlite"
    _unversioned_ledger(path)
    before = Ledger(path).outcomes("a") + Ledger(path).outcomes("b")

    _add_a_column(monkeypatch)
    ledger = Ledger(path)

    assert ledger.schema_version == SCHEMA_VERSION + 1
    assert ledger.outcomes("a") + ledger.outcomes("b") == before
    assert _sql(path, "SELECT DISTINCT session FROM calls") == [("unknown",)]


def test_a_failed_migration_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from skillbank import ledger as ledger_module

    path = tmp_path / "ledger.sqlite"
    _unversioned_ledger(path)
    broken = ledger_module._Migration(
        2, "test: the first statement works, the second fails", ("CREATE TABLE t (x INTEGER)", "X")
    )
    monkeypatch.setattr(ledger_module, "_MIGRATIONS", (*ledger_module._MIGRATIONS, broken))
    with pytest.raises(LibraryError, match="cannot open the ledger"):
        Ledger(path)
    # Nothing of the failed step, not even the version table of the adoption, was kept.
    assert sorted(name for (name,) in _sql(path, "SELECT name FROM sqlite_master")) == [
        "calls",
        "calls_skill",
    ]
    assert _sql(path, "SELECT count(*) FROM calls") == [(3,)]


def _first_open(path: str, go: Any) -> None:
    """A process that opens a ledger at the same moment as others, with a migration 2 that
    counts how often it runs; any migration run twice would also fail (plain CREATE TABLE)."""
    from skillbank import ledger as ledger_module

    step = ledger_module._Migration(
        ledger_module.SCHEMA_VERSION + 1,
        "test: counts its own runs",
        ("CREATE TABLE runs (n INTEGER)", "INSERT INTO runs (n) VALUES (1)"),
    )
    ledger_module._MIGRATIONS = (*ledger_module._MIGRATIONS, step)
    go.wait(30)
    Ledger(path).record("a", ok=True)


def test_concurrent_first_opens_migrate_once(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    workers = 6
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Barrier(workers)
    procs = [ctx.Process(target=_first_open, args=(str(path), go)) for _ in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0] * workers
    for p in procs:
        p.close()
    assert _sql(path, "SELECT count(*) FROM runs") == [(1,)]
    assert _sql(path, "SELECT version FROM schema_version") == [(SCHEMA_VERSION + 1,)]
    assert _sql(path, "SELECT count(*) FROM calls") == [(workers,)]
    assert _sql(path, "PRAGMA journal_mode") == [("wal",)]


def test_a_failure_blamed_on_the_caller_counts_neither_way(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.record("a", ok=True, version="1.0.0")
    ledger.record("a", ok=False, version="1.0.0", error="no such customer", blame="caller")
    ledger.record("a", ok=False, version="1.0.0", error="boom")
    assert ledger.counts() == {"a": (1, 1)}
    assert ledger.stats("a") == {"calls": 3, "successes": 1, "failures": 1,
                                 "mean_latency_s": None}  # fmt: skip
    rows = ledger.outcomes("a")
    assert [r.blame for r in rows] == ["skill", "caller", "skill"]
    assert [r.failed_skill for r in rows] == [False, False, True]


# --- one warm connection per ledger (issue 14, item 17) --------------------------------------


def test_a_ledger_reuses_one_connection_for_its_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[sqlite3.Connection] = []
    connect = sqlite3.connect

    def counting_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        opened.append(connect(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr("skillbank.ledger.sqlite3.connect", counting_connect)
    ledger = Ledger(tmp_path / "ledger.sqlite")
    for i in range(20):
        ledger.record("a", ok=i % 2 == 0)
    assert ledger.counts() == {"a": (10, 10)} and ledger.stats("a")["calls"] == 20
    assert len(opened) == 1  # not one per row
    ledger.close()
    assert ledger.outcomes("a")[-1].ok is False  # closed: the next use opens again
    assert len(opened) == 2
    ledger.close()


def test_threads_share_a_ledger_without_losing_rows(tmp_path: Path) -> None:
    import threading

    ledger = Ledger(tmp_path / "ledger.sqlite")
    go = threading.Barrier(6)

    def write(worker: int) -> None:
        go.wait(30)
        for i in range(50):
            ledger.record(f"s{worker}", ok=True, latency_s=float(i))
            ledger.counts()  # reads interleave with other threads' writes

    threads = [threading.Thread(target=write, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert ledger.stats()["calls"] == 300
    for w in range(6):
        assert [r.latency_s for r in ledger.outcomes(f"s{w}")] == [float(i) for i in range(50)]
    ledger.close()


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_forked_child_opens_its_own_connection(tmp_path: Path) -> None:
    import os

    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.record("a", ok=True)  # the parent's connection is open across the fork
    pid = os.fork()
    if pid == 0:  # the child: record through the same object, then leave at once
        code = 0
        try:
            for _ in range(5):
                ledger.record("a", ok=False, caller="child")
        except BaseException:  # noqa: BLE001 - any failure is the exit code
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    ledger.record("a", ok=True)  # the parent's connection still works after the child left
    assert ledger.counts() == {"a": (2, 5)}
    assert [r.caller for r in ledger.outcomes("a")] == [None, *["child"] * 5, None]
    ledger.close()
