"""Reflexes: a trusted skill run from the task's words alone, with no model planning it.

`ReflexIndex.plan` reads a task text and decides, running nothing, which autonomous skill
to run with which arguments, or why it abstains (`ReflexDecision`). A wrong reflex changes
state nobody asked to change, while a missed one only costs a model call, so every step
looks for a reason not to fire:

1. **Values.** The text is scanned for values: quoted or parenthesised phrases, emails,
   dates, paths, ids and numbers (`skillbank.patterns` kinds).
2. **Candidates.** Skills whose vocabulary (the fixed words of their learned phrasings, id,
   description, tool and parameter names, read by `skillbank.search.tokenize`) holds the
   task's words are tried, each in two ways. A *learned phrasing* (``patterns.json``) that
   matches the whole text reads the arguments off its slots. Otherwise the *unseen wording*
   path assigns each argument the one value of its kind, telling same-kind arguments apart
   by the word before each value as learned, then by their learned order (the most specific
   kind first, and a value one argument took is no other's candidate; a quoted value keeps
   its kind: ``'token_ABC123'`` is an id); free text comes only from quotes, parentheses or
   a learned marker (``because:``). Every word left must
   be in the skill's vocabulary (``reflex_min_relevance`` of them, the first one always),
   courtesy and function words aside (``kindly``, ``go ahead and``, the ``m`` of ``I'm``:
   `skillbank.wording.FUNCTION_WORDS`, `skillbank.wording.courtesy_masked`),
   and the words every learned phrasing shares (the request's core: ``return``, ``first
   item``) must all be there, so a request for part of what the skill does does not run it.
3. **One winner.** A learned phrasing outranks unseen wording; two skills within
   ``reflex_min_margin`` of each other abstain, and so does a best fit that is not
   autonomous (or is deprecated).
4. **Doubts.** The winner still abstains on a negation or condition (``not``, ``unless``,
   ``if``, ``once``) that its matched phrasing does not hold itself; on a scope or compound
   word (``every``, ``all``, ``and then``) unless the skill learned that very word pair (in
   a phrasing, or a scope word in its tool's name: ``list_all_airports``); on a question
   when the skill changes state (in any sentence; a request put to the listener, "Could you
   move X to Y?", is no question, "Can we move X?" and "Could you confirm X moved?" are:
   `skillbank.wording.is_question`); on a request to act ("Place the order history for
   X", by `skillbank.search.intent`) when the skill only reads; on an argument missing,
   found twice, or given as a quantity word (``a few``) where a number is needed; on a
   value in the text the skill has no argument for (a capitalised name included: "for
   Acme", unless the skill's id, description, tools, parameters or two of its phrasings say
   it); on arguments the signature (`skillbank.signature.check_arguments`) or the schema
   of a tool the value flows into refuses.

When no skill fits and a doubt word is found, the decision names the doubt (it says more
to a person than a missing piece) and, in ``also``, the rule the closest skill failed on
besides, so "the only reason" and "one reason of two" can be told apart.

Words inside quotes or parentheses are values, not requests, so a reason like
``'no longer needed'`` does not read as a negation; the same words unquoted do. Reading the
values and the telling words of a text is `skillbank.wording`'s.

The index is built once per library state (per skill: id, code, version, stage, cases) and
a decision touches only the skills sharing a word with the task, so it stays fast with
thousands of skills (``benchmarks/reflex_bench.py``).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, get_args

from skillbank.compiler.effects import classify_tools
from skillbank.errors import SkillArgumentError, SkillRejected
from skillbank.patterns import Kind, Phrasing, TaskPatterns, value_regex
from skillbank.search import fold, intent, tokenize
from skillbank.signature import check_arguments, schema_of
from skillbank.skill import Skill
from skillbank.wording import (
    CLAUSE_BREAK,
    COMPOUND,
    CONDITION,
    FUNCTION_WORDS,
    NEGATION,
    QUANTITY,
    QUOTES,
    SCOPE,
    STRONG_KINDS,
    Value,
    courtesy_masked,
    is_question,
    mask,
    overlaps,
    proper_names,
    read_words,
    scan_values,
    tail_after,
    word_before,
)

__all__ = ["RULES", "ReflexDecision", "ReflexIndex", "Rule"]

JSON = Any

#: Why a reflex abstained.
Rule = Literal[
    "empty",
    "no_skill",
    "unknown_words",
    "missing_words",
    "ambiguous",
    "not_autonomous",
    "negation",
    "condition",
    "scope",
    "compound",
    "question",
    "asks_change",
    "not_found",
    "found_twice",
    "quantity_word",
    "extra_value",
    "bad_arguments",
]
#: Every rule, in the order the module docstring gives them.
RULES: tuple[Rule, ...] = get_args(Rule)

_END = r"\s*[.!]?\s*"


@dataclass(frozen=True)
class ReflexDecision:
    """What a reflex would do with one task: run a skill with arguments, or abstain, and why."""

    #: The task text.
    task: str
    #: The skill that runs; None when the reflex abstains.
    skill_id: str | None
    #: The arguments read off the task (checked against the signature), when it fires.
    args: Mapping[str, JSON] = field(default_factory=dict)
    #: Why it abstains (one of `RULES`); None when it fires.
    rule: Rule | None = None
    #: A sentence for people: how it matched, or why not.
    reason: str = ""
    #: When it abstains, the skill that came closest (None when none did).
    closest: str | None = None
    #: The learned phrasing that matched; None for unseen wording.
    phrasing: str | None = None
    #: When it abstains on a word that changes the request (`rule` is negation, condition,
    #: scope, compound or question) and the closest skill would not have fit anyway: the rule
    #: that fit failed on (so a task reworded without that word still would not fire).
    also: Rule | None = None

    @property
    def fires(self) -> bool:
        """True when a skill would run."""
        return self.skill_id is not None

    def to_json(self) -> dict[str, JSON]:
        """The decision as JSON data (``skillbank do --json``)."""
        return {
            "task": self.task,
            "fires": self.fires,
            "skill_id": self.skill_id,
            "args": dict(self.args),
            "rule": self.rule,
            "reason": self.reason,
            "closest": self.closest,
            "phrasing": self.phrasing,
            "also": self.also,
        }


@dataclass
class _Entry:
    """One skill, ready to match: its patterns compiled."""

    skill: Skill
    patterns: TaskPatterns
    #: Each phrasing whose slots all have a kind, as a regular expression over a whole task.
    regexes: list[tuple[Phrasing, re.Pattern[str]]]
    #: Tokens of its phrasings' fixed words, description, id, tools and parameters.
    vocab: frozenset[str]
    #: Neighbouring raw words of its fixed text ("every order"): scope or compound words
    #: learned in context.
    bigrams: frozenset[tuple[str, str]]
    #: Per argument, the words seen right before its value.
    before: dict[str, frozenset[str]]
    #: (a, b) -> True when a came before b in every phrasing holding both.
    order: dict[tuple[str, str], bool]
    #: Per free-text argument, the chunks ending the text before it (``because:``).
    markers: dict[str, frozenset[str]]
    #: True when one of its tools changes state.
    commands: bool
    #: Tokens of each phrasing's fixed words.
    tokens: list[frozenset[str]]
    #: The words every learned phrasing says: the request's core.
    core: frozenset[str]
    #: Tokens a name in a task may use without being a value: the skill's id, description,
    #: tools and parameters, and words of at least two phrasings (of the one, if it has
    #: one). A name one run mentioned in passing ("With Zeta Corp's stock on my radar, ...")
    #: is that run's detail, not a word of the request.
    names: frozenset[str]


@dataclass
class _Fit:
    """How one skill fits a task: its arguments, or the rule it fails on."""

    entry: _Entry
    score: float
    args: dict[str, JSON] = field(default_factory=dict)
    used: list[Value] = field(default_factory=list)
    phrasing: Phrasing | None = None
    rule: Rule | None = None
    reason: str = ""
    doubt: tuple[Rule, str] | None = None
    #: Share of the task's words the skill's vocabulary holds (ranks failures).
    share: float = 0.0
    #: How close the task's words are to the skill's nearest phrasing (ranks failures).
    close: float = 0.0


def _phrasing_regex(phrasing: Phrasing, kinds: Mapping[str, Kind]) -> re.Pattern[str]:
    out = []
    parts = phrasing.parts()
    for i, part in enumerate(parts):
        if isinstance(part, tuple):
            rx = value_regex(kinds[part[0]])
            prev = parts[i - 1] if i > 0 else ""
            nxt = parts[i + 1] if i + 1 < len(parts) else ""
            for a, b in QUOTES:  # between quotes, a value never holds the quote itself
                if isinstance(prev, str) and isinstance(nxt, str):
                    if prev.endswith(a) and nxt.startswith(b) and kinds[part[0]] == "text":
                        rx = f"[^{re.escape(a + b)}\n]+?"
            out.append(f"(?P<a_{part[0]}>{rx})")
        else:
            chunks = part.split(" ")
            out.append(r"\s+".join(re.escape(c) for c in chunks))
    return re.compile("".join(out) + _END, re.IGNORECASE | re.DOTALL)


def _entry(skill: Skill, patterns: TaskPatterns, commands: bool) -> _Entry:
    kinds = patterns.kinds
    regexes: list[tuple[Phrasing, re.Pattern[str]]] = []
    fixed_text: list[str] = []
    bigrams: set[tuple[str, str]] = set()
    before: dict[str, set[str]] = {}
    markers: dict[str, set[str]] = {}
    seen_order: dict[tuple[str, str], set[bool]] = {}
    tokens: list[frozenset[str]] = []
    for phrasing in patterns.phrasings:
        parts = phrasing.parts()
        if all(isinstance(p, str) or p[0] in kinds for p in parts):
            regexes.append((phrasing, _phrasing_regex(phrasing, kinds)))
        literal = " ".join(p for p in parts if isinstance(p, str))
        fixed_text.append(literal)
        tokens.append(frozenset(tokenize(literal, compound_parts=False)))
        words = read_words(literal)
        bigrams.update(zip(words, words[1:], strict=False))
        slots = [p[0] for p in parts if isinstance(p, tuple)]
        for i, a in enumerate(slots):
            for b in slots[i + 1 :]:
                seen_order.setdefault((a, b), set()).add(True)
                seen_order.setdefault((b, a), set()).add(False)
        for i, part in enumerate(parts):
            if not isinstance(part, tuple):
                continue
            name = part[0]
            prev = parts[i - 1] if i > 0 and isinstance(parts[i - 1], str) else ""
            nxt = parts[i + 1] if i + 1 < len(parts) and isinstance(parts[i + 1], str) else ""
            assert isinstance(prev, str) and isinstance(nxt, str)
            prev_words = read_words(prev)
            if prev_words:
                before.setdefault(name, set()).add(prev_words[-1])
            quoted = any(prev.endswith(a) and nxt.startswith(b) for a, b in QUOTES)
            chunk = prev.rstrip().rsplit(" ", 1)[-1] if prev.strip() else ""
            if not quoted and not nxt.strip(" .!") and chunk and kinds.get(name) == "text":
                markers.setdefault(name, set()).add(fold(chunk))
    for tool in skill.tools:  # a tool named "list_all_airports" lists all by its very name
        said = read_words(tool.replace("_", " ").replace("-", " "))
        bigrams.update(p for p in zip(said, said[1:], strict=False) if p[0] in SCOPE)
    own = [skill.id.replace("_", " "), skill.description]
    own += [t.replace("_", " ") for t in skill.tools]
    own += [p.name.replace("_", " ") for p in skill.signature.params]
    own_tokens = {t for w in own for t in tokenize(w, compound_parts=False)}
    phrasings_saying = Counter(t for phrasing_tokens in tokens for t in phrasing_tokens)
    names = own_tokens | {t for t, n in phrasings_saying.items() if n >= min(2, len(tokens))}
    vocab = frozenset(own_tokens.union(*tokens))
    return _Entry(
        skill=skill,
        patterns=patterns,
        regexes=regexes,
        vocab=vocab,
        bigrams=frozenset(bigrams),
        before={k: frozenset(v) for k, v in before.items()},
        order={k: v == {True} for k, v in seen_order.items() if len(v) == 1},
        markers={k: frozenset(v) for k, v in markers.items()},
        commands=commands,
        tokens=tokens,
        core=frozenset.intersection(*tokens) if tokens else frozenset(),
        names=frozenset(names),
    )


class ReflexIndex:
    """The reflex's view of a library: each skill's patterns compiled, and a word index.

    Args:
        min_coverage: Share of a task's words (values aside) a skill's vocabulary must hold
            for unseen wording (``reflex_min_relevance``).
        margin: How far the best fit must lead the second (``reflex_min_margin``).
        query_tools: Tools the bank's configuration calls queries (see
            `skillbank.compiler.effects`).
        command_tools: Tools it calls commands.
    """

    def __init__(
        self,
        *,
        min_coverage: float = 0.85,
        margin: float = 0.1,
        query_tools: Iterable[str] = (),
        command_tools: Iterable[str] = (),
    ) -> None:
        self.min_coverage = min_coverage
        self.margin = margin
        self.query_tools = tuple(query_tools)
        self.command_tools = tuple(command_tools)
        self._entries: dict[str, tuple[tuple[str, ...], _Entry]] = {}
        self._postings: dict[str, list[str]] = {}
        self._stale = True

    def update(self, skills: Sequence[Skill], patterns: Callable[[Skill], TaskPatterns]) -> None:
        """Bring the index in step with ``skills`` (only changed skills are compiled again).

        ``patterns`` gives a skill's task patterns (`skillbank.library.SkillLibrary.patterns`).
        """
        keep: dict[str, tuple[tuple[str, ...], _Entry]] = {}
        for skill in skills:
            key = (skill.content_hash, str(skill.version), skill.stage,
                   skill.deprecated_by or "", str(len(skill.cases)))  # fmt: skip
            old = self._entries.get(skill.id)
            if old is not None and old[0] == key:
                keep[skill.id] = old
                continue
            effects = classify_tools(
                skill.tools, skill.tool_specs,
                query_tools=self.query_tools, command_tools=self.command_tools,
            )  # fmt: skip
            commands = any(e.effect == "command" for e in effects.values())
            keep[skill.id] = (key, _entry(skill, patterns(skill), commands))
            self._stale = True
        if keep.keys() != self._entries.keys():
            self._stale = True
        self._entries = keep
        if self._stale:
            postings: dict[str, list[str]] = {}
            for sid, (_, entry) in sorted(keep.items()):
                for token in entry.vocab:
                    postings.setdefault(token, []).append(sid)
            self._postings = postings
            self._stale = False

    # --- deciding ---------------------------------------------------------------------------

    def plan(self, task: str) -> ReflexDecision:
        """Decide what a reflex does with ``task`` (see the module docstring); runs nothing."""
        text = " ".join(str(task).split())
        if not text:
            return ReflexDecision(task, None, rule="empty", reason="the task is empty")
        values = scan_values(text)
        words = _content_words(mask(text, values))
        hits: Counter[str] = Counter()
        for token in set(words):
            for sid in self._postings.get(token, ()):
                hits[sid] += 1
        if not hits:
            return ReflexDecision(
                task, None, rule="no_skill",
                reason="no skill's learned requests share a word with this task",
            )  # fmt: skip
        ranked = sorted(
            hits.items(),
            key=lambda kv: (-kv[1], -kv[1] / len(self._entries[kv[0]][1].vocab), kv[0]),
        )[:16]
        fits: list[_Fit] = []
        failures: list[_Fit] = []
        for sid, n in ranked:
            fit = self._fit(self._entries[sid][1], text, values)
            fit.share = n / max(1, len(set(words)))
            fit.close = max(
                (len(set(words) & t) / len(set(words) | t) for t in fit.entry.tokens), default=0.0
            )
            (fits if fit.rule is None else failures).append(fit)
        if not fits:
            best = min(failures, key=lambda f: (-f.close, -f.share, -f.score, f.entry.skill.id))
            # A word that turns the request around says more than a missing piece.
            doubt = _doubt(best.entry, text, best, False)
            if doubt is None:
                return ReflexDecision(
                    task, None, rule=best.rule, reason=best.reason, closest=best.entry.skill.id
                )
            return ReflexDecision(
                task, None, rule=doubt[0], reason=f"{doubt[1]} (besides: {best.reason})",
                closest=best.entry.skill.id, also=best.rule,
            )  # fmt: skip
        fits.sort(key=lambda f: (-f.score, f.entry.skill.id))
        best = fits[0]
        sid = best.entry.skill.id
        if len(fits) > 1 and best.score - fits[1].score < self.margin:
            return ReflexDecision(
                task, None, rule="ambiguous", closest=sid,
                reason=f"{sid} and {fits[1].entry.skill.id} fit this task about equally "
                f"({best.score:.2f} and {fits[1].score:.2f}); a model must choose",
            )  # fmt: skip
        skill = best.entry.skill
        if skill.deprecated_by or skill.stage != "autonomous":
            why = f"deprecated for {skill.deprecated_by}" if skill.deprecated_by else skill.stage
            return ReflexDecision(
                task, None, rule="not_autonomous", closest=sid,
                reason=f"{sid} fits this task but is {why}: only an autonomous skill runs "
                "without a model (`skillbank promote` or enough successful calls make it one)",
            )  # fmt: skip
        if best.doubt is not None:
            return ReflexDecision(task, None, rule=best.doubt[0], reason=best.doubt[1], closest=sid)
        passing = _name_in_passing(best, text, values)
        if passing is not None:
            # Judged after ranking, so it only ever turns a reflex into an abstention: as a
            # reason to drop a fit, it would let a rival that tied with it fire alone.
            return ReflexDecision(
                task, None, rule="extra_value", closest=sid,
                reason=f"the task names {passing!r}, which {sid} has no argument for (only one "
                "of its learned requests said it, in passing)",
            )  # fmt: skip
        how = (
            f"learned phrasing {best.phrasing.template!r}"
            if best.phrasing is not None
            else "unseen wording: each argument is the one value of its kind in the task"
        )
        return ReflexDecision(
            task, sid, args=best.args, reason=f"{sid} by {how}", closest=sid,
            phrasing=best.phrasing.template if best.phrasing is not None else None,
        )  # fmt: skip

    def _fit(self, entry: _Entry, text: str, values: list[Value]) -> _Fit:
        for phrasing, regex in entry.regexes:
            match = regex.fullmatch(text)
            if match is not None:
                return self._finish(entry, text, values, _exact(entry, phrasing, match), True)
        return self._finish(entry, text, values, self._soft(entry, text, values), False)

    def _soft(self, entry: _Entry, text: str, values: list[Value]) -> _Fit:
        fit = _Fit(entry, 0.0)
        patterns = entry.patterns
        pools: dict[Kind, list[str]] = {}
        for name, kind in sorted(patterns.kinds.items()):
            pools.setdefault("text" if kind in ("word", "text") else kind, []).append(name)
        taken: list[Value] = []
        # The most specific kinds first, and a value one argument took is no other's: the
        # number of "a budget of $1500 with token ABC123" is not the token's candidate too.
        for pool, names in sorted(pools.items(), key=lambda kv: _POOL_ORDER.index(kv[0])):
            free = [v for v in values if not any(overlaps(v, t) for t in taken)]
            if pool == "text":
                found = [v for v in free if v.kind == "delimited"]
                for name in names:
                    for marker in sorted(entry.markers.get(name, ())):
                        tail = tail_after(text, marker)
                        if tail is not None and not any(overlaps(tail, v) for v in taken):
                            found.append(tail)
            else:
                # Quoting a value does not change its kind: 'token_ABC123' is an id.
                kinds: tuple[Kind, ...] = ("id", "number") if pool == "id" else (pool,)
                found = [v for v in free if v.kind in kinds or (v.kind == "delimited" and any(
                    re.fullmatch(value_regex(k), v.text) for k in kinds))]  # fmt: skip
            distinct = list({fold(v.text): v for v in found}.values())
            if len(distinct) < len(names):
                numbers = [n for n in names if patterns.kinds[n] == "number"]
                return _fail(fit, *_missing(entry, (numbers or names)[0], text))
            assigned = _assign(entry, names, distinct, text)
            if assigned is None:
                shown = ", ".join(repr(v.text) for v in distinct)
                return _fail(
                    fit, "found_twice",
                    f"{entry.skill.id} takes {len(names)} {pool} value(s) "
                    f"({', '.join(names)}) and the task has {len(distinct)}: {shown}",
                )  # fmt: skip
            for name, value in assigned.items():
                fit.args[name] = value.text
                taken.append(replace(value, arg=name))
        fit.used = taken
        # A name the task gives (a capitalised word inside a sentence: "Zeta Corp") is a
        # value no argument took, unless the skill's words hold it ("the START mode"; a
        # name only one phrasing said in passing is judged once this fit is chosen, `plan`).
        for name in proper_names(mask(text, [*taken, *values])):
            if not set(tokenize(name, compound_parts=False)) <= entry.vocab:
                return _fail(
                    fit, "extra_value",
                    f"the task names {name!r}, which {entry.skill.id} has no argument for",
                )  # fmt: skip
        # Values it did not take are judged as values (`_finish`), not as words.
        words = _content_words(mask(text, [*taken, *values]))
        if not words:
            return _fail(fit, "unknown_words", "the task says nothing besides its values")
        known = [w for w in words if w in entry.vocab]
        coverage = len(known) / len(words)
        fit.score = coverage * 0.5
        unknown = sorted({w for w in words if w not in entry.vocab})
        if len(known) < 2 and coverage == 1.0:
            return _fail(
                fit, "unknown_words",
                f"the task says too little besides its values to be sure of {entry.skill.id}",
            )  # fmt: skip
        if coverage < self.min_coverage or words[0] not in entry.vocab:
            return _fail(
                fit, "unknown_words",
                f"{entry.skill.id} never learned the word(s) {', '.join(map(repr, unknown))} "
                f"({len(known)} of {len(words)} task words known)",
            )  # fmt: skip
        lacking = sorted(entry.core - set(words))
        if lacking:
            return _fail(
                fit, "missing_words",
                f"the task lacks {', '.join(map(repr, lacking))}, which every learned request "
                f"for {entry.skill.id} says",
            )  # fmt: skip
        best = max((len(set(words) & t) / len(set(words) | t) for t in entry.tokens), default=0.0)
        fit.score = 0.5 + 0.4 * best
        return fit

    def _finish(
        self, entry: _Entry, text: str, values: list[Value], fit: _Fit, exact: bool
    ) -> _Fit:
        if fit.rule is not None:
            return fit
        skill = entry.skill
        # Every value the text holds must be an argument (or inside one).
        for value in values:
            if not any(u.start <= value.start and value.end <= u.end for u in fit.used):
                if value.kind == "delimited" and exact:
                    continue  # a quoted part of the learned fixed text
                return _fail(
                    fit, "extra_value",
                    f"the task mentions {value.text!r}, which {skill.id} has no argument for",
                )  # fmt: skip
        # Free text that holds another value (an email, an id) may be a second request.
        for used in fit.used:
            if used.kind in ("text", "tail"):
                inside = [v for v in values if v.kind in STRONG_KINDS and used.start <= v.start
                          and v.end <= used.end and v.text != used.text]  # fmt: skip
                if inside:
                    return _fail(
                        fit, "extra_value",
                        f"the {used.arg or 'free text'} {used.text!r} holds {inside[0].text!r}; "
                        "a model must read it",
                    )  # fmt: skip
        fit.doubt = _doubt(entry, text, fit, exact)
        args: dict[str, JSON] = dict(entry.patterns.constants)
        for name, raw in fit.args.items():
            args[name] = _convert(skill, name, raw)
        try:
            fit.args = dict(check_arguments(skill, args))
        except (SkillArgumentError, SkillRejected) as exc:
            return _fail(fit, "bad_arguments", f"the arguments read off the task do not fit: {exc}")
        problem = _tool_schema_problem(entry, fit.args)
        if problem is not None:
            return _fail(fit, "bad_arguments", problem)
        return fit


#: The order argument pools are filled in: the most specific kind first (`skillbank.patterns`).
_POOL_ORDER: tuple[Kind, ...] = ("email", "number", "date", "path", "id", "text")


def _content_words(text: str) -> list[str]:
    """The words of ``text`` a skill must know: courtesy and function words left out."""
    plain = courtesy_masked(text)
    return [w for w in tokenize(plain, compound_parts=False) if w not in FUNCTION_WORDS]


def _name_in_passing(fit: _Fit, text: str, values: list[Value]) -> str | None:
    """A name in ``text`` (unseen wording) that the skill's vocabulary holds only because one
    of several learned requests mentioned it, not as a word of the request (`_Entry.names`)."""
    if fit.phrasing is not None:
        return None
    for name in proper_names(mask(text, [*fit.used, *values])):
        if not set(tokenize(name, compound_parts=False)) <= fit.entry.names:
            return name
    return None


def _fail(fit: _Fit, rule: Rule, reason: str) -> _Fit:
    fit.rule, fit.reason = rule, reason
    return fit


def _exact(entry: _Entry, phrasing: Phrasing, match: re.Match[str]) -> _Fit:
    fit = _Fit(entry, 1.0, phrasing=phrasing)
    if phrasing.unsaid:
        return _fail(
            fit, "not_found",
            f"{entry.skill.id}'s phrasing {phrasing.template!r} does not say "
            f"{', '.join(phrasing.unsaid)}",
        )  # fmt: skip
    for key, raw in match.groupdict().items():
        start, end = match.span(key)
        name = key[2:]
        kind = entry.patterns.kinds[name]
        fit.args[name] = raw.strip().rstrip(".!") if kind == "text" else raw
        text = match.string
        delimited = any(  # between quotes or parentheses in this phrasing
            0 < start and end < len(text) and text[start - 1] == a and text[end] == b
            for a, b in QUOTES
        )
        fit.used.append(Value("delimited" if delimited else kind, raw, start, end, name))
    return fit


def _doubt(entry: _Entry, text: str, fit: _Fit, exact: bool) -> tuple[Rule, str] | None:
    """The first reason the fit should not run unasked, or None."""
    sid = entry.skill.id
    # Words that are values between quotes or parentheses are not requests.
    shielded = [v for v in fit.used if v.kind == "delimited"]
    checked: list[str] = []
    if exact:
        for value in fit.used:
            if value.kind == "text" and CLAUSE_BREAK.search(value.text.rstrip(".! ")):
                return "compound", (
                    f"the task goes on after its {value.arg} ({value.text!r}): a model must "
                    "read the rest"
                )
            if value.kind != "delimited" and entry.patterns.kinds.get(value.arg) in (
                "text",
                "word",
            ):
                checked += read_words(text[value.start : value.end])
    else:
        checked = read_words(courtesy_masked(mask(text, shielded)))
    pairs = list(zip(checked, [*checked[1:], ""], strict=False))
    for word, nxt in pairs:
        if word in NEGATION:
            return "negation", f"the task says {word!r}: a model must read what not to do"
        if word in CONDITION or (word == "in" and nxt == "case"):
            return "condition", f"the task is conditional ({word!r}): a model must check it"
    for word, nxt in pairs:
        learned = (word, nxt) in entry.bigrams and not exact
        if word in SCOPE and not learned:
            return "scope", (f"the task asks for {word!r}, more than one {sid} call does")
        if word in COMPOUND and not learned:
            return "compound", (
                f"the task joins another request with {word!r}; {sid} does one thing"
            )
    if (
        (entry.commands or fit.rule is not None)
        and is_question(text)
        and not (fit.phrasing is not None and is_question(fit.phrasing.template))
    ):
        return "question", (
            f"the task asks about state, and {sid} changes it: a question is not an order"
        )
    if (
        not entry.commands
        and fit.rule is None
        and intent(text) == "change"
        and not (fit.phrasing is not None and intent(fit.phrasing.template) == "change")
    ):
        return "asks_change", (
            f"the task asks to change something, and {sid} only reads: a model must find "
            "what changes it"
        )
    return None


def _missing(entry: _Entry, name: str, text: str) -> tuple[Rule, str]:
    sid = entry.skill.id
    if entry.patterns.kinds.get(name) == "number":
        quantity = [w for w in read_words(text) if w in QUANTITY]
        if quantity:
            return "quantity_word", (
                f"{sid} needs {name} as a number, and the task says {quantity[0]!r}: "
                "a model must decide how many"
            )
    return "not_found", f"the task does not say {name} ({sid} needs it)"


def _assign(
    entry: _Entry, names: list[str], found: list[Value], text: str
) -> dict[str, Value] | None:
    """Each name its value: the only one, or by the word before it, or by learned order."""
    if len(found) != len(names):
        return None
    if len(names) == 1:
        return {names[0]: found[0]}
    by_word: dict[str, Value] = {}
    for value in found:
        prev = word_before(text, value.start)
        owners = [n for n in names if prev in entry.before.get(n, frozenset())]
        if len(owners) == 1 and owners[0] not in by_word:
            by_word[owners[0]] = value
    if len(by_word) == len(names):
        return by_word
    ordered = sorted(found, key=lambda v: v.start)
    sequence = sorted(names, key=lambda n: sum(entry.order.get((n, m), False) for m in names))
    sequence.reverse()
    for i, a in enumerate(sequence):
        for b in sequence[i + 1 :]:
            if not entry.order.get((a, b), False):
                return None  # no order learned between them
    return dict(zip(sequence, ordered, strict=True))


def _convert(skill: Skill, name: str, raw: JSON) -> JSON:
    """A text value as the parameter's JSON type (a number where one is wanted)."""
    try:
        prop = schema_of(skill).parameters.get("properties", {}).get(name, {})
    except SkillRejected:
        return raw
    kinds = prop.get("type")
    kinds = {kinds} if isinstance(kinds, str) else set(kinds or ())
    if isinstance(raw, str) and re.fullmatch(r"-?\d+", raw) and "integer" in kinds:
        return int(raw)
    if isinstance(raw, str) and re.fullmatch(r"-?\d+(?:\.\d+)?", raw) and "number" in kinds:
        number = float(raw)
        return int(number) if number.is_integer() and "." not in raw else number
    return raw


def _tool_schema_problem(entry: _Entry, args: Mapping[str, JSON]) -> str | None:
    """Why a value fails the schema of a tool parameter it flows into, or None."""
    for name, flows in sorted(entry.patterns.flows.items()):
        if name not in args:
            continue
        for flow in flows:
            tool, _, param = flow.partition(".")
            spec = entry.skill.tool_specs.get(tool)
            prop = (spec.parameters.get("properties") or {}).get(param) if spec else None
            if isinstance(prop, Mapping):
                problem = _schema_problem(args[name], prop)
                if problem is not None:
                    return f"{name}={args[name]!r} would reach {tool}({param}=...), which {problem}"
    return None


_TYPES: dict[str, Callable[[JSON], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def _schema_problem(value: JSON, schema: Mapping[str, JSON]) -> str | None:
    """The first keyword of a scalar JSON Schema ``value`` misses, said for people."""
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else list(kinds or ())
    if kinds and not any(_TYPES.get(k, lambda v: True)(value) for k in kinds):
        return f"takes {' or '.join(kinds)}"
    if "enum" in schema and value not in schema["enum"]:
        return f"takes one of {schema['enum']!r}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        checks: tuple[tuple[str, Callable[[float], bool]], ...] = (
            ("minimum", lambda b: value >= b), ("maximum", lambda b: value <= b),
            ("exclusiveMinimum", lambda b: value > b), ("exclusiveMaximum", lambda b: value < b),
        )  # fmt: skip
        for key, ok in checks:
            bound = schema.get(key)
            if isinstance(bound, int | float) and not ok(bound):
                return f"takes {key} {bound}"
        if isinstance(value, float) and not math.isfinite(value):
            return "takes a finite number"
    if isinstance(value, str):
        if isinstance(schema.get("minLength"), int) and len(value) < schema["minLength"]:
            return f"takes at least {schema['minLength']} characters"
        if isinstance(schema.get("maxLength"), int) and len(value) > schema["maxLength"]:
            return f"takes at most {schema['maxLength']} characters"
        pattern = schema.get("pattern")
        if isinstance(pattern, str):
            try:
                if re.search(pattern, value) is None:
                    return f"takes values matching {pattern!r}"
            except re.error:
                return None
    return None
