"""Reading a task's words: the values it holds and the words that change what it asks.

A reflex (`skillbank.reflex`) must tell a task's values from its request. `scan_values` finds
the values: phrases between quotes or parentheses first (their words are values, never part
of the request, so a quoted reason "no longer needed" is no negation), then emails, dates,
paths, ids and numbers outside them, with the kinds of `skillbank.patterns`. `words` reads the
rest as lower-case words of any script (`skillbank.search.fold`), contractions kept whole, and
the word sets below name the words that turn a request around, make it conditional, widen
it, join a second action, ask a question, or stand for a number without saying it.

Requests are often wrapped in courtesy that asks nothing itself. `FUNCTION_WORDS` are words
with no content a skill could have learned (the pieces a contraction leaves, "kindly",
"hey"); `courtesy_masked` blanks phrases that wrap a request without changing it ("go ahead
and", "I'd appreciate it if you could", "would you be so kind as to"), so their "and" and
"if" are no second action and no condition; and `is_question` tells a request put as a
question to the listener ("Could you move the file to archives?") from a question about
state ("Is the file in archives?", "Can we move it?", "Could you check whether it moved?").
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
    "FUNCTION_WORDS",
    "NEGATION",
    "QUANTITY",
    "QUESTION",
    "QUOTES",
    "SCOPE",
    "STRONG_KINDS",
    "Value",
    "courtesy_masked",
    "is_question",
    "mask",
    "overlaps",
    "proper_names",
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
    "if unless whenever once provided assuming otherwise until only whether in_case".split()
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

#: Words with no content a skill could have learned, as `skillbank.search.tokenize` reads them:
#: the pieces contractions leave ("I'm" -> "m", "don't" -> "don" "t"; the whole word is what
#: the negation rule reads), greetings, courtesy and discourse markers. Not counted as words a
#: skill must know; never a reason to fire on their own (the skill's own words must be there).
FUNCTION_WORDS = frozenset(
    "m s d t ll re ve don didn doesn isn aren wasn weren won wouldn couldn shouldn haven hasn "
    "kindly hey hello hi thanks thank alright okay ok ah oh well let's let now".split()
)
#: Courtesy that wraps a request without changing it (blanked by `courtesy_masked`).
_COURTESY = re.compile(
    r"(?<![\w'])(?:"
    r"go\s+ahead\s+and"
    r"|(?:would|could)\s+you\s+(?:please\s+)?be\s+so\s+kind\s+as\s+to"
    r"|(?:i|we)(?:['\u2019]d|\s+would)\s+(?:really\s+)?(?:appreciate\s+it|be\s+grateful)"
    r"\s+if\s+you\s+(?:could|would|can)"
    r")(?![\w'])",
    re.IGNORECASE,
)
#: Verbs that, after "could you", ask to be told something rather than to act.
_TELLING = frozenset(
    "tell say confirm check verify know see find let remind explain show ask like think "
    "double".split()
)
#: A sentence that asks the listener to act: "could/would/can/will you" (then "please",
#: "kindly", "be able to", "mind"), after an opening interjection.
_ASKED_TO_ACT = re.compile(
    r"^(?:(?:oh|ah|so|now|hey|hi|hello|alright|okay|ok|please|well)\b[\s,]*)*"
    r"(?:could|would|can|will)\s+you\s+(?:(?:please|kindly|possibly|also)\s+)?"
    r"(?:(?:be\s+able\s+to|mind)\s+)?(?P<verb>[^\W\d_]+)",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")

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
    """True when a sentence of ``text`` asks a question rather than for an action.

    A sentence asks when it ends with "?" or opens with a question word (`QUESTION`), unless
    it asks the listener to act: "could/would/can/will you" and a verb that is not one of
    being told ("Could you move X to Y?" is a request; "Could you confirm X moved?", "Can we
    move X?" and "Is X in Y?" are questions). Values (`scan_values`) are read as values, so
    the dot of an email or a path ends no sentence.
    """
    plain = mask(text, scan_values(text))  # where sentences end; words read from the text
    starts = [0, *(m.end() for m in _SENTENCE_END.finditer(plain))]
    for start, end in zip(starts, [*starts[1:], len(text)], strict=True):
        sentence = text[start:end].strip()
        words = read_words(sentence)
        if not (sentence.rstrip().endswith("?") or (words and words[0] in QUESTION)):
            continue
        asked = _ASKED_TO_ACT.match(sentence)
        if asked is None or fold(asked.group("verb")) in _TELLING:
            return True
    return False


def courtesy_masked(text: str) -> str:
    """``text`` with its courtesy phrases blanked (same length, so positions stay)."""
    return _COURTESY.sub(lambda m: " " * len(m.group()), text)


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


_CAPITALISED = re.compile(r"(?<![\w'\u2019-])[^\W\d_a-z][\w'\u2019-]*")
#: What may stand before a sentence's (or a clause's) first word.
_OPENERS = frozenset(".!?:;\"\u201c\u2018'(\n-\u2013\u2014")


def proper_names(text: str) -> list[str]:
    """Capitalised words inside a sentence: names ("Zeta Corp", "Berkeley"), which a request
    gives as values. A sentence's first word, "I" ("I'm"), and words after a colon, a quote,
    a parenthesis or a dash are not counted; blank the known values out first (`mask`)."""
    out = []
    for m in _CAPITALISED.finditer(text):
        word = m.group()
        before = text[: m.start()].rstrip()
        if re.fullmatch(r"I(?:['\u2019]\w+)?", word) or not before or before[-1] in _OPENERS:
            continue
        out.append(word)
    return out


def word_before(text: str, start: int) -> str:
    """The last word before position ``start`` ("" when none)."""
    words = read_words(text[:start])
    return words[-1] if words else ""
