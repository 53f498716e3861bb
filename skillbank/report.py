"""A bank's report: skills by stage, success over time, latency and estimated savings.

`write_report` reads the skills, their git history (`skillbank.library.SkillLibrary.history`)
and the call ledger (`skillbank.ledger.Ledger`), and writes into one folder:

- ``index.html``: one self-contained page (inline CSS, charts as inline SVG, no scripts, nothing
  fetched over the network);
- ``summary.md``: the same skills table and the totals, in Markdown;
- ``stages.png`` and ``latency.png``, only when matplotlib is importable
  (``pip install 'skillbank[plot]'``).

Every piece of text from the bank or the ledger (ids, error messages, commit subjects) is
escaped, so a hostile error message shows as text. Given ``now``, the output is the same bytes
for the same bank and ledger.

Savings are an estimate from the skill's recorded cases, in the way
``benchmarks/savings_bench.py`` measures them: an agent without the skill makes one model call
per tool step and one for the answer; with it, one call to the skill and one for the answer.
So each successful call saves ``tool calls per case - 1`` model calls, and at least the tokens
of the intermediate tool arguments and results the model no longer reads or writes (counted
as characters / 4, ignoring prompt re-sends, so a lower bound).
"""

from __future__ import annotations

import datetime as dt
import html
import importlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skillbank.bank import SkillBank
from skillbank.ledger import CallRecord
from skillbank.progress import track
from skillbank.skill import STAGES, Skill
from skillbank.versioning import HistoryEntry

__all__ = ["REPORT_DIR", "ReportFiles", "write_report"]

#: The default output folder, inside the bank's state folder.
REPORT_DIR = "report"

#: How many days the success-over-time sparklines cover, ending on ``now``'s day (UTC).
WINDOW_DAYS = 30

#: Characters per token for the token estimate (a common rule of thumb, not a tokenizer).
CHARS_PER_TOKEN = 4

#: Longest error message shown, in characters.
_MAX_ERROR = 200

_STAGE_COLORS = {"cognitive": "#d9822b", "associative": "#2b7bd9", "autonomous": "#2ca25f"}
_OTHER_COLOR = "#888888"


@dataclass(frozen=True)
class ReportFiles:
    """The files `write_report` wrote."""

    #: The HTML page.
    html: Path
    #: The Markdown summary.
    markdown: Path
    #: The PNG charts (empty when matplotlib is not installed).
    pngs: tuple[Path, ...] = ()

    @property
    def paths(self) -> tuple[Path, ...]:
        """Every file written: the page, the summary, then the PNGs."""
        return (self.html, self.markdown, *self.pngs)


@dataclass(frozen=True)
class _Row:
    """What the report shows for one skill."""

    skill: Skill
    calls: int
    successes: int
    #: Per day of the window, oldest first: (successes, calls) that day.
    days: tuple[tuple[int, int], ...]
    mean_latency_s: float | None
    p95_latency_s: float | None
    last_ts: float | None
    last_error: str | None
    #: Mean tool calls in one recorded case.
    tool_calls_per_case: float
    #: Estimated tokens one successful call saves (see the module docstring).
    tokens_per_call: int
    history: tuple[HistoryEntry, ...]

    @property
    def failures(self) -> int:
        return self.calls - self.successes

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.calls if self.calls else None

    @property
    def posterior_mean(self) -> float:
        """The mean of Beta(1 + successes, 1 + failures): a uniform prior updated by the calls."""
        return (1 + self.successes) / (2 + self.calls)

    @property
    def model_calls_saved(self) -> float:
        return self.successes * max(self.tool_calls_per_case - 1, 0.0)

    @property
    def tokens_saved(self) -> int:
        return self.successes * self.tokens_per_call


def _chars(value: Any) -> int:
    return len(json.dumps(value, sort_keys=True, ensure_ascii=False, default=str))


def _tokens_per_call(skill: Skill) -> int:
    """Tool traffic per case that a skill call keeps out of the model's context, in tokens."""
    if not skill.cases:
        return 0
    per_case = []
    for case in skill.cases:
        inner = sum(_chars(dict(c.arguments)) + _chars(c.result) for c in case.calls)
        # With the skill, the model still writes the skill's arguments and reads its result.
        per_case.append(max(inner - _chars(dict(case.args)) - _chars(case.result), 0))
    return round(sum(per_case) / len(per_case) / CHARS_PER_TOKEN)


def _p95(values: Sequence[float]) -> float | None:
    """The 95th percentile by the nearest-rank method."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(0.95 * len(ordered)) - 1, 0)]


def _day(ts: float) -> dt.date:
    return dt.datetime.fromtimestamp(ts, dt.UTC).date()


def _row(
    skill: Skill, records: Sequence[CallRecord], history: Sequence[HistoryEntry], now: float
) -> _Row:
    last_day = _day(now)
    first_day = last_day - dt.timedelta(days=WINDOW_DAYS - 1)
    per_day = [[0, 0] for _ in range(WINDOW_DAYS)]
    for r in records:
        index = (_day(r.ts) - first_day).days
        if 0 <= index < WINDOW_DAYS:
            per_day[index][0] += int(r.ok)
            per_day[index][1] += 1
    latencies = [float(r.latency_s) for r in records if r.latency_s is not None]
    errors = [r for r in records if r.error]
    cases = skill.cases
    return _Row(
        skill=skill,
        calls=len(records),
        successes=sum(1 for r in records if r.ok),
        days=tuple((s, n) for s, n in per_day),
        mean_latency_s=sum(latencies) / len(latencies) if latencies else None,
        p95_latency_s=_p95(latencies),
        last_ts=max((r.ts for r in records), default=None),
        last_error=max(errors, key=lambda r: (r.ts, r.id)).error if errors else None,
        tool_calls_per_case=sum(len(c.calls) for c in cases) / len(cases) if cases else 0.0,
        tokens_per_call=_tokens_per_call(skill),
        history=tuple(history),
    )


# --------------------------------------------------------------------------- formatting


def _when(ts: float | None) -> str:
    if ts is None:
        return "never"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _secs(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{1000 * x:.0f} ms" if x < 1 else f"{x:.2f} s"


def _short_error(error: str | None) -> str:
    if not error:
        return ""
    one_line = " ".join(error.split())
    return one_line if len(one_line) <= _MAX_ERROR else one_line[: _MAX_ERROR - 1] + "…"


def _num(x: float) -> str:
    return f"{x:,.0f}" if x == int(x) else f"{x:,.1f}"


_HEADERS = (
    "skill",
    "stage",
    "version",
    "cases",
    "calls",
    "success rate",
    "posterior mean",
    "last used",
    "last error",
)


def _cells(row: _Row) -> tuple[str, ...]:
    """The table cells of one skill, as plain (unescaped) text."""
    s = row.skill
    stage = s.stage + (f" (deprecated by {s.deprecated_by})" if s.deprecated_by else "")
    return (
        s.id,
        stage,
        str(s.version),
        str(len(s.cases)),
        f"{row.calls} ({row.successes} ok, {row.failures} failed)",
        _pct(row.success_rate),
        f"{row.posterior_mean:.2f}",
        _when(row.last_ts),
        _short_error(row.last_error),
    )


def _stage_counts(rows: Sequence[_Row]) -> dict[str, int]:
    counts: dict[str, int] = dict.fromkeys(STAGES, 0)
    for row in rows:
        counts[row.skill.stage] = counts.get(row.skill.stage, 0) + 1
    return counts


@dataclass(frozen=True)
class _Totals:
    skills: int
    calls: int
    successes: int
    orphan_calls: int
    model_calls_saved: float
    tokens_saved: int


def _totals(rows: Sequence[_Row], all_calls: int) -> _Totals:
    calls = sum(r.calls for r in rows)
    return _Totals(
        skills=len(rows),
        calls=calls,
        successes=sum(r.successes for r in rows),
        orphan_calls=max(all_calls - calls, 0),
        model_calls_saved=sum(r.model_calls_saved for r in rows),
        tokens_saved=sum(r.tokens_saved for r in rows),
    )


_SAVINGS_NOTE = (
    "Estimate, not a measurement: each successful call is counted as saving (tool calls per "
    "recorded case - 1) model calls, since an agent without the skill makes one model call per "
    "tool step and one for the answer, and with it one call to the skill and one for the "
    f"answer. Tokens: the characters / {CHARS_PER_TOKEN} of the tool arguments and results "
    "inside the skill that the model no longer writes or reads, minus the skill's own "
    "arguments and result; prompt re-sends are ignored, so this is a lower bound. "
    "benchmarks/savings_bench.py measures real token counts."
)


# --------------------------------------------------------------------------- SVG

_E = html.escape
_FONT = 'font-family="ui-monospace, monospace" font-size="11"'


def _svg(width: float, height: float, title: str, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="{_E(title)}">'
        f"<title>{_E(title)}</title>" + "".join(body) + "</svg>"
    )


def _stage_svg(counts: dict[str, int]) -> str:
    bar_w, gap, chart_h, top, bottom = 90, 30, 150, 20, 34
    peak = max(counts.values(), default=0) or 1
    width = gap + len(counts) * (bar_w + gap)
    body = []
    for i, (stage, n) in enumerate(counts.items()):
        h = chart_h * n / peak
        x = gap + i * (bar_w + gap)
        y = top + chart_h - h
        color = _STAGE_COLORS.get(stage, _OTHER_COLOR)
        body.append(
            f'<rect x="{x}" y="{y:.1f}" width="{bar_w}" height="{h:.1f}" fill="{color}"/>'
            f'<text x="{x + bar_w / 2:.1f}" y="{y - 4:.1f}" text-anchor="middle" {_FONT}>{n}</text>'
            f'<text x="{x + bar_w / 2:.1f}" y="{top + chart_h + 16}" text-anchor="middle" '
            f"{_FONT}>{_E(stage)}</text>"
        )
    return _svg(width, top + chart_h + bottom, "Skills by stage", body)


def _hbars_svg(
    title: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, str, Sequence[float | None]]],
    fmt: Any,
) -> str:
    """Horizontal bars: one group per label, one bar per series (name, color, values)."""
    label_w = 7 * max((len(label) for label in labels), default=0) + 12
    bar_h, group_gap, plot_w, value_w = 12, 10, 320, 80
    group_h = bar_h * len(series) + group_gap
    legend_h = 20
    peak = max((v for _, _, vs in series for v in vs if v is not None), default=0.0) or 1.0
    body = []
    for j, (name, color, _) in enumerate(series):
        x = label_w + j * 120
        body.append(
            f'<rect x="{x}" y="4" width="10" height="10" fill="{color}"/>'
            f'<text x="{x + 14}" y="13" {_FONT}>{_E(name)}</text>'
        )
    for i, label in enumerate(labels):
        y0 = legend_h + i * group_h
        body.append(
            f'<text x="{label_w - 6}" y="{y0 + bar_h * len(series) / 2 + 4:.1f}" '
            f'text-anchor="end" {_FONT}>{_E(label)}</text>'
        )
        for j, (_, color, values) in enumerate(series):
            v = values[i]
            w = 0.0 if v is None else plot_w * v / peak
            y = y0 + j * bar_h
            body.append(
                f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h - 2}" '
                f'fill="{color}"/>'
                f'<text x="{label_w + w + 4:.1f}" y="{y + bar_h - 3}" {_FONT}>{_E(fmt(v))}</text>'
            )
    height = legend_h + max(len(labels), 1) * group_h
    return _svg(label_w + plot_w + value_w, height, title, body)


def _sparkline_svg(row: _Row) -> str:
    """Success rate per day over the window: a dot per day with calls, joined by a line."""
    width, height, pad = 180, 36, 4
    step = (width - 2 * pad) / max(WINDOW_DAYS - 1, 1)
    points = [
        (pad + i * step, pad + (height - 2 * pad) * (1 - s / n))
        for i, (s, n) in enumerate(row.days)
        if n
    ]
    body = [
        f'<line x1="{pad}" y1="{pad}" x2="{width - pad}" y2="{pad}" stroke="#ddd"/>'
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
        'stroke="#ddd"/>'
    ]
    if len(points) > 1:
        coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        body.append(f'<polyline points="{coords}" fill="none" stroke="#2b7bd9"/>')
    body.extend(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2" fill="#2b7bd9"/>' for x, y in points)
    title = f"{row.skill.id}: success rate per day, last {WINDOW_DAYS} days"
    return _svg(width, height, title, body)


# --------------------------------------------------------------------------- HTML

_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; }
h1, h2 { font-weight: 600; }
table { border-collapse: collapse; margin: 1em 0; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
td.num { text-align: right; }
code, .id { font-family: ui-monospace, monospace; }
.error { color: #a00; font-family: ui-monospace, monospace; max-width: 28em;
         overflow-wrap: anywhere; }
.note { color: #555; max-width: 60em; }
.charts { display: flex; flex-wrap: wrap; gap: 2em; align-items: flex-start; }
figure { margin: 0; }
"""


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], classes: Sequence[str]) -> str:
    head = "".join(f"<th>{_E(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="{c}">{cell}</td>' if c else f"<td>{cell}</td>"
            for c, cell in zip(classes, row, strict=True)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html(bank: SkillBank, rows: Sequence[_Row], totals: _Totals, now: float) -> str:
    counts = _stage_counts(rows)
    ids = [r.skill.id for r in rows]
    skill_rows = [[_E(c) for c in _cells(r)] for r in rows]
    classes = ("id", "", "", "num", "num", "num", "num", "", "error")
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>skillbank report: {_E(bank.root.name)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>skillbank report: <code>{_E(bank.root.name)}</code></h1>",
        f'<p class="note">Generated {_E(_when(now))}. {totals.skills} skills, '
        f"{totals.calls} recorded calls ({totals.successes} succeeded)"
        + (
            f", and {totals.orphan_calls} calls to skills no longer in the bank"
            if totals.orphan_calls
            else ""
        )
        + ".</p>",
        "<h2>Skills by stage</h2>",
        f'<div class="charts"><figure>{_stage_svg(counts)}</figure></div>',
        "<h2>Skills</h2>",
        _table(_HEADERS, skill_rows, classes) if rows else "<p>No skills yet.</p>",
        '<p class="note">Posterior mean: the mean of Beta(1 + successes, 1 + failures), a '
        "success rate that starts at 0.5 and trusts more calls more.</p>",
        f"<h2>Success over time (last {WINDOW_DAYS} days, UTC)</h2>",
    ]
    spark_rows = [
        [
            _E(r.skill.id),
            _sparkline_svg(r),
            str(sum(n for _, n in r.days)),
            _pct(sum(s for s, _ in r.days) / max(sum(n for _, n in r.days), 1))
            if any(n for _, n in r.days)
            else "-",
        ]
        for r in rows
    ]
    out.append(
        _table(
            ("skill", "success rate per day", "calls in window", "success rate"),
            spark_rows,
            ("id", "", "num", "num"),
        )
        if rows
        else "<p>No skills yet.</p>"
    )
    out.append("<h2>Latency</h2>")
    timed = [r for r in rows if r.mean_latency_s is not None]
    if timed:
        out.append(
            "<figure>"
            + _hbars_svg(
                "Latency per skill: mean and p95",
                [r.skill.id for r in timed],
                [
                    ("mean", "#2b7bd9", [r.mean_latency_s for r in timed]),
                    ("p95", "#d9822b", [r.p95_latency_s for r in timed]),
                ],
                _secs,
            )
            + "</figure>"
        )
    else:
        out.append("<p>No call with a recorded latency yet.</p>")
    out.append("<h2>Estimated savings</h2>")
    out.append(f'<p class="note">{_E(_SAVINGS_NOTE)}</p>')
    if rows:
        out.append(
            "<figure>"
            + _hbars_svg(
                "Estimated model calls avoided per skill",
                ids,
                [
                    (
                        "model calls avoided (estimate)",
                        "#2ca25f",
                        [r.model_calls_saved for r in rows],
                    )
                ],
                lambda v: "-" if v is None else _num(v),
            )
            + "</figure>"
        )
        savings = [
            [
                _E(r.skill.id),
                str(r.successes),
                _num(r.tool_calls_per_case),
                _num(r.model_calls_saved),
                f"{r.tokens_saved:,}",
            ]
            for r in rows
        ]
        savings.append(
            [
                "<strong>total</strong>",
                str(totals.successes),
                "",
                _num(totals.model_calls_saved),
                f"{totals.tokens_saved:,}",
            ]
        )
        out.append(
            _table(
                (
                    "skill",
                    "successful calls",
                    "tool calls per case",
                    "model calls avoided (est.)",
                    "tokens avoided (est., lower bound)",
                ),
                savings,
                ("id", "num", "num", "num", "num"),
            )
        )
    out.append("<h2>Stage history (git)</h2>")
    history = sorted(
        ((e, r.skill.id) for r in rows for e in r.history),
        key=lambda pair: (pair[0].date, pair[1], pair[0].commit),
        reverse=True,
    )
    if history:
        out.append(
            _table(
                ("date", "skill", "version", "stage", "commit", "subject"),
                [
                    [
                        _E(e.date),
                        _E(sid),
                        _E(e.version),
                        _E(
                            e.stage
                            + (f" (deprecated by {e.deprecated_by})" if e.deprecated_by else "")
                        ),
                        f"<code>{_E(e.commit[:12])}</code>",
                        _E(e.subject),
                    ]
                    for e, sid in history
                ],
                ("", "id", "", "", "", ""),
            )
        )
    else:
        out.append("<p>No commits yet.</p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- Markdown


def _md_cell(text: str) -> str:
    # Markdown renderers pass raw HTML through, so escape it; a pipe would end the cell.
    return html.escape(" ".join(text.split()), quote=False).replace("|", "\\|")


def _markdown(bank: SkillBank, rows: Sequence[_Row], totals: _Totals, now: float) -> str:
    counts = _stage_counts(rows)
    lines = [
        f"# skillbank report: {_md_cell(bank.root.name)}",
        "",
        f"Generated {_when(now)}.",
        "",
        "## Totals",
        "",
        f"- Skills: {totals.skills} ("
        + ", ".join(f"{n} {_md_cell(stage)}" for stage, n in counts.items())
        + ")",
        f"- Recorded calls: {totals.calls} ({totals.successes} succeeded, "
        f"{totals.calls - totals.successes} failed)",
    ]
    if totals.orphan_calls:
        lines.append(f"- Calls to skills no longer in the bank: {totals.orphan_calls}")
    lines += [
        f"- Model calls avoided (estimate): {_num(totals.model_calls_saved)}",
        f"- Tokens avoided (estimate, lower bound): {totals.tokens_saved:,}",
        "",
        "## Skills",
        "",
    ]
    if rows:
        lines.append("| " + " | ".join(_HEADERS) + " |")
        lines.append(
            "|" + "|".join("---:" if h in {"cases", "calls"} else "---" for h in _HEADERS) + "|"
        )
        lines += ["| " + " | ".join(_md_cell(c) for c in _cells(r)) + " |" for r in rows]
    else:
        lines.append("No skills yet.")
    lines += [
        "",
        "Posterior mean: the mean of Beta(1 + successes, 1 + failures).",
        "",
        _SAVINGS_NOTE,
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- PNG


def _figure_class() -> Any | None:
    """matplotlib's `Figure` class, or None when the plotting extra is not installed."""
    try:
        # A bare Figure (no pyplot) renders with Agg and leaves the caller's backend alone.
        return importlib.import_module("matplotlib.figure").Figure
    except ImportError:
        return None


def _write_pngs(out: Path, rows: Sequence[_Row]) -> tuple[Path, ...]:
    figure_cls = _figure_class()
    if figure_cls is None:
        return ()
    # No timestamps or version strings in the files, so they are the same bytes each run.
    metadata: dict[str, Any] = {"Software": None}
    counts = _stage_counts(rows)
    fig = figure_cls(figsize=(5, 3.2), dpi=100)
    ax = fig.add_subplot()
    ax.bar(
        list(counts),
        list(counts.values()),
        color=[_STAGE_COLORS.get(s, _OTHER_COLOR) for s in counts],
    )
    ax.set_title("Skills by stage")
    ax.set_ylabel("skills")
    fig.tight_layout()
    stages = out / "stages.png"
    fig.savefig(stages, format="png", metadata=metadata)

    timed = [r for r in rows if r.mean_latency_s is not None]
    fig = figure_cls(figsize=(8, 1.5 + 0.45 * max(len(timed), 1)), dpi=100)
    ax = fig.add_subplot()
    if timed:
        ys = list(range(len(timed)))
        ax.barh([y - 0.2 for y in ys], [r.mean_latency_s for r in timed], 0.4, label="mean")
        ax.barh([y + 0.2 for y in ys], [r.p95_latency_s for r in timed], 0.4, label="p95")
        ax.set_yticks(ys, [r.skill.id for r in timed], fontsize=7)
        ax.invert_yaxis()
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no call with a recorded latency yet", ha="center", va="center")
    ax.set_title("Latency per skill")
    ax.set_xlabel("seconds")
    fig.tight_layout()
    latency = out / "latency.png"
    fig.savefig(latency, format="png", metadata=metadata)
    return (stages, latency)


# --------------------------------------------------------------------------- entry points


def write_report(bank: SkillBank, out: Path, *, now: float | None = None) -> ReportFiles:
    """Write the bank's report into the folder ``out`` (created if missing).

    Args:
        bank: The bank to report on.
        out: The output folder; ``index.html``, ``summary.md`` and any PNGs are overwritten.
        now: The report's time, in seconds since the epoch (default: now). It fixes the
            success-over-time window and the "generated" line, so the output is reproducible.

    Returns:
        The paths written.

    Raises:
        LibraryError: the skills or the ledger cannot be read.
        OSError: the folder cannot be written.
    """
    now = time.time() if now is None else now
    ledger = bank.ledger
    rows = [
        _row(skill, ledger.outcomes(skill.id), bank.library.history(skill.id), now)
        for skill in track(sorted(bank.skills(), key=lambda s: s.id), "report")
    ]
    all_calls = ledger.stats()["calls"]
    totals = _totals(rows, int(all_calls or 0))
    out.mkdir(parents=True, exist_ok=True)
    page = out / "index.html"
    page.write_text(_html(bank, rows, totals, now), encoding="utf-8")
    summary = out / "summary.md"
    summary.write_text(_markdown(bank, rows, totals, now), encoding="utf-8")
    return ReportFiles(html=page, markdown=summary, pngs=_write_pngs(out, rows))
