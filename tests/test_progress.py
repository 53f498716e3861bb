"""Progress bars: drawn on a terminal, absent when piped and under ``--json``."""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from skillbank.progress import progress, quiet, shown, track
from tests.conftest import EXAMPLE_TRAJECTORIES


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_no_bar_when_standard_error_is_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    pipe = io.StringIO()
    monkeypatch.setattr(sys, "stderr", pipe)
    assert not shown()
    assert list(track([1, 2, 3], "counting")) == [1, 2, 3]
    with progress("counting", total=None) as step:
        step(5)
    assert pipe.getvalue() == ""


def test_a_terminal_gets_a_bar_unless_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert shown()
    assert list(track(["a", "b", "c"], "counting things")) == ["a", "b", "c"]
    assert "counting things" in terminal.getvalue()

    terminal.seek(0)
    terminal.truncate()
    with quiet():
        assert not shown()
        assert list(track([1, 2, 3], "counting things")) == [1, 2, 3]
    assert terminal.getvalue() == ""
    assert shown()  # quiet ends with its block


def _learn_on_a_terminal(root: Path, *flags: str) -> tuple[str, str]:
    """Run ``skillbank learn`` with standard error on a pseudo-terminal; (stdout, stderr)."""
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "skillbank", "learn", str(EXAMPLE_TRAJECTORIES),
             "--root", str(root), "--branch", "current", *flags],
            stdout=subprocess.PIPE, stderr=secondary, stdin=subprocess.DEVNULL,
            env={**os.environ, "COLUMNS": "100", "TERM": "xterm"},
        )  # fmt: skip
        os.close(secondary)
        chunks = []
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        out = proc.communicate(timeout=300)[0].decode()
    finally:
        os.close(primary)
    assert proc.returncode == 0, out
    return out, b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
def test_learn_shows_progress_on_a_terminal_and_none_with_json(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "skillbank", "init", str(tmp_path / "a")],
                   check=True, capture_output=True)  # fmt: skip
    subprocess.run([sys.executable, "-m", "skillbank", "init", str(tmp_path / "b")],
                   check=True, capture_output=True)  # fmt: skip
    _, err = _learn_on_a_terminal(tmp_path / "a")
    assert "learning" in err
    out, err = _learn_on_a_terminal(tmp_path / "b", "--json")
    assert json.loads(out)["commit"] and err == ""
