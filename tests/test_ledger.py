"""The ledger: rows in, counts out, and no lost writes when processes write at once."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skillbank.bank import SkillBank
from skillbank.errors import LibraryError, SkillArgumentError
from skillbank.examples.shop import Shop
from skillbank.ledger import LEDGER_FILE, CallRecord, Ledger
from skillbank.trajectory import load_trajectories
from tests.conftest import EXAMPLE_TRAJECTORIES

HISTORY = "find_customer_list_orders"


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
    assert ledger.counts() == {"a": (2, 1), "b": (0, 1)}


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
    assert (first.ok, first.caller, first.version, first.error) == (True, None, skill.version, None)
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
