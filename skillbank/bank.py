"""`SkillBank`: one skill library, and the parts that learn, keep, find and run its skills.

The bank is a facade. It owns the collaborators and wires each part from them; the work is
done by the parts, each built from explicit collaborators and never from the bank:

    SkillLibrary   skills/ in git: files, commits, the writers' lock   (skillbank.library)
    CallLedger     outcomes of skill calls: SQLite, or shared PostgreSQL (skillbank.ledger)
    Sandbox        the executor every skill run goes through            (sandbox)
    Learner        trajectories -> checked skills -> one commit         (skillbank.learning)
    Runner         run, execute, call_tool; one ledger row per run      (skillbank.running)
    Retriever      search by relevance x success; the reflex            (skillbank.retrieve)
    Lifecycle      stages, stats, rollback, deprecate                   (skillbank.lifecycle)
    History        versions of a skill: history, any version, diff      (skillbank.history)

An executor passed in (a `sandbox.Executor`, e.g. a remote backend) is used for every sandbox
run: running, proving during learning, rollback and upkeep, the gate, recognition. Without
one, the configuration's ``executor`` decides: local worker processes, or
`sandbox.ray_backend.RayExecutor` on the cluster at ``ray_address``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from skillbank.config import Config, load_config
from skillbank.errors import ConfigError, LibraryError, storage_error
from skillbank.ledger import CallLedger, Ledger
from skillbank.library import CONFTEST, SkillLibrary, git

if TYPE_CHECKING:
    from sandbox import Executor, Limits, Sandbox
    from skillbank.compiler.llm import LLMCompiler
    from skillbank.history import History
    from skillbank.learning import Learner, LearnReport
    from skillbank.ledger import Outcomes
    from skillbank.library import BrokenSkill, Commit
    from skillbank.lifecycle import Lifecycle
    from skillbank.maturity import SkillStats, StageChange
    from skillbank.proving import Failed
    from skillbank.recognize import Plan, PlanResult
    from skillbank.reflex import ReflexDecision
    from skillbank.retrieve import Retriever
    from skillbank.running import Runner, RunResult
    from skillbank.search import Hit
    from skillbank.skill import Skill, SkillDraft, Stage, TestedSkill
    from skillbank.toolspec import ToolFormat
    from skillbank.trajectory import Trajectory
    from skillbank.validate import Rejected
    from skillbank.versioning import HistoryEntry

__all__ = ["SkillBank"]

JSON = Any
Tools = Mapping[str, Callable[..., JSON]]


class SkillBank:
    """A skill library rooted at a folder: ``skills/`` in git, local state in ``.skillbank/``.

    Example:
        >>> bank = SkillBank.init("my-bank")                     # doctest: +SKIP
        >>> report = bank.learn(load_trajectories("runs.jsonl"))  # doctest: +SKIP
        >>> bank.run(report.added[0], {"email": "a@b.c"}, tools)  # doctest: +SKIP

    Args:
        path: The bank's folder (it holds ``skills/``).
        config: Settings (default: read from the folder's pyproject.toml and the environment).
        executor: Runs every sandboxed call (default: local worker processes).
        llm: The LLM compiler to use (default: one from ``llm_model``, or none).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        config: Config | None = None,
        executor: Executor | None = None,
        llm: LLMCompiler | None = None,
    ) -> None:
        self.root = Path(path).resolve()
        self.config = config or load_config(self.root)
        if not (self.root / self.config.skills_dir).is_dir():
            raise LibraryError(
                f"{self.root} is not a skill bank (no {self.config.skills_dir}/ folder); "
                f"create one with `skillbank init {path}`"
            )
        self.library = SkillLibrary(
            self.root, self.config.skills_dir, self.config.state_dir,
            query_tools=self.config.query_tools, command_tools=self.config.command_tools,
            replica=self.config.replica,
        )  # fmt: skip
        self._executor = executor
        self._sandbox: Sandbox | None = None
        self._llm = llm
        self._llm_loaded = llm is not None

    # The parts are made on first use, and their modules imported then: listing skills needs
    # neither the search index (numpy) nor the prover (hypothesis), and a command that starts
    # fast is one people run.

    @functools.cached_property
    def versions(self) -> History:
        """Versions of a skill: history, any version's files, diffs."""
        from skillbank.history import History

        return History(self.library)

    @functools.cached_property
    def lifecycle(self) -> Lifecycle:
        """Stages, statistics, rollback and deprecation."""
        from skillbank.lifecycle import Lifecycle

        return Lifecycle(
            self.library, self.config, ledger=lambda: self.ledger, check=self.check,
            history=self.versions, sandbox=lambda: self.sandbox, limits=self.limits,
            llm=lambda: self.llm,
        )  # fmt: skip

    @functools.cached_property
    def runner(self) -> Runner:
        """Runs skills, plans and a model's tool calls; one ledger row per run."""
        from skillbank.running import Runner

        return Runner(
            self.library, sandbox=lambda: self.sandbox, limits=self.limits,
            ledger=lambda: self.ledger, inline_tools=self.config.sandbox_inline_tools,
        )  # fmt: skip

    @functools.cached_property
    def learner(self) -> Learner:
        """Learns skills from trajectories."""
        from skillbank.learning import Learner

        return Learner(
            self.library, self.config, sandbox=lambda: self.sandbox, limits=self.limits,
            llm=lambda: self.llm, stage_for=self.lifecycle.stage_for, check=self.check,
        )  # fmt: skip

    @functools.cached_property
    def retriever(self) -> Retriever:
        """Search and the reflex."""
        from skillbank.retrieve import Retriever

        return Retriever(self.library, self.config, runner=self.runner, counts=self.outcome_counts)

    @classmethod
    def init(cls, path: str | Path, *, config: Config | None = None) -> SkillBank:
        """Create a bank: the folder, ``skills/``, and a git repository if there is none.

        Idempotent: an existing bank is opened as it is.
        """
        root = Path(path).resolve()
        cfg = config or load_config(root)
        try:
            (root / cfg.skills_dir).mkdir(parents=True, exist_ok=True)
            state = root / cfg.state_dir
            state.mkdir(exist_ok=True)
            ignore = state / ".gitignore"
            if not ignore.exists():
                ignore.write_text("# local state of skillbank: never committed\n*\n")
            conftest = root / cfg.skills_dir / "conftest.py"
            if not conftest.exists():
                conftest.write_text(CONFTEST, encoding="utf-8")
        except OSError as exc:
            raise storage_error(exc, f"the bank at {root}") or LibraryError(
                f"cannot create the bank at {root}: {exc}"
            ) from None
        inside = git(root, "rev-parse", "--is-inside-work-tree", check=False)
        ignored = git(root, "check-ignore", "-q", str(root / cfg.skills_dir), check=False)
        if inside.returncode != 0 or inside.stdout.strip() != "true" or ignored.returncode == 0:
            # Not in a repository, or in a folder the enclosing repository ignores (like the
            # demo inside a clone of skillbank): the bank gets a repository of its own.
            git(root, "init", "-q")
        return cls(root, config=cfg)

    # --- collaborators ------------------------------------------------------------------

    @property
    def sandbox(self) -> Sandbox:
        """The bank's sandbox (the executor's workers start on first use)."""
        if self._sandbox is None:
            from sandbox import Sandbox

            executor = self._executor
            if executor is None and self.config.executor == "ray":
                executor = self._ray_executor()
            self._sandbox = Sandbox(
                self.limits, executor=executor, isolation=self.config.sandbox_isolation
            )
        return self._sandbox

    def _ray_executor(self) -> Executor:
        """The Ray backend the configuration asks for (``executor = "ray"``)."""
        address = self.config.ray_address or None
        try:
            from sandbox.ray_backend import INSTALL_HINT, RayExecutor
        except ImportError as exc:  # pragma: no cover - the module itself needs nothing
            raise ConfigError(f"executor = 'ray': {exc}") from None
        try:
            return RayExecutor(
                address,
                actors=self.config.ray_actors,
                calls_per_actor=self.config.ray_calls_per_actor,
                isolation=self.config.sandbox_isolation,
            )
        except ImportError as exc:
            raise ConfigError(f"executor = 'ray': {exc}", hint=INSTALL_HINT) from None
        except (ConnectionError, ValueError) as exc:
            raise ConfigError(
                f"executor = 'ray': {exc}",
                hint="start the cluster (ray start --head), or fix ray_address / "
                "SKILLBANK_RAY_ADDRESS, or use --executor local",
            ) from None

    @property
    def limits(self) -> Limits:
        """Sandbox limits from the configuration."""
        from sandbox import Limits

        return Limits(timeout_s=self.config.timeout_s, memory_mb=self.config.memory_mb)

    @functools.cached_property
    def ledger(self) -> CallLedger:
        """The bank's ledger of skill calls: ``<state_dir>/ledger.sqlite``, or the PostgreSQL
        database ``ledger_url`` names (then no SQLite file is created)."""
        if self.config.ledger_url:
            from skillbank.ledger_postgres import PostgresLedger

            return PostgresLedger(self.config.ledger_url)
        return Ledger.in_state_dir(self.library.state)

    @property
    def llm(self) -> LLMCompiler | None:
        """The optional LLM compiler: None unless given or ``llm_model`` is configured."""
        if not self._llm_loaded:
            self._llm_loaded = True
            if self.config.llm_model:
                from skillbank.compiler.llm import LLMCompiler  # imports openai only when used

                self._llm = LLMCompiler.from_config(self.config)
        return self._llm

    def close(self) -> None:
        """Stop the sandbox's worker processes and close the ledger (a later run reopens both)."""
        ledger = self.__dict__.get("ledger")  # only if opened: a cached property
        if isinstance(ledger, CallLedger):
            ledger.close()
        if self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None
        if self._llm is not None:
            self._llm.close()
        self._llm, self._llm_loaded = None, False

    def __enter__(self) -> SkillBank:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- reading ------------------------------------------------------------------------

    def skills(self) -> list[Skill]:
        """Every stored skill that loads, sorted by id (see `broken` for the others)."""
        return self.library.load_all()

    def broken(self) -> list[BrokenSkill]:
        """The skill folders that do not load, with what is wrong (left out of `skills`)."""
        return self.library.scan()[1]

    def get(self, skill_id: str) -> Skill:
        """One stored skill (raises SkillNotFound with the known ids)."""
        return self.library.load(skill_id)

    # --- learning and checking ----------------------------------------------------------

    def check(
        self, draft: SkillDraft, library: Mapping[str, Skill] | None = None
    ) -> TestedSkill | Failed | Rejected:
        """`skillbank.proving.check` in this bank's sandbox: the one way to a `TestedSkill`."""
        from skillbank.proving import check

        return check(draft, self.sandbox, self.limits, library)

    def learn(
        self, trajectories: Iterable[Trajectory], *, branch: str | None = None
    ) -> LearnReport:
        """Learn skills from trajectories and commit them (see `skillbank.learning.Learner`)."""
        return self.learner.learn(trajectories, branch=branch)

    def match(self, trajectory: Trajectory) -> Plan:
        """The shortest plan of skill calls and raw tool calls that reproduces a trajectory.

        Each skill step was checked by running the skill in the sandbox against the
        trajectory's own results; see `skillbank.recognize`.
        """
        from skillbank.compiler.effects import classify_tools
        from skillbank.recognize import match_steps
        from skillbank.signature import check_arguments

        effects = classify_tools(
            {s.tool for s in trajectory.steps}, {t.name: t for t in trajectory.tools},
            query_tools=self.config.query_tools, command_tools=self.config.command_tools,
        )  # fmt: skip
        queries = {name for name, e in effects.items() if e.effect == "query"}
        return match_steps(
            trajectory, self.skills(), self.sandbox, self.limits, check_arguments, queries
        )

    # --- running ------------------------------------------------------------------------

    def check_args(self, skill: Skill, args: Mapping[str, JSON]) -> dict[str, JSON]:
        """Check arguments against the skill's signature; return them ready to run.

        The check every call goes through (see `skillbank.signature.check_arguments`).
        """
        from skillbank.signature import check_arguments

        return check_arguments(skill, args)

    def run(
        self,
        skill_id: str,
        args: Mapping[str, JSON],
        tools: Tools,
        *,
        limits: Limits | None = None,
        caller: str | None = None,
    ) -> RunResult:
        """Run a stored skill in the sandbox (see `skillbank.running.Runner.run`)."""
        return self.runner.run(skill_id, args, tools, limits=limits, caller=caller)

    def execute(self, plan: Plan, tools: Tools) -> PlanResult:
        """Run a plan against host tools (see `skillbank.running.Runner.execute`)."""
        return self.runner.execute(plan, tools)

    def call_tool(
        self, name: str, arguments_json: str, tools: Tools, *, caller: str | None = None
    ) -> str:
        """Run a skill a model called as a tool; never raises (see `Runner.call_tool`)."""
        return self.runner.call_tool(name, arguments_json, tools, caller=caller)

    def tool_specs(
        self,
        fmt: ToolFormat = "chat",
        *,
        stages: Sequence[Stage] = ("associative", "autonomous"),
    ) -> list[dict[str, Any]]:
        """The skills a model may call, as tool definitions (see `skillbank.toolspec`).

        Deprecated skills are left out (their replacements are offered instead).

        Args:
            fmt: "chat" (Chat Completions), "responses" (the Responses API) or "mcp".
            stages: The stages to offer; by default not "cognitive" (learned from too
                little evidence to be called as a tool).
        """
        wanted = set(stages)
        offered = [s for s in self.skills() if s.stage in wanted and not s.deprecated_by]
        from skillbank.toolspec import render_tools

        return render_tools(offered, fmt)

    # --- retrieval ----------------------------------------------------------------------

    def search(
        self, text: str, k: int = 5, *, thompson: bool = False, seed: int | None = None
    ) -> list[Hit]:
        """The ``k`` skills most relevant to ``text``, ranked by relevance times expected
        success (see `skillbank.retrieve.Retriever.search`)."""
        return self.retriever.search(text, k, thompson=thompson, seed=seed)

    def reflex(
        self, task_text: str, tools: Tools, *, args: Mapping[str, JSON] | None = None
    ) -> RunResult | None:
        """Run an autonomous skill straight from the task's words, or None when the reflex
        abstains (see `Retriever.reflex`); ``args`` given win over the ones read."""
        return self.retriever.reflex(task_text, tools, args=args)

    def plan_reflex(self, task_text: str) -> ReflexDecision:
        """Which skill a reflex would run, with which arguments, or why it abstains; runs
        nothing (see `skillbank.reflex`)."""
        return self.retriever.plan_reflex(task_text)

    # --- lifecycle and versions ---------------------------------------------------------

    def outcome_counts(self, versions: Mapping[str, str] | None = None) -> dict[str, Outcomes]:
        """The ledger's `Outcomes` per skill; empty without a readable ledger."""
        return self.lifecycle.outcome_counts(versions)

    def stats(self, skill_id: str | None = None) -> list[SkillStats]:
        """How each skill has done, from the ledger (see `Lifecycle.stats`)."""
        return self.lifecycle.stats(skill_id)

    def update_stages(
        self, skill_ids: Iterable[str] | None = None, *, branch: str | None = None
    ) -> list[StageChange]:
        """Promote or demote skills by their ledger counts (see `Lifecycle.update_stages`)."""
        return self.lifecycle.update_stages(skill_ids, branch=branch)

    def promote(
        self,
        skill_id: str,
        stage: Stage | None,
        *,
        reason: str = "",
        unpin: bool = False,
        branch: str | None = None,
    ) -> Commit | None:
        """A reviewer grants or withdraws a stage, pinned (see `Lifecycle.promote`)."""
        return self.lifecycle.promote(skill_id, stage, reason=reason, unpin=unpin, branch=branch)

    def rollback(self, skill_id: str, version: str, *, branch: str | None = None) -> Commit:
        """Write an earlier version back as a new, higher one (see `Lifecycle.rollback`)."""
        return self.lifecycle.rollback(skill_id, version, branch=branch)

    def deprecate(self, old_id: str, *, by: str, branch: str | None = None) -> Commit:
        """Mark a skill as replaced by another (see `Lifecycle.deprecate`)."""
        return self.lifecycle.deprecate(old_id, by=by, branch=branch)

    def rename(self, old_id: str, new_id: str, *, branch: str | None = None) -> Commit:
        """Give a skill a new id; the old one stays an alias (see `Lifecycle.rename`)."""
        return self.lifecycle.rename(old_id, new_id, branch=branch)

    def history(self, skill_id: str) -> list[HistoryEntry]:
        """The commits that changed a skill, newest first (see `History.history`)."""
        return self.versions.history(skill_id)

    def diff(self, skill_id: str, a: str | None = None, b: str | None = None) -> str:
        """A unified diff of a skill between two versions (see `History.diff`)."""
        return self.versions.diff(skill_id, a, b)
