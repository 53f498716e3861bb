"""A pytest plugin: every skill's checks as test items that plain ``pytest`` runs.

``skills/conftest.py`` imports `pytest_collect_file` from here, so ``pytest skills/``
collects, for each ``skills/<id>/`` folder that holds a ``SKILL.md``::

    skills/<id>/skill.py::validate              the libcst policy (and that the folder loads)
    skills/<id>/skill.py::replay[<trajectory>]  one item per recorded case
    skills/<id>/skill.py::properties            the contract on generated examples
    skills/<id>/skill.py::determinism           two runs of one example agree

A failing item prints what went wrong, without a Python traceback: the findings with a caret,
the replay mismatch, or the falsifying example hypothesis shrank to. The checks are those of
`skillbank.proving` (the gate runs the same ones). Skills are read with
`skillbank.library.SkillLibrary`, rooted at the folder above ``skills/``, and the skills they
require come from the same folder. One sandbox serves the whole session and is closed at its
end. Limits and the number of examples each property tries come from the bank's
configuration: ``prove_examples`` under ``[tool.skillbank]``, or ``SKILLBANK_PROVE_EXAMPLES``
(default 25; 0 skips the two property items).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sandbox import Limits, Sandbox
from skillbank.config import Config, load_config
from skillbank.errors import SkillbankError, SkillCheckFailed
from skillbank.library import SkillLibrary
from skillbank.skill import Case, Skill

__all__ = ["SkillCheckFailed", "SkillFile", "SkillItem", "pytest_collect_file"]


@dataclass
class _Session:
    """What the items of one pytest session share."""

    sandbox: Sandbox | None = None
    #: Libraries by (root, skills folder name).
    libraries: dict[tuple[Path, str], SkillLibrary] = field(default_factory=dict)
    #: Configuration by bank root.
    configs: dict[Path, Config] = field(default_factory=dict)


_SESSION = pytest.StashKey[_Session]()


def _session(config: pytest.Config) -> _Session:
    state = config.stash.get(_SESSION, None)
    if state is None:
        state = config.stash[_SESSION] = _Session()
    return state


def _sandbox(config: pytest.Config) -> Sandbox:
    state = _session(config)
    if state.sandbox is None:
        state.sandbox = Sandbox()
        config.add_cleanup(state.sandbox.close)
    return state.sandbox


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> SkillFile | None:
    """Collect ``skill.py`` of every folder that also holds a ``SKILL.md``; nothing else."""
    if file_path.name != "skill.py" or not (file_path.parent / "SKILL.md").is_file():
        return None
    return SkillFile.from_parent(parent, path=file_path)


class SkillFile(pytest.File):
    """One skill folder's ``skill.py``: its validate, replay, properties and determinism items."""

    @property
    def skill_id(self) -> str:
        """The skill id (the folder's name)."""
        return self.path.parent.name

    @property
    def library(self) -> SkillLibrary:
        """The library holding this skill (one per skills folder and session)."""
        skills_dir = self.path.parent.parent
        key = (skills_dir.parent, skills_dir.name)
        libraries = _session(self.config).libraries
        if key not in libraries:
            libraries[key] = SkillLibrary(skills_dir.parent, skills_dir.name)
        return libraries[key]

    @property
    def bank_config(self) -> Config:
        """The bank's configuration (``[tool.skillbank]``, then ``SKILLBANK_*`` variables)."""
        root = self.path.parent.parent.parent
        configs = _session(self.config).configs
        if root not in configs:
            try:
                configs[root] = load_config(root)
            except SkillbankError as exc:
                raise SkillCheckFailed(f"the bank's configuration is broken: {exc}") from None
        return configs[root]

    @property
    def limits(self) -> Limits:
        """Sandbox limits from the bank's configuration, as ``skillbank run`` uses them."""
        config = self.bank_config
        return Limits(timeout_s=config.timeout_s, memory_mb=config.memory_mb)

    def load(self) -> Skill:
        """The stored skill (a broken folder raises SkillCheckFailed with the reason)."""
        try:
            return self.library.load(self.skill_id)
        except SkillbankError as exc:
            raise SkillCheckFailed(str(exc)) from None

    def requirements(self, skill: Skill) -> dict[str, Skill]:
        """Every skill it requires, directly or not, from the same folder."""
        found: dict[str, Skill] = {}
        todo = list(skill.requires)
        while todo:
            sid = todo.pop()
            if sid in found or sid == skill.id:
                continue
            try:
                found[sid] = self.library.load(sid)
            except SkillbankError as exc:
                raise SkillCheckFailed(
                    f"it requires {sid!r}, which cannot be loaded: {exc}"
                ) from None
            todo += found[sid].requires
        return found

    def collect(self) -> Iterator[SkillItem]:
        """Its items; a folder that does not load gets only ``validate``, which says why."""
        yield SkillItem.from_parent(self, name="validate", check="validate")
        try:
            skill = self.library.load(self.skill_id)
        except SkillbankError:
            return
        for case in skill.cases:
            name = f"replay[{case.trajectory_id}]"
            yield SkillItem.from_parent(self, name=name, check="replay", case=case)
        yield SkillItem.from_parent(self, name="properties", check="properties")
        yield SkillItem.from_parent(self, name="determinism", check="determinism")


class SkillItem(pytest.Item):
    """One check of one skill."""

    def __init__(self, *, check: str, case: Case | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        #: "validate", "replay", "properties" or "determinism".
        self.check = check
        #: The recorded case, for a replay item.
        self.case = case

    @property
    def skill_file(self) -> SkillFile:
        """The skill's collector."""
        assert isinstance(self.parent, SkillFile)
        return self.parent

    def runtest(self) -> None:
        """Run the check; a failure raises SkillCheckFailed carrying the report."""
        from skillbank.proving import check_determinism, check_properties, replay_case
        from skillbank.validate import check_source

        owner = self.skill_file
        skill = owner.load()
        if self.check == "validate":
            found = check_source(
                skill.source, tools=(*skill.tools, *skill.requires), skill_id=skill.id
            )
            if found:
                shown = self._shown_path()
                raise SkillCheckFailed("\n".join(f.render(skill.source, shown) for f in found))
            return
        library = owner.requirements(skill)
        sandbox = _sandbox(self.config)
        if self.check == "replay":
            assert self.case is not None
            result = replay_case(sandbox, skill, self.case, owner.limits, library)
            if not result.ok:
                raise SkillCheckFailed(
                    f"case {self.case.trajectory_id!r} ({self.case.task!r}) no longer "
                    f"replays: {result.failure}\nFix the code, or if the new behaviour is "
                    "intended, re-learn the skill from new trajectories."
                )
            return
        examples = owner.bank_config.prove_examples
        if examples == 0:
            pytest.skip("prove_examples is 0 in the bank's configuration: no generated examples")
        check = check_properties if self.check == "properties" else check_determinism
        outcome = check(skill, sandbox, limits=owner.limits, library=library, max_examples=examples)
        if not outcome.ok:
            where = f"{self._shown_path()}:{outcome.line}: " if outcome.line else ""
            raise SkillCheckFailed(where + outcome.message)

    def _shown_path(self) -> str:
        try:
            return str(self.path.relative_to(self.config.invocation_params.dir))
        except ValueError:
            return str(self.path)

    def repr_failure(
        self,
        excinfo: pytest.ExceptionInfo[BaseException],
        style: str | None = None,
    ) -> str:
        """The check's own report for a failed check; pytest's usual one for anything else."""
        if isinstance(excinfo.value, SkillCheckFailed):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo, style))  # type: ignore[arg-type]

    def reportinfo(self) -> tuple[Path, int | None, str]:
        """Where the item points: the skill's source."""
        return self.path, None, f"{self.skill_file.skill_id}::{self.name}"
