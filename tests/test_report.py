"""Tests for skillbank/report.py: the HTML page, the Markdown summary and the command."""

from __future__ import annotations

import importlib.util
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from skillbank.bank import SkillBank
from skillbank.cli import cli
from skillbank.report import ReportFiles, write_report
from skillbank.trajectory import load_trajectories

EXAMPLE = Path(__file__).resolve().parent.parent / "skillbank/examples/trajectories/shop.jsonl"
DAY = 86_400.0
NOW = 1_760_000_000.0  # 2025-10-09 UTC
HOSTILE = '<script>alert(1)</script> & "quotes" | pipe'

VOID = {"meta", "br", "hr", "img", "link", "input"}


class _Checker(HTMLParser):
    """Fails on unbalanced or misnested tags; collects the text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.text: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _check_html(page: str) -> _Checker:
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert checker.problems == []
    assert checker.stack == []
    return checker


@pytest.fixture
def shop_bank(tmp_path: Path) -> SkillBank:
    bank = SkillBank.init(tmp_path / "bank")
    bank.learn(load_trajectories(EXAMPLE), branch="current")
    return bank


def _fill_ledger(bank: SkillBank) -> dict[str, tuple[int, int]]:
    """Write calls over several days; return (calls, successes) per skill."""
    ledger = bank.ledger
    ids = [s.id for s in bank.skills()]
    expected: dict[str, tuple[int, int]] = {}
    for n, sid in enumerate(ids[:-1]):  # the last skill is never called
        calls = ok = 0
        for day in range(5):
            for k in range(n + 1):
                success = (day + k) % 3 != 0
                ledger.record(
                    sid,
                    ok=success,
                    version="1.0.0",
                    latency_s=0.01 * (k + 1) + 0.001 * day,
                    error=None if success else f"KeyError day {day}",
                    caller="test",
                    ts=NOW - (4 - day) * DAY - 60 * k,
                )
                calls += 1
                ok += success
        expected[sid] = (calls, ok)
    ledger.record(ids[0], ok=False, version="1.0.0", error=HOSTILE, caller="test", ts=NOW - 10)
    calls, ok = expected[ids[0]]
    expected[ids[0]] = (calls + 1, ok)
    expected[ids[-1]] = (0, 0)
    return expected


def test_report_shows_every_skill_with_ledger_counts(shop_bank: SkillBank, tmp_path: Path) -> None:
    expected = _fill_ledger(shop_bank)
    files = write_report(shop_bank, tmp_path / "out", now=NOW)
    assert files.html == tmp_path / "out" / "index.html"
    assert files.markdown == tmp_path / "out" / "summary.md"
    page = files.html.read_text(encoding="utf-8")
    summary = files.markdown.read_text(encoding="utf-8")
    checker = _check_html(page)
    assert {"svg", "rect", "polyline", "table"} <= set(checker.tags)
    assert "script" not in checker.tags  # self-contained: no scripts at all
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page
    for sid, (calls, ok) in expected.items():
        cell = f"{calls} ({ok} ok, {calls - ok} failed)"
        assert f"| {sid} |" in summary
        assert f"| {cell} |" in summary
        assert f'<td class="id">{sid}</td>' in page
        assert f'<td class="num">{cell}</td>' in page
    total_calls = sum(c for c, _ in expected.values())
    total_ok = sum(o for _, o in expected.values())
    assert f"- Recorded calls: {total_calls} ({total_ok} succeeded" in summary
    assert f"- Skills: {len(expected)} (" in summary
    assert "never" in summary  # the uncalled skill
    assert "estimate" in page.lower() and "estimate" in summary.lower()


def test_posterior_and_success_rate(shop_bank: SkillBank, tmp_path: Path) -> None:
    sid = shop_bank.skills()[0].id
    ledger = shop_bank.ledger
    for ok in (True, True, True, False):
        ledger.record(sid, ok=ok, version="1.0.0", latency_s=0.5, caller="test", ts=NOW - 5)
    summary = write_report(shop_bank, tmp_path / "out", now=NOW).markdown.read_text("utf-8")
    row = next(line for line in summary.splitlines() if line.startswith(f"| {sid} |"))
    # 3 of 4 succeeded; Beta(1 + 3, 1 + 1) has mean 4/6.
    assert "| 75% | 0.67 |" in row


def test_hostile_error_text_is_escaped(shop_bank: SkillBank, tmp_path: Path) -> None:
    _fill_ledger(shop_bank)
    files = write_report(shop_bank, tmp_path / "out", now=NOW)
    page = files.html.read_text(encoding="utf-8")
    summary = files.markdown.read_text(encoding="utf-8")
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script" not in summary
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in summary
    assert "\\| pipe" in summary  # a pipe cannot break the Markdown table
    checker = _check_html(page)
    assert any(HOSTILE in text for text in checker.text)  # shown as text, exactly


def test_empty_bank_still_writes_a_report(tmp_path: Path) -> None:
    bank = SkillBank.init(tmp_path / "bank")
    files = write_report(bank, tmp_path / "out", now=NOW)
    _check_html(files.html.read_text(encoding="utf-8"))
    summary = files.markdown.read_text(encoding="utf-8")
    assert "- Skills: 0 (0 cognitive, 0 associative, 0 autonomous)" in summary
    assert "No skills yet." in summary


def test_output_is_deterministic_given_now(shop_bank: SkillBank, tmp_path: Path) -> None:
    _fill_ledger(shop_bank)
    a = write_report(shop_bank, tmp_path / "a", now=NOW)
    b = write_report(shop_bank, tmp_path / "b", now=NOW)
    for x, y in zip(a.paths, b.paths, strict=True):
        assert x.read_bytes() == y.read_bytes(), x.name


def test_savings_and_history(shop_bank: SkillBank, tmp_path: Path) -> None:
    skill = max(shop_bank.skills(), key=lambda s: len(s.cases[0].calls))
    per_case = sum(len(c.calls) for c in skill.cases) / len(skill.cases)
    ledger = shop_bank.ledger
    for _ in range(3):
        ledger.record(skill.id, ok=True, version="1.0.0", caller="test", ts=NOW - 5)
    ledger.record(skill.id, ok=False, version="1.0.0", caller="test", ts=NOW - 5)
    page = write_report(shop_bank, tmp_path / "out", now=NOW).html.read_text("utf-8")
    saved = 3 * (per_case - 1)  # only successful calls count
    saved_text = f"{saved:,.0f}" if saved == int(saved) else f"{saved:,.1f}"
    assert f'<td class="id">{skill.id}</td><td class="num">3</td>' in page
    assert f'<td class="num">{saved_text}</td>' in page
    assert "Stage history (git)" in page
    assert "skillbank learn" in page  # the commit subject from library.history


def test_pngs_when_matplotlib_is_installed(shop_bank: SkillBank, tmp_path: Path) -> None:
    if importlib.util.find_spec("matplotlib") is None:
        pytest.skip("matplotlib is not installed (the plot extra)")
    _fill_ledger(shop_bank)
    files = write_report(shop_bank, tmp_path / "out", now=NOW)
    assert [p.name for p in files.pngs] == ["stages.png", "latency.png"]
    for path in files.pngs:
        assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_report_command(shop_bank: SkillBank, tmp_path: Path) -> None:
    out = tmp_path / "cli-out"
    result = CliRunner().invoke(cli, ["report", "--root", str(shop_bank.root), "--out", str(out)])
    assert result.exit_code == 0, result.output
    printed = result.output.split()
    assert str(out / "index.html") in printed and str(out / "summary.md") in printed
    assert (out / "index.html").is_file()


def test_report_command_default_out_and_help(shop_bank: SkillBank) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["report", "--root", str(shop_bank.root)])
    assert result.exit_code == 0, result.output
    assert (shop_bank.root / ".skillbank" / "report" / "index.html").is_file()
    assert "Example:" in runner.invoke(cli, ["report", "--help"]).output


def test_report_command_not_a_bank(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["report", "--root", str(tmp_path)])
    assert result.exit_code == 1
    assert "not a skill bank" in result.output


def test_report_files_paths() -> None:
    files = ReportFiles(Path("a.html"), Path("b.md"), (Path("c.png"),))
    assert files.paths == (Path("a.html"), Path("b.md"), Path("c.png"))
