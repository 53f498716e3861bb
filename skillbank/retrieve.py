"""Retrieval: from a task's words to the skill that does it, and the reflex that runs it.

`Retriever.search` ranks the library's skills for a task by relevance (BM25 over each
skill's document, fused with word embeddings when installed; `skillbank.search` holds the
index) times expected success (the ledger's posterior) times how the skill's effect suits the
request (a question prefers a skill that only reads; each skill's effect comes from its
tools, classified with the bank's ``query_tools``/``command_tools``), and caches the index
under the bank's state folder, keyed by the library's content and those effects.
`Retriever.reflex` is the autonomous stage: a trusted skill that clearly covers the task runs
with no model planning it.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from skillbank.compiler.effects import classify_tools
from skillbank.config import Config
from skillbank.errors import SkillArgumentError, SkillNotFound, SkillRejected
from skillbank.library import SkillLibrary
from skillbank.running import Runner, RunResult
from skillbank.search import (
    CACHE_DIR,
    Effect,
    Hit,
    SearchIndex,
    embedder,
    fingerprint,
    skill_doc,
    tokenize,
)
from skillbank.skill import Skill
from skillbank.trajectory import ToolSpec

if TYPE_CHECKING:
    from skillbank.ledger import Outcomes

__all__ = ["Retriever"]

JSON = Any

#: Words that turn a request around; a task holding one never runs as a reflex.
_NEGATION = frozenset(
    {"not", "no", "never", "don't", "dont", "doesn't", "without", "except", "nor", "neither",
     "cannot", "can't", "won't", "shouldn't", "instead", "unless", "stop", "undo"}
)  # fmt: skip

#: Task words (argument values aside) a reflex needs before trusting a match.
_REFLEX_MIN_WORDS = 3


class Retriever:
    """Finds skills for tasks in one library, and runs a trusted one as a reflex.

    Args:
        library: The skills.
        config: The reflex thresholds.
        runner: Runs the skill a reflex picks.
        counts: The ledger's `Outcomes` per skill; empty without a ledger.
    """

    def __init__(
        self,
        library: SkillLibrary,
        config: Config,
        *,
        runner: Runner,
        counts: Callable[[], Mapping[str, Outcomes]],
    ) -> None:
        self.library = library
        self.config = config
        self.runner = runner
        self._counts = counts
        self._index: SearchIndex | None = None

    def index(self) -> SearchIndex:
        """The search index of the library as it is now (rebuilt only when skills changed)."""
        skills = self.library.load_all()
        effects = self.effects(skills)
        marks = hashlib.sha256("".join(effects[s.id][:1] or "-" for s in skills).encode())
        key = (
            f"{fingerprint(skills)}:{marks.hexdigest()[:16]}:"
            f"{'emb' if embedder() is not None else 'bm25'}"
        )
        if self._index is not None and self._index.key == key:
            return self._index
        folder = self.library.state / CACHE_DIR
        index = SearchIndex.load(folder / "index", key)
        if index is None:
            index = SearchIndex.build([skill_doc(s, effects[s.id]) for s in skills], key=key)
            try:
                index.save(folder / "index")
            except OSError as exc:  # a read-only bank still searches, it just rebuilds
                logging.getLogger(__name__).warning("cannot cache the search index: %s", exc)
        self._index = index
        return index

    def effects(self, skills: list[Skill]) -> dict[str, Effect]:
        """What each skill does: ``"command"`` when a tool it (or a skill it requires) may
        call changes something, ``"query"`` when every one only reads, ``""`` without tools."""
        by_id = {s.id: s for s in skills}
        config = self.config
        out: dict[str, Effect] = {}
        for skill in skills:
            seen, todo = {skill.id}, [skill]
            tools: dict[str, ToolSpec | None] = {}
            while todo:  # the skill and, transitively, the skills it requires
                current = todo.pop()
                tools |= {t: current.tool_specs.get(t) for t in current.tools}
                for rid in current.requires:
                    if rid not in seen and rid in by_id:
                        seen.add(rid)
                        todo.append(by_id[rid])
            classified = classify_tools(
                tools, {n: spec for n, spec in tools.items() if spec is not None},
                query_tools=config.query_tools, command_tools=config.command_tools,
            )  # fmt: skip
            kinds = {e.effect for e in classified.values()}
            out[skill.id] = "command" if "command" in kinds else "query" if kinds else ""
        return out

    def search(
        self, text: str, k: int = 5, *, thompson: bool = False, seed: int | None = None
    ) -> list[Hit]:
        """The ``k`` skills most likely to do ``text``, best first (see the module docstring).

        Args:
            text: The task, in the user's words.
            k: How many hits at most.
            thompson: Rank by a sample of each skill's success posterior instead of its mean.
            seed: The sampler's seed, for repeatable Thompson rankings.

        Returns:
            Up to ``k`` hits, never a deprecated skill; [] for an empty query or library.

        Raises:
            ValueError: ``k`` is negative.
            LibraryError: the library cannot be read (an unreadable ledger only drops the
                weighting).
        """
        if k < 0:
            raise ValueError(f"k must not be negative, got k={k!r}")
        if not text.strip() or k == 0:
            return []
        index = self.index()
        if not index.docs:
            return []
        return index.rank(text, k, outcomes=self._counts(), thompson=thompson, seed=seed)

    def reflex(
        self,
        task_text: str,
        args: Mapping[str, JSON],
        tools: Mapping[str, Callable[..., JSON]],
    ) -> RunResult | None:
        """Run an autonomous skill straight away when ``task_text`` clearly asks for it.

        No model plans the steps, so it errs on the side of not running: a best hit whose
        effect does not suit the task (`skillbank.search.intent`: a question, and a skill
        that changes something) never runs, and neither does a task with a negation ("do not
        ...", "without ...") or fewer than three words besides the argument values. The best
        `skillbank.search` hit must be an autonomous, non-deprecated skill that *covers* the
        task: at least ``reflex_min_relevance`` of
        the task's words (`skillbank.search.tokenize`, leaving out the words of the argument
        values) occur in the skill's document (`skillbank.search.skill_doc`), leading the
        second hit's coverage by ``reflex_min_margin``. (A hit's own ``relevance`` is relative
        to the query's best match, so it cannot say that no skill fits.) ``args`` must fit
        the signature and ``tools`` hold the tools the skill needs. The run is recorded with
        ``caller="reflex"``.

        Returns:
            The run's result (which may be a failure of the skill), or None when no skill
            qualifies or the arguments or tools do not fit it (then nothing ran).
        """
        hits = self.search(task_text, k=2)
        if not hits or hits[0].fit < 1:  # a question never runs a skill that changes things
            return None
        values: set[str] = set()
        for value in args.values() if isinstance(args, Mapping) else ():
            if isinstance(value, str | int | float):
                values.update(tokenize(str(value)))
        if _NEGATION & set(re.findall(r"[a-z]+(?:'[a-z]+)?", task_text.lower())):
            return None  # "do not cancel ...": a model must read that, not a reflex
        words = [w for w in dict.fromkeys(tokenize(task_text)) if w not in values]
        if len(words) < _REFLEX_MIN_WORDS:
            return None  # too little said to be sure what is asked

        def coverage(skill: Skill) -> float:
            document = set(tokenize(skill_doc(skill).text))
            return sum(w in document for w in words) / len(words)

        try:
            skill = self.library.load(
                hits[0].skill_id
            )  # its stage from SKILL.md, never a cached one
            if skill.stage != "autonomous" or skill.deprecated_by:
                return None
            best = coverage(skill)
            if best < self.config.reflex_min_relevance:
                return None
            if len(hits) > 1 and best - coverage(self.library.load(hits[1].skill_id)) < (
                self.config.reflex_min_margin
            ):
                return None  # two skills fit the task about as well: let the model choose
            return self.runner.run(skill.id, args, tools, caller="reflex")
        except (SkillArgumentError, SkillNotFound, SkillRejected):
            return None
