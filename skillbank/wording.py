"""Reading a task's words: the values it holds and the words that change what it asks.

A reflex (`skillbank.reflex`) must tell a task's values from its request. `scan_values` finds
the values: phrases between quotes or parentheses first (their words are values, never part
of the request, so a quoted reason "no longer needed" is no negation), then emails, dates,
paths, ids and numbers outside them, with the kinds of `skillbank.patterns`. `words` reads the
rest as lower-case words of any script (`skillbank.search.fold`), contractions kept whole, and
the word sets below name the words that turn a request around, make it conditional, widen
it, join a second action, ask a question, or stand for a number without saying it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from skillbank.patterns import Kind, value_regex
from skillbank.search import fold

__all__ = [
    "CLAUSE_BREAK",
    "COMPOUND",
    "CONDITION",
    "NEGATION",
    "QUANTITY",
    "QUESTION",
    "QUOTES",
    "SCOPE",
    "STRONG_KINDS",
    "Value",
    "is_question",
    "mask",
    "overlaps",
    "read_words",
    "scan_values",
    "tail_after",
    "word_before",
]

#: Words that turn a request around.
NEGATION = frozenset(
    "not no never don't dont doesn't didn't isn't aren't wasn't without except nor neither "
    "cannot can't won't shouldn't mustn't instead stop undo avoid".split()
)
#: Words that make a request conditional.
CONDITION = frozenset(
    "if unless whenever provided assuming otherwise until only whether in_case".split()
)
#: Words that ask for more than one thing of a kind.
SCOPE = frozenset("every all each any both everything everyone anything everybody".split())
#: Words that join a second action.
COMPOUND = frozenset("and then also afterwards after plus next additionally".split())
#: Words that open a question.
QUESTION = frozenset(
    "what which who whom whose when where why how is are was were do does did has have had "
    "can could would will should may shall".split()
)
#: Words that stand for a number without saying it.
QUANTITY = frozenset(
    "few several some many couple dozen dozens lots lot bunch handful plenty enough more most "
    "half zero one two three four five six seven eight nine ten eleven twelve fifteen twenty "
    "thirty forty fifty hundred hundreds thousand".split()
)

_RAW_WORD = re.compile(r"[^\W\d_]+(?:['\u2019][^\W\d_]+)?")
#: Opening and closing delimiters of a value, parentheses last.
QUOTES = (("'", "'"), ('"', '"'), ("\u2018", "\u2019"), ("\u201c", "\u201d"), ("(", ")"))
_DELIMITED = re.compile(
    "|".join(
        rf"(?<![\w]){re.escape(a)}([^{re.escape(a + b)}\n]+?){re.escape(b)}(?![\w])"
        for a, b in QUOTES
    )
)
_NUMBER = re.compile(r"(?<![\w.-])-?\d+(?:\.\d+)?(?![\w@]|[.-]\w)")
_STRONG_ID = re.compile(
    r"(?<![\w@.-])(?:(?=[\w-]*\d)[^\W_]+(?:[-_][^\W_]+)+|[A-Z][A-Z0-9]*(?:[-_][A-Z0-9]+)+"
    r"|[^\W\d_]+\d[^\W_]*|\w+_\w+)(?![\w@]|[.-]\w)"
)
_SCAN: tuple[tuple[Kind, re.Pattern[str]], ...] = (
    ("email", re.compile(rf"(?<![\w.%+-])(?:{value_regex('email')})", re.IGNORECASE)),
    ("date", re.compile(rf"(?<![\w-])(?:{value_regex('date')})(?![\w-])")),
    ("path", re.compile(rf"(?<![\w@])(?:{value_regex('path')})(?![\w@])")),
    ("id", _STRONG_ID),
    ("number", _NUMBER),
)

#: Kinds of value that never sit inside free text unnoticed.
STRONG_KINDS = frozenset({"email", "id", "date", "path", "delimited"})
#: A clause break inside free text: what follows is another sentence, not the value.
CLAUSE_BREAK = re.compile(r"[;\n]|[.!?]\s+\S")


@dataclass(frozen=True)
class Value:
    """A value found in a task text."""

    #: Its kind; "delimited" between quotes or parentheses, "tail" after a learned marker.
    kind: Kind | Literal["delimited", "tail"]
    #: The value as written.
    text: str
    #: Where it starts in the text.
    start: int
    #: Where it ends.
    end: int
    #: The argument it was read for (a learned phrasing's slot), "" otherwise.
    arg: str = ""


def read_words(text: str) -> list[str]:
    """The words of ``text``, folded (``Don’t`` -> ``don't``); digits are not words."""
    return [w.replace("\u2019", "'") for w in _RAW_WORD.findall(fold(text))]


def is_question(text: str) -> bool:
    """True when ``text`` ends with "?" or opens with a question word (`QUESTION`)."""
    words = read_words(text)
    return text.rstrip().endswith("?") or bool(words and words[0] in QUESTION)


def scan_values(text: str) -> list[Value]:
    """The values a text holds: delimited phrases first, then the kinds outside them."""
    found: list[Value] = []
    for m in _DELIMITED.finditer(text):
        inner = next(i for i in range(1, len(QUOTES) + 1) if m.group(i) is not None)
        start, end = m.start(inner), m.end(inner)
        while (
            start + 1 < end
            and any(  # ('quoted') is the quoted phrase
                text[start] == a and text[end - 1] == b for a, b in QUOTES[:-1]
            )
        ):
            start, end = start + 1, end - 1
        found.append(Value("delimited", text[start:end].strip(), start, end))
    for kind, regex in _SCAN:
        for m in regex.finditer(text):
            value = Value(kind, m.group(), m.start(), m.end())
            if not any(overlaps(value, v) for v in found):
                found.append(value)
    return sorted(found, key=lambda v: v.start)


def mask(text: str, values: Iterable[Value]) -> str:
    """The text with ``values`` blanked out (and a possessive ``'s`` after one)."""
    chars = list(text)
    for v in values:
        end = v.end
        if re.match(r"['\u2019]s(?!\w)", text[end : end + 3]):
            end += 2
        chars[v.start : end] = " " * (end - v.start)
    return "".join(chars)


def overlaps(a: Value, b: Value) -> bool:
    """True when two values share a character."""
    return a.start < b.end and b.start < a.end


def tail_after(text: str, marker: str) -> Value | None:
    """The text after ``marker`` (a learned chunk like ``because:``) up to the end."""
    m = re.search(rf"(?<!\S){re.escape(marker)}\s+", text, re.IGNORECASE)
    if m is None:
        return None
    body = text[m.end() :].rstrip()
    trimmed = body.rstrip(".!")
    if not trimmed.strip() or CLAUSE_BREAK.search(trimmed):
        return None  # empty, or the request goes on after it: not one value
    return Value("tail", trimmed.strip(), m.end(), m.end() + len(trimmed))


def word_before(text: str, start: int) -> str:
    """The last word before position ``start`` ("" when none)."""
    words = read_words(text[:start])
    return words[-1] if words else ""
