"""Retrieval: from a task's words to the skill that does it, and the reflex that runs it.

`Retriever.search` ranks the library's skills for a task by relevance (BM25 over each
skill's document, fused with word embeddings when installed; `skillbank.search` holds the
index) times expected success (the ledger's posterior) times how the skill's effect suits the
request (a question prefers a skill that only reads; each skill's effect comes from its
tools, classified with the bank's ``query_tools``/``command_tools``), and caches the index
under the bank's state folder, keyed by the library's content and those effects.
`Retriever.reflex` is the autonomous stage: a trusted skill that clearly covers the task runs
with no model planning it; the decision (which skill, which arguments read off the task, or
why not) is `skillbank.reflex`'s.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from skillbank.compiler.effects import classify_tools
from skillbank.config import Config
from skillbank.errors import SkillArgumentError, SkillNotFound, SkillRejected
from skillbank.library import SkillLibrary
from skillbank.reflex import ReflexDecision, ReflexIndex
from skillbank.running import Runner, RunResult
from skillbank.search import (
    CACHE_DIR,
    Effect,
    Hit,
    SearchIndex,
    embedder,
    fingerprint,
    skill_doc,
)
from skillbank.skill import Skill
from skillbank.trajectory import ToolSpec

if TYPE_CHECKING:
    from skillbank.ledger import Outcomes

__all__ = ["Retriever"]

JSON = Any


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
        self._reflexes = ReflexIndex(
            min_coverage=config.reflex_min_relevance, margin=config.reflex_min_margin,
            query_tools=library.query_tools, command_tools=library.command_tools,
        )  # fmt: skip

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

    def plan_reflex(self, task_text: str) -> ReflexDecision:
        """Which autonomous skill a reflex would run for ``task_text``, with which arguments,
        or why it abstains; runs nothing (see `skillbank.reflex`)."""
        self._reflexes.update(self.library.load_all(), self.library.patterns)
        return self._reflexes.plan(task_text)

    def reflex(
        self,
        task_text: str,
        tools: Mapping[str, Callable[..., JSON]],
        *,
        args: Mapping[str, JSON] | None = None,
    ) -> RunResult | None:
        """Run an autonomous skill straight from ``task_text``, with no model planning it.

        `plan_reflex` picks the skill and reads its arguments off the task; ``args`` given
        here win over the ones read (and may supply what the task does not say, but never
        make an abstaining plan run). The run is recorded with ``caller="reflex"`` and the
        arguments; its failure counts against the skill, except a tool refusing a value the
        caller gave in ``args``.

        Returns:
            The run's result (which may be a failure of the skill), or None when the reflex
            abstains, the merged arguments do not fit, or ``tools`` lacks a tool the skill
            needs (then nothing ran).
        """
        decision = self.plan_reflex(task_text)
        if decision.skill_id is None:
            return None
        given = dict(args or {})
        try:
            skill = self.library.load(decision.skill_id)
            if not set(skill.tools) <= set(tools):
                return None
            return self.runner.run(
                skill.id, {**decision.args, **given}, tools, caller="reflex", given=given
            )
        except (SkillArgumentError, SkillNotFound, SkillRejected):
            return None
