"""Find the skills for a task: BM25 over what each skill says about itself, times its record.

A skill's *document* is its id split on ``_``, its description, its docstring, its parameter
names and the task texts of the trajectories it was learned from. Text is tokenised into
lower-case words (a light suffix stemmer folds ``orders``/``ordered``/``ordering`` together;
a short stop-word list is dropped), and ids and e-mail addresses (``O-5003``,
``bob@example.com``, ``update_email``) are kept whole as well as split into their words.

Ranking: ``score = relevance x success x fit``.

- *relevance* is the BM25 score (`bm25s`, Lucene variant, k1=1.5, b=0.75) divided by the
  query's best score, so the best match has 1.0. When the optional ``embeddings`` extra
  (`wordllama`, whose small model ships inside the package) is importable, the BM25 ranking
  and a cosine ranking of static embeddings are fused by reciprocal rank fusion (k=60) and
  that fused score, divided by the query's best, is the relevance. `backend` says which is in
  use; ``SKILLBANK_SEARCH_EMBEDDINGS=0`` turns embeddings off.
- *success* is the mean of the Beta(1 + s, 1 + f) posterior over the skill's successes and
  failures in the outcome ledger (`skillbank.ledger`): 0.5 for an unused skill. With
  ``thompson=True`` it is a sample from that Beta instead (seeded), which lets a rarely
  used skill win now and then and so earn a record.
- *fit* is whether the skill's effect suits what the request asks (`intent`): 1.0 when it
  does or either side is unknown, `MISMATCH` when a request to read meets a skill that changes
  something (a command among its tools, `skillbank.compiler.effects`) or a request to change
  something meets a skill that only reads. "What orders did bob place?" shares every word
  with "place an order for bob"; only the form of the sentence tells a question from an
  order, so BM25 alone ranks the two skills within a few hundredths of each other.

`intent` reads the form of a request, in English, from general signals rather than any
domain's words: an interrogative or an auxiliary verb first (``what``, ``which``, ``did``,
``is``) or a question mark at the end (in any script: ``?``, ``？``) asks to read; a first
verb (after ``please``, ``can you``, ``I want to``...) that reads (`READ_VERBS`, which
include the tool-name verbs of `skillbank.compiler.effects.QUERY_VERBS`) asks to read, one
that acts (`CHANGE_VERBS`) asks to change. A request with an acting verb at the head of any
of its clauses ("show my orders and cancel the pending one") asks to change, unless that verb
is the first word of a noun phrase naming a record ("order history for bob", "transfer
status of ..."), which asks to read. Anything else is unknown, and ranks as before.

Deprecated skills are never returned. The index is cached twice, both keyed by the library's
`fingerprint` (ids, content hashes, case counts, descriptions, deprecations) and the
backend: in memory per bank object, and on disk under ``<state_dir>/search/`` (local state,
like the ledger), so it is rebuilt only when skills change.

Example:
    >>> hits = bank.search("which orders did bob@example.com place?")  # doctest: +SKIP
    >>> hits[0].skill_id                                                 # doctest: +SKIP
    'list_orders_by_email'
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import bm25s  # type: ignore[import-untyped]
import numpy as np
import numpy.typing as npt

from skillbank.compiler.effects import QUERY_VERBS
from skillbank.skill import Skill

if TYPE_CHECKING:
    from skillbank.ledger import Outcomes

__all__ = [
    "CHANGE_VERBS",
    "MISMATCH",
    "READ_VERBS",
    "RRF_K",
    "STOP_WORDS",
    "Effect",
    "Hit",
    "Intent",
    "SearchIndex",
    "SkillDoc",
    "backend",
    "embedder",
    "fingerprint",
    "fit",
    "intent",
    "skill_doc",
    "tokenize",
]

#: The reciprocal rank fusion constant (Cormack et al. 2009): a hit at rank r adds 1/(k + r).
RRF_K = 60

#: How deep each ranking goes into the fusion.
FUSION_DEPTH = 100

#: Words too common in task texts to tell skills apart.
STOP_WORDS = frozenset(
    """
    a about after again all am an and any are as at be been before being but by can could did
    do does doing done for from had has have having he her here hers him his how i if in into
    is it its itself just like me more most need my no nor not now of off on once only or
    other our ours out over own please same she should so some such than that the their theirs
    them then there these they this those through to too under until up very want was we were
    what when where which while who whom why will with would you your yours
    """.split()
)

#: Where the index lives inside the bank's state folder.
CACHE_DIR = "search"

#: Bumped when the document, tokeniser or file format changes, so old caches are not read.
FORMAT = 3

#: What a request asks for: to read (a question, "show ..."), or to change something.
Intent = Literal["read", "change"]
#: What a skill does: reads only (``"query"``), changes something (``"command"``), or not
#: known (``""``).
Effect = Literal["query", "command", ""]

#: The factor a skill's score takes when its effect does not suit the request's intent: such
#: a skill needs four times the relevance of one that suits to rank above it, so it still
#: comes first when nothing that suits matches, and far below one that does.
MISMATCH = 0.25

#: Verbs that ask to see something (besides the tool-name verbs of
#: `skillbank.compiler.effects.QUERY_VERBS`, which `intent` adds).
READ_VERBS = frozenset(
    """
    show list find get see view display look check tell search fetch read count lookup report
    print describe browse retrieve query inspect verify review summarize summarise compare
    calculate compute estimate track know give
    """.split()
)
#: Verbs that ask to change something, in their base (imperative) form.
CHANGE_VERBS = frozenset(
    """
    place order buy purchase cancel create add update change set delete remove refund return
    restock send book make submit issue move rename write pay transfer reserve schedule assign
    close open approve reject archive upload register subscribe unsubscribe enable disable
    reset post publish edit modify replace ship deliver charge credit invite block unblock mark
    apply start stop launch deploy install uninstall save store insert link unlink grant revoke
    lock unlock import export sync clear empty fill put upgrade downgrade renew extend redeem
    exchange rebook reorder resend retry undo revert restore merge split convert correct fix
    """.split()
)
#: Words that open a question.
_INTERROGATIVES = frozenset("what which who whom whose when where why how".split())
#: Auxiliary verbs that open a yes-no question ("did bob order?", "is it shipped?").
_AUXILIARIES = frozenset("is are was were am do does did has have had".split())
#: Modal verbs that, with a pronoun after them, wrap a request ("can you cancel ...").
_MODALS = frozenset("can could would will should may might shall".split())
_PRONOUNS = frozenset("i you we".split())
#: Openings that only soften a request ("please", "I'd like to", "go ahead and").
_SOFTENERS = (
    ("please",), ("kindly",), ("just",), ("i", "want", "to"), ("i", "would", "like", "to"),
    ("i", "d", "like", "to"), ("i", "need", "to"), ("we", "need", "to"), ("i", "wish", "to"),
    ("let", "s"), ("let", "me"), ("help", "me"), ("go", "ahead", "and"), ("try", "to"),
)  # fmt: skip
#: Nouns of records and reports: after a word that is also a verb ("order history",
#: "transfer status") they make a noun phrase that names something to read.
_RECORD_NOUNS = frozenset(
    "history status details detail info information summary overview log logs list total "
    "totals count number date dates state progress record records".split()
)
#: Words that begin a new clause, whose first word may be another verb.
_CLAUSE_JOINS = frozenset("and then also".split())
#: Question marks: Latin, full-width (CJK), Arabic, Greek.
_QUESTION_MARKS = frozenset("?\uff1f\u061f\u037e")
_INTENT_WORD = re.compile(r"[^\W\d_]+")

_ENV_EMBEDDINGS = "SKILLBANK_SEARCH_EMBEDDINGS"
# A letter or digit in any script ("\w" without the underscore, which joins compounds).
_AN = r"[^\W_]"
_COMPOUND = re.compile(
    rf"{_AN}[\w.%+-]*@{_AN}[\w-]*(?:\.{_AN}[\w-]*)+"  # an e-mail address
    rf"|{_AN}+(?:[-_./]{_AN}+)+"  # an id: O-5003, SKU-LAMP-DSK, update_email, a/b.txt
    rf"|{_AN}+"
)
_WORD = re.compile(rf"{_AN}+")
# Scripts written without spaces between words: indexed by characters and their pairs.
_UNSPACED = re.compile(
    "[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u0e00-\u0e7f"
    "\u1780-\u17ff\u0e80-\u0eff\u1000-\u109f]+"
)
_VOWELS = frozenset("aeiouy")

Floats = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Hit:
    """One skill found for a query, with the parts of its score."""

    #: The skill's id.
    skill_id: str
    #: ``relevance * success * fit``, in [0, 1]; hits are sorted by it, best first.
    score: float
    #: How well the skill's document matches the query, in [0, 1] (1.0 for the best match).
    relevance: float
    #: Expected success from the ledger: the Beta posterior mean, or a sample with Thompson.
    success: float
    #: The skill's maturity stage.
    stage: str
    #: The skill's one-line description.
    description: str
    #: What the skill does: ``"query"`` (only reads), ``"command"``, or ``""`` (not known).
    effect: Effect = ""
    #: How its effect suits the request (`fit`): 1.0, or `MISMATCH`.
    fit: float = 1.0


@dataclass(frozen=True)
class SkillDoc:
    """What the index holds for one skill."""

    #: The skill's id.
    skill_id: str
    #: The text BM25 indexes (see `skill_doc`).
    text: str
    #: The shorter text embedded when embeddings are used: id words, description, tasks.
    summary: str
    #: The skill's maturity stage.
    stage: str
    #: The skill's one-line description.
    description: str
    #: True when the skill is deprecated (kept in the index, never returned).
    deprecated: bool = False
    #: What the skill does: ``"query"`` when every tool it may call only reads,
    #: ``"command"`` when one changes something, ``""`` when not known.
    effect: Effect = ""


def _stem(word: str) -> str:
    # Just enough to fold plurals and tenses in task texts ("orders", "placed", "cancelled");
    # identifiers and numbers are left alone.
    if len(word) <= 3 or not word.isalpha() or not word.isascii():
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suffix in ("ing", "ed"):
        stem = word[: -len(suffix)]
        if word.endswith(suffix) and len(stem) >= 3 and _VOWELS & set(stem):
            word = stem
            break
    if word.endswith("e") and len(word) > 4:
        word = word[:-1]
    if len(word) > 4 and word[-1] == word[-2] and word[-1] not in _VOWELS | {"s", "l"}:
        word = word[:-1]
    if word.endswith("ll") and len(word) > 5:
        word = word[:-1]
    return word


def fold(text: str) -> str:
    """Text as search compares it: case folded (``Straße`` -> ``strasse``) and without
    accents (``Café`` -> ``cafe``), in any script."""
    kept: list[str] = []
    # Compatibility forms first (the mathematical bold 𝐀 is an A), then case, then again:
    # folding case can leave a character with a compatibility form of its own.
    folded = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", text).casefold())
    for c in folded:
        # Accents go from Latin, Greek and Cyrillic letters; elsewhere (the voicing marks
        # of kana, Indic vowel signs) a combining mark is part of the letter.
        if unicodedata.combining(c) and kept and ord(kept[-1]) < 0x0500:
            continue
        kept.append(c)
    return unicodedata.normalize("NFC", "".join(kept))


def _words_of(part: str) -> list[str]:
    """A run of letters as words: as it is, or, in a script written without spaces
    (Chinese, Japanese, Thai...), each character and each pair of neighbours."""
    out: list[str] = []
    last = 0
    for run in _UNSPACED.finditer(part):
        if run.start() > last:
            out.append(part[last : run.start()])
        chars = run.group()
        out += list(chars)
        out += [chars[i : i + 2] for i in range(len(chars) - 1)]
        last = run.end()
    if last < len(part):
        out.append(part[last:])
    return out


def tokenize(text: str, *, compound_parts: bool = True) -> list[str]:
    """The tokens BM25 sees: stemmed lower-case words without stop words, ids kept whole too.

    Words in any script count: text is case folded and loses its accents (`fold`), and a
    script written without spaces is read by characters and character pairs. English words
    are stemmed (``orders`` and ``order`` meet) and English stop words dropped.

    The one tokenizer of task texts: search, the reflex and the agent's choice of skills to
    offer all read words this way. With ``compound_parts=False`` a compound (an email, an id
    like ``SKU-MUG-RED``) stays one token without its parts: a value another task with other
    values does not share.

    Example:
        >>> tokenize("Which orders has bob@example.com placed?")
        ['order', 'bob@example.com', 'bob', 'exampl', 'com', 'plac']
    """
    out: list[str] = []
    for match in _COMPOUND.finditer(fold(text)):
        token = match.group()
        parts = [w for part in _WORD.findall(token) for w in _words_of(part)]
        if len(parts) > 1 and not _UNSPACED.fullmatch(token):
            out.append(token.strip("."))
            if not compound_parts:
                continue
        out.extend(_stem(p) for p in parts if p not in STOP_WORDS)
    return out


def _verb_intent(word: str) -> Intent | None:
    if word in CHANGE_VERBS:
        return "change"
    if word in READ_VERBS or word in QUERY_VERBS:
        return "read"
    return None


def _without_softeners(words: list[str]) -> list[str]:
    changed = True
    while changed and words:
        changed = False
        for opening in _SOFTENERS:
            if tuple(words[: len(opening)]) == opening:
                words = words[len(opening) :]
                changed = True
    return words


def intent(text: str) -> Intent | None:
    """What a request asks for, by the form of its sentence: ``"read"``, ``"change"``, or
    None when the form does not say (see the module docstring).

    Example:
        >>> intent("what orders did bob@example.com place"), intent("Place an order for bob")
        ('read', 'change')
        >>> intent("Can you cancel order O-5003?"), intent("bob@example.com orders")
        ('change', None)
    """
    folded = fold(text).strip()
    # Values (emails, ids, quoted names) are not words of the sentence; an apostrophe inside
    # a word ("let's", "I'd") quotes nothing.
    plain = re.sub(r"\S*[@\d]\S*|(?<!\w)'[^']*'(?!\w)|\"[^\"]*\"", " ", folded)
    clauses = [
        _without_softeners(_INTENT_WORD.findall(part)) for part in re.split(r"[,;:.!]", plain)
    ]
    clauses = [c for c in clauses if c]
    asked = bool(folded) and folded.rstrip(" .!")[-1:] in _QUESTION_MARKS
    if not clauses:
        return "read" if asked else None
    words = clauses[0]
    first = words[0]
    if first in _MODALS or first in {"how"}:
        # "can you cancel ...", "how do I return ...": a request for the verb that follows.
        rest = words[1:]
        if first == "how" and rest[:1] and rest[0] in _MODALS | {"do", "does"}:
            rest = rest[1:]
        elif first == "how":
            return "read"  # "how many", "how much", "how is ..."
        if rest[:1] and rest[0] in _PRONOUNS:
            verb = _without_softeners(rest[1:])
            asks = _verb_intent(verb[0]) if verb else None
            return asks if asks is not None else ("read" if asked else None)
        return "read" if asked else None
    if first in _INTERROGATIVES or first in _AUXILIARIES:
        return "read"
    if first in CHANGE_VERBS and words[1:2] and words[1] in _RECORD_NOUNS:
        return "read"  # "order history for ...", "return status of ...": a noun phrase
    # An imperative: the verbs that head its clauses ("show ... and cancel ...").
    heads: list[str] = []
    for clause in clauses:
        heads.append(clause[0])
        heads += [clause[i + 1] for i, w in enumerate(clause[:-1]) if w in _CLAUSE_JOINS]
    said = [_verb_intent(w) for w in heads]
    if "change" in said:
        return "change"
    if "read" in said or asked:
        return "read"
    return None


def fit(wanted: Intent | None, effect: str) -> float:
    """The factor a skill's score takes for its effect (``"query"``, ``"command"`` or ``""``)
    against what the request asks: `MISMATCH` when they disagree, else 1.0."""
    if wanted == "read" and effect == "command":
        return MISMATCH
    if wanted == "change" and effect == "query":
        return MISMATCH
    return 1.0


def skill_doc(skill: Skill, effect: Effect = "") -> SkillDoc:
    """The document a skill is found by: id words, description, docstring, params, tasks.

    ``effect`` is what the skill does (the caller classifies its tools,
    `skillbank.compiler.effects`); ``""`` leaves ranking by effect out for this skill.
    """
    id_words = skill.id.replace("_", " ")
    params = " ".join(p.name for p in skill.signature.params)
    tasks = "\n".join(skill.tasks)
    # The id is one compound token, so its words are indexed once, with the whole id.
    text = "\n".join([skill.id, skill.description, skill.signature.docstring, params, tasks])
    summary = "\n".join([id_words, skill.description, tasks])
    return SkillDoc(
        skill_id=skill.id,
        text=text,
        summary=summary,
        stage=skill.stage,
        description=skill.description,
        deprecated=skill.deprecated_by is not None,
        effect=effect,
    )


def fingerprint(skills: Iterable[Skill]) -> str:
    """A hash of what the index depends on: ids, content hashes, case counts, descriptions,
    deprecations and stages (a hit reports the stage, which a stage commit alone changes)."""
    digest = hashlib.sha256(f"skillbank-search/{FORMAT}\n".encode())
    for s in sorted(skills, key=lambda s: s.id):
        row = [
            s.id,
            s.content_hash,
            str(len(s.cases)),
            s.description,
            s.deprecated_by or "",
            s.stage,
        ]
        digest.update(json.dumps(row).encode("utf-8") + b"\n")
    return digest.hexdigest()


# --------------------------------------------------------------------------- embeddings


class _Embedder(Protocol):
    def embed(self, texts: list[str]) -> Any: ...


@functools.cache
def _wordllama() -> _Embedder | None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        import wordllama  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        return None
    finally:  # wordllama calls logging.basicConfig on import; undo it, logging is the app's
        root.handlers[:], root.level = handlers, level
    # The model ships inside the package; its loader looks for the tokenizer in the wrong
    # sub-folder unless it is pointed at the package as its cache. Never download.
    try:
        model: _Embedder = wordllama.WordLlama.load(
            cache_dir=Path(wordllama.__file__).parent, disable_download=True
        )
    except (OSError, ValueError) as exc:
        logging.getLogger(__name__).warning("wordllama is installed but unusable: %s", exc)
        return None
    return model


def embedder() -> _Embedder | None:
    if os.environ.get(_ENV_EMBEDDINGS, "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    return _wordllama()


def backend() -> str:
    """The ranking in use: ``"bm25+wordllama (rrf)"`` or ``"bm25"``.

    Embeddings are used when the ``embeddings`` extra is installed
    (``pip install 'skillbank[embeddings]'``) and ``SKILLBANK_SEARCH_EMBEDDINGS`` is not 0.
    """
    return "bm25+wordllama (rrf)" if embedder() is not None else "bm25"


def _embed(model: _Embedder, texts: list[str]) -> Floats:
    vectors = np.asarray(model.embed(texts), dtype=np.float32).reshape(len(texts), -1)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    out: Floats = (vectors / np.where(norms == 0, 1, norms)).astype(np.float32, copy=False)
    return out


# --------------------------------------------------------------------------- the index


class SearchIndex:
    """BM25 (and optionally embeddings) over a list of `SkillDoc`, ready to rank queries.

    Built with `SearchIndex.build`; `search` keeps one per bank. Usable on its own for
    documents that are not in a bank (the benchmark indexes synthetic ones).
    """

    def __init__(
        self,
        docs: Sequence[SkillDoc],
        bm25: Any,
        embeddings: Floats | None,
        key: str,
    ) -> None:
        self.docs = list(docs)
        self.key = key
        self._bm25 = bm25
        self._embeddings = embeddings
        self._position = {d.skill_id: i for i, d in enumerate(self.docs)}
        self._ids = np.array([d.skill_id for d in self.docs], dtype=object)
        self._live = np.array([not d.deprecated for d in self.docs], dtype=bool)

    @property
    def backend(self) -> str:
        """``"bm25+wordllama (rrf)"`` when this index holds embeddings, else ``"bm25"``."""
        return "bm25" if self._embeddings is None else "bm25+wordllama (rrf)"

    @classmethod
    def build(
        cls, docs: Sequence[SkillDoc], *, key: str = "", embeddings: bool | None = None
    ) -> SearchIndex:
        """Index ``docs``; ``embeddings`` None means "when wordllama is available"."""
        model = embedder() if embeddings in (None, True) else None
        if embeddings and model is None:
            raise RuntimeError(
                "embeddings were asked for but wordllama is not available; install it with "
                "`pip install 'skillbank[embeddings]'`"
            )
        bm25 = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
        if docs:
            bm25.index([tokenize(d.text) or [""] for d in docs], show_progress=False)
        vectors = _embed(model, [d.summary for d in docs]) if model and docs else None
        return cls(docs, bm25, vectors, key)

    # --- on disk ------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        """Write the index to ``folder`` (replaced as a whole, never half-written)."""
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
        try:
            if self.docs:
                self._bm25.save(str(tmp / "bm25"), show_progress=False)
            if self._embeddings is not None:
                np.save(tmp / "embeddings.npy", self._embeddings)
            meta = {"format": FORMAT, "key": self.key, "docs": [asdict(d) for d in self.docs]}
            (tmp / "meta.json").write_text(json.dumps(meta, sort_keys=True), encoding="utf-8")
            if folder.exists():
                shutil.rmtree(folder, ignore_errors=True)
            os.replace(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @classmethod
    def load(cls, folder: Path, key: str) -> SearchIndex | None:
        """The index saved in ``folder`` if it is there, readable and for ``key``; else None."""
        try:
            meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
            if meta.get("format") != FORMAT or meta.get("key") != key:
                return None
            docs = [SkillDoc(**d) for d in meta["docs"]]
            bm25 = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
            if docs:
                bm25 = bm25s.BM25.load(str(folder / "bm25"), show_progress=False, verbosity=0)
            vectors = None
            if (folder / "embeddings.npy").is_file():
                vectors = np.load(folder / "embeddings.npy", allow_pickle=False)
                if vectors.shape[0] != len(docs):
                    return None
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return cls(docs, bm25, vectors, key)

    # --- ranking ------------------------------------------------------------------------

    def bm25_scores(self, text: str) -> Floats:
        """The raw BM25 score of every document for ``text`` (zeros when nothing matches)."""
        scores: Floats = np.zeros(len(self.docs), dtype=np.float32)
        if not self.docs:
            return scores
        ids = self._bm25.get_tokens_ids(tokenize(text))
        if ids:
            scores = np.asarray(self._bm25.get_scores_from_ids(ids), dtype=np.float32)
        return scores

    def relevance(self, text: str) -> tuple[npt.NDArray[np.intp], Floats]:
        """The documents that match ``text`` at all (deprecated ones left out) and their
        relevance in [0, 1], the best being 1.0."""
        none = (np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.float32))
        if not self.docs or not text.strip():
            return none
        scores = self.bm25_scores(text)
        scores[~self._live] = 0
        model = embedder() if self._embeddings is not None else None
        if model is None:
            found = np.flatnonzero(scores > 0)
            if not len(found):
                return none
            rel = scores[found]
            normalised: Floats = (rel / rel.max()).astype(np.float32)
            return found, normalised
        fused = np.zeros(len(self.docs), dtype=np.float64)
        lexical = np.flatnonzero(scores > 0)
        for order in (
            _top(scores[lexical], FUSION_DEPTH, lexical),
            _top_cosine(self._embeddings, _embed(model, [text])[0], self._live, FUSION_DEPTH),
        ):
            fused[order] += 1.0 / (RRF_K + np.arange(1, len(order) + 1))
        found = np.flatnonzero(fused > 0)
        if not len(found):
            return none
        rel64 = fused[found]
        return found, (rel64 / rel64.max()).astype(np.float32)

    def rank(
        self,
        text: str,
        k: int = 5,
        *,
        outcomes: Mapping[str, Outcomes] | Callable[[str], Outcomes] = {},  # noqa: B006
        thompson: bool = False,
        seed: int | None = None,
        effects: bool = True,
    ) -> list[Hit]:
        """The best ``k`` documents for ``text``, by relevance x expected success x fit.

        Args:
            text: The query.
            k: How many hits at most.
            outcomes: The ledger's `Outcomes` per skill id: a mapping (missing ids count as
                none), or a function asked only for the candidates that could still enter
                the top ``k``, best relevance first.
            thompson: Sample success from each Beta posterior instead of taking its mean.
            seed: The sampler's seed (``thompson`` only); the same seed gives the same hits.
            effects: Weigh each skill's effect against the request's `intent` (False: rank by
                relevance and success alone, as a baseline).
        """
        if k <= 0:
            return []
        found, rel = self.relevance(text)
        if not len(found):
            return []
        wanted = intent(text) if effects else None
        # A skill whose effect does not suit the request ranks lower (`fit`).
        suits = np.array([fit(wanted, self.docs[d].effect) for d in found], dtype=np.float32)
        rng = np.random.default_rng(seed)
        if isinstance(outcomes, Mapping):
            s = np.zeros(len(found), dtype=np.float64)
            f = np.zeros(len(found), dtype=np.float64)
            if outcomes:
                where = {int(doc): i for i, doc in enumerate(found)}
                for sid, (ok, bad) in outcomes.items():
                    i = where.get(self._position.get(sid, -1), -1)
                    if i >= 0:
                        s[i], f[i] = ok, bad
            success = rng.beta(1 + s, 1 + f) if thompson else (1 + s) / (2 + s + f)
            score = rel * success * suits
            keep = _top(score, max(4 * k, 32), np.arange(len(found)))
            rows = [(int(found[i]), float(rel[i]), float(success[i]), float(suits[i]))
                    for i in keep]  # fmt: skip
        else:
            rows = self._rank_lazily(found, rel, suits, k, outcomes, rng, thompson)
        hits = [
            Hit(
                skill_id=self.docs[doc].skill_id,
                score=min(1.0, max(0.0, r * p * u)),
                relevance=r,
                success=p,
                stage=self.docs[doc].stage,
                description=self.docs[doc].description,
                effect=self.docs[doc].effect,
                fit=u,
            )
            for doc, r, p, u in rows
        ]
        hits.sort(key=lambda h: (-h.score, -h.relevance, h.skill_id))
        return hits[:k]

    def _rank_lazily(
        self,
        found: npt.NDArray[np.intp],
        rel: Floats,
        suits: Floats,
        k: int,
        outcomes: Callable[[str], Outcomes],
        rng: np.random.Generator,
        thompson: bool,
    ) -> list[tuple[int, float, float, float]]:
        # Success is at most 1, so once a candidate's relevance x fit is below the k-th best
        # score so far, no later candidate can enter: stop asking the ledger.
        bound = rel * suits
        order = sorted(range(len(found)), key=lambda i: (-float(bound[i]), self._ids[found[i]]))
        rows: list[tuple[int, float, float, float]] = []
        best: list[float] = []
        for i in order:
            r, u = float(rel[i]), float(suits[i])
            if len(best) >= k and r * u < best[k - 1]:
                break
            ok, bad = outcomes(str(self._ids[found[i]]))
            p = float(rng.beta(1 + ok, 1 + bad)) if thompson else (1 + ok) / (2 + ok + bad)
            rows.append((int(found[i]), r, p, u))
            best = sorted([*best, r * p * u], reverse=True)[:k]
        return rows


def _top(values: npt.NDArray[Any], n: int, labels: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
    """``labels`` of the ``n`` largest ``values``, largest first (ties by label)."""
    if len(values) > n:
        part = np.argpartition(-values, n - 1)[:n]
    else:
        part = np.arange(len(values))
    ordered = part[np.lexsort((labels[part], -values[part]))]
    out: npt.NDArray[np.intp] = labels[ordered]
    return out


def _top_cosine(
    vectors: Floats | None, query: Floats, live: npt.NDArray[np.bool_], n: int
) -> npt.NDArray[np.intp]:
    if vectors is None or not len(vectors) or not np.any(query):
        return np.zeros(0, dtype=np.intp)
    sims = vectors @ query
    candidates = np.flatnonzero(live)
    return _top(sims[candidates], n, candidates)
