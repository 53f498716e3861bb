"""Retrieval: from a task's words to the skill that does it, and the reflex that runs it.

`Retriever.search` ranks the library's skills for a task by relevance (BM25 over each
skill's document, fused with word embeddings when installed; `skillbank.search` holds the
index) times expected success (the ledger's posterior), and caches the index under the
bank's state folder, keyed by the library's content. `Retriever.reflex` is the autonomous
stage: a trusted skill that clearly covers the task runs with no model planning it; the
decision (which skill, which arguments read off the task, or why not) is `skillbank.reflex`'s.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from skillbank.config import Config
from skillbank.errors import SkillArgumentError, SkillNotFound, SkillRejected
from skillbank.library import SkillLibrary
from skillbank.reflex import ReflexDecision, ReflexIndex
from skillbank.running import Runner, RunResult
from skillbank.search import (
    CACHE_DIR,
    Hit,
    SearchIndex,
    embedder,
    fingerprint,
    skill_doc,
)

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
        key = f"{fingerprint(skills)}:{'emb' if embedder() is not None else 'bm25'}"
        if self._index is not None and self._index.key == key:
            return self._index
        folder = self.library.state / CACHE_DIR
        index = SearchIndex.load(folder / "index", key)
        if index is None:
            index = SearchIndex.build([skill_doc(s) for s in skills], key=key)
            try:
                index.save(folder / "index")
            except OSError as exc:  # a read-only bank still searches, it just rebuilds
                logging.getLogger(__name__).warning("cannot cache the search index: %s", exc)
        self._index = index
        return index

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
