"""A problem at a place in a skill's source, and the one way such a problem is shown.

A leaf: it imports nothing of skillbank, so every stage (validation, signature reading, the
gate, the errors that carry findings) can use it without pulling in another.

Positions follow libcst: ``line`` is 1-based, ``col`` 0-based. `caret` turns a position into
the three lines a compiler prints: the header, the source line, and a caret under the column.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

__all__ = ["Finding", "caret", "parse_finding"]


def caret(head: str, lines: list[str], line: int, col: int) -> str:
    """``head``, then line ``line`` of ``lines`` and a caret under 0-based column ``col``.

    Only ``head`` when ``line`` is outside the text (a finding about the whole file).
    """
    if 1 <= line <= len(lines):
        text = lines[line - 1]
        return f"{head}\n    {text}\n    {' ' * min(max(col, 0), len(text))}^"
    return head


@dataclass(frozen=True)
class Finding:
    """One policy violation at a place in the source."""

    #: The rule id, e.g. ``SB201``.
    rule: str
    #: 1-based line.
    line: int
    #: 0-based column.
    col: int
    #: What is wrong and what to do instead.
    message: str

    def render(self, source: str = "", path: str = "<skill>") -> str:
        """``path:line:col: RULE message``, then the source line and a caret under the column."""
        head = f"{path}:{self.line}:{self.col}: {self.rule} {self.message}"
        return caret(head, source.splitlines(), self.line, self.col)


def parse_finding(source: str, exc: BaseException) -> Finding:
    """Finding SB001 for a source that libcst could not parse (``exc`` is what it raised).

    libcst's native parser sometimes reports the token after the mistake; CPython's own parser
    (``ast.parse`` only parses, it never runs anything) points at the mistake itself, so its
    position wins when it finds one.
    """
    raw_line, raw_col = getattr(exc, "raw_line", None), getattr(exc, "raw_column", None)
    if not (isinstance(raw_line, int) and isinstance(raw_col, int)):
        # Not a syntax error: odd names, or nesting deeper than the parser goes.
        return Finding("SB001", 1, 0, f"cannot parse the source: {exc}")
    try:
        ast.parse(source)
    except SyntaxError as err:
        line, col = err.lineno or 1, max((err.offset or 1) - 1, 0)
        return Finding("SB001", line, col, f"syntax error: {err.msg}; fix it so the module parses")
    except (ValueError, RecursionError, MemoryError):
        pass
    message = getattr(exc, "message", str(exc))
    return Finding(
        "SB001", raw_line, raw_col, f"syntax error: {message}; fix it so the module parses"
    )
