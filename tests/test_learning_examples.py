"""The foundation's promise on the bundled example, end to end.

Any trajectory the example's scripted agent produces compiles to a skill that, run in the
sandbox against the same starting state, makes the same tool calls and returns the same
result. And the repository's own ``skills/`` folder is exactly what learning the bundled
trajectories produces.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox import Sandbox
from skillbank import (
    SkillBank,
    Step,
    Trajectory,
    check_source,
    compile_trajectory,
    load_trajectories,
    parse_record,
)
from skillbank.compiler.effects import classify_tools
from skillbank.examples import PROCEDURES, Shop, run_procedure
from skillbank.library import ALIAS_FILE
from skillbank.trajectory import canonical_json

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox() as sb:
        yield sb


@pytest.fixture(scope="module")
def seeded_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("shop") / "seed.sqlite"
    Shop.create(path)
    return path


def fresh_shop(seeded_db: Path, where: Path) -> Shop:
    shutil.copyfile(seeded_db, where)
    return Shop(where)


@given(
    name=st.sampled_from(sorted(PROCEDURES)),
    seed=st.integers(0, 2**32 - 1),
    template=st.integers(0, 5),
)
def test_scripted_trajectories_compile_to_skills_that_reproduce_them(
    sandbox: Sandbox, seeded_db: Path, tmp_path_factory: pytest.TempPathFactory,
    name: str, seed: int, template: int,
) -> None:  # fmt: skip
    work = tmp_path_factory.mktemp("prop")
    procedure = PROCEDURES[name]
    recorder = fresh_shop(seeded_db, work / "record.sqlite")
    args = procedure.draw_args(random.Random(seed), recorder)
    record = run_procedure(
        recorder, name, args, record_id="prop", template_index=template % len(procedure.templates)
    )
    trajectory: Trajectory = parse_record(record, "generated")
    assert trajectory.outcome.success

    draft = compile_trajectory(trajectory)
    assert check_source(draft.source, tools=draft.tools, skill_id=draft.id) == []

    replayer = fresh_shop(seeded_db, work / "replay.sqlite")  # the same starting state
    tools = {k: v for k, v in replayer.tools().items() if k in draft.tools}
    result = sandbox.run(draft.source, draft.id, dict(draft.cases[0].args), tools)
    assert result.ok, result.error

    made = [canonical_json(Step.from_tool_call(c).to_case_json()) for c in result.tool_calls]
    # The skill makes the calls its case recorded, in order, leaving out reads nothing it does
    # depends on: the run's commands exactly.
    recorded = iter(canonical_json(c.to_case_json()) for c in draft.cases[0].calls)
    assert all(any(m == r for r in recorded) for m in made)
    effects = classify_tools(
        [s.tool for s in trajectory.steps], {t.name: t for t in trajectory.tools}
    )
    commands = [s for s in trajectory.steps if effects[s.tool].effect == "command"]
    assert [m for m in made if effects[json.loads(m)["tool"]].effect == "command"] == [
        canonical_json(s.to_case_json()) for s in commands
    ]
    assert canonical_json(result.value) == canonical_json(trajectory.steps[-1].result)
    assert replayer.snapshot() == recorder.snapshot()


def test_repository_skills_are_exactly_what_learning_the_examples_gives(
    tmp_path: Path, example_trajectories: list[Trajectory]
) -> None:
    messy = load_trajectories(REPO / "skillbank/examples/trajectories/shop_messy.jsonl")
    with SkillBank.init(tmp_path / "bank") as bank:
        report = bank.learn([*example_trajectories, *messy])
    assert not report.rejected
    # The old ids of renamed skills (``alias.json`` folders) are the repository's history,
    # not something learning makes; each must name one of the learned skills.
    ours = {
        p.relative_to(REPO / "skills"): p.read_bytes()
        for p in sorted((REPO / "skills").rglob("*"))
        if p.is_file()
        and not {"__pycache__", ".hypothesis"} & set(p.parts)
        and p.name != ALIAS_FILE
    }
    for alias in (REPO / "skills").glob(f"*/{ALIAS_FILE}"):
        target = json.loads(alias.read_text())["alias_of"]
        assert (tmp_path / "bank" / "skills" / target / "SKILL.md").is_file(), alias
    fresh = {
        p.relative_to(tmp_path / "bank" / "skills"): p.read_bytes()
        for p in sorted((tmp_path / "bank" / "skills").rglob("*"))
        if p.is_file()
    }
    assert sorted(map(str, ours)) == sorted(map(str, fresh)), (
        "skills/ differs from a fresh learn; regenerate with `skillbank learn "
        "skillbank/examples/trajectories/shop.jsonl skillbank/examples/trajectories/"
        "shop_messy.jsonl` at the repo root"
    )
    for rel, data in fresh.items():
        assert ours[rel] == data, f"skills/{rel} would change if re-learned"


def test_relearning_into_the_repository_itself_changes_nothing(
    tmp_path: Path, example_trajectories: list[Any]
) -> None:
    # The repository root is a bank (pyproject [tool.skillbank] + skills/); learning the
    # examples there again must find everything known and make no commit.
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copytree(REPO / "skills", root / "skills")
    shutil.copyfile(REPO / "pyproject.toml", root / "pyproject.toml")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base"],
        cwd=root,
        check=True,
    )
    with SkillBank(root) as bank:
        messy = load_trajectories(REPO / "skillbank/examples/trajectories/shop_messy.jsonl")
        report = bank.learn([*example_trajectories, *messy])
    assert report.commit is None and not report.added and not report.updated
    # The messy file asks twice for some customers the same way: those are duplicates.
    assert {e.action for e in report.entries} <= {"unchanged", "duplicate"}


def test_every_repository_skill_validates_and_replays_all_its_cases(sandbox: Sandbox) -> None:
    from skillbank.proving import prove
    from skillbank.skill import SkillDraft, TestedSkill
    from skillbank.validate import Rejected, validate

    bank = SkillBank(REPO)
    skills = bank.skills()
    assert len(skills) >= 5
    for s in skills:
        draft = SkillDraft(s.id, s.source, s.description, s.tools, s.cases, s.tool_specs)
        validated = validate(draft)
        assert not isinstance(validated, Rejected), validated.findings
        proved = prove(validated, sandbox)
        assert isinstance(proved, TestedSkill), proved
        assert proved.cases_passed == len(s.cases) >= 2
