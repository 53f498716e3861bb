"""skillbank.export: Agent Skills folders that skills-ref accepts, and scripts that run."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner

from skillbank import SkillBank
from skillbank.cli import cli
from skillbank.examples import Shop
from skillbank.export import (
    EXPORT_FORMAT,
    ExportError,
    agent_skill_name,
    export_agent_skills,
)
from skillbank.library import SkillLibrary, skill_files
from skillbank.signature import read_signature
from skillbank.skill import Skill

skills_ref = pytest.importorskip("skills_ref", reason="pip install -e '.[test]' (skills-ref)")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def repo_skills() -> list[Skill]:
    """The 7 skills of this repository's own ``skills/`` folder."""
    skills = SkillLibrary(REPO).load_all()
    assert len(skills) == 7
    return skills


@pytest.fixture(scope="module")
def repo_bank() -> Iterator[SkillBank]:
    with SkillBank(REPO) as bank:
        yield bank


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _load_script(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"exported_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _first_args(skill: Skill) -> dict[str, object]:
    case = min(skill.cases, key=lambda c: (c.trajectory_id, c.trajectory_sha256))
    return dict(case.args)


# --------------------------------------------------------------------------- the folders


def test_every_exported_folder_passes_skills_ref(tmp_path: Path, repo_skills: list[Skill]) -> None:
    folders = export_agent_skills(repo_skills, tmp_path / "out")

    assert [f.name for f in folders] == [s.id.replace("_", "-") for s in repo_skills]
    for skill, folder in zip(repo_skills, folders, strict=True):
        assert skills_ref.validate(folder) == [], folder
        props = skills_ref.read_properties(folder)
        assert props.name == folder.name
        assert props.metadata["skillbank-id"] == skill.id
        assert props.metadata["skillbank-export"] == EXPORT_FORMAT
        assert props.metadata["skillbank-content-hash"] == f"sha256:{skill.content_hash}"
        assert skill.description in props.description
        assert set(_tree(folder)) == {
            "SKILL.md",
            f"scripts/{skill.id}.py",
            "references/tools.json",
            "references/cases.jsonl",
        }
        stored = skill_files(skill, version=skill.version, stage=skill.stage)
        assert (folder / "references/tools.json").read_text() == stored["tools.json"]
        assert (folder / "references/cases.jsonl").read_text() == stored["cases.jsonl"]
        assert os.access(folder / "scripts" / f"{skill.id}.py", os.X_OK)


def test_skill_md_says_what_when_how_and_that_the_sandbox_stays_behind(
    tmp_path: Path, repo_skills: list[Skill]
) -> None:
    skill = next(s for s in repo_skills if s.id == "cancel_order_by_email")
    (folder,) = export_agent_skills([skill], tmp_path)
    text = (folder / "SKILL.md").read_text()
    script = (folder / "scripts" / f"{skill.id}.py").read_text()

    for heading in ("## When to use it", "## Signature", "## Arguments", "## How to run it"):
        assert heading in text
    assert "## Tools it needs" in text
    assert skill.signature.render() in text
    shown = sorted(skill.cases, key=lambda c: (c.trajectory_id, c.trajectory_sha256))[:10]
    assert all(" ".join(c.task.split()) in text for c in shown)
    assert f"and {len(skill.cases) - 10} more in `references/cases.jsonl`" in text
    assert '| `status` | `str` | `"pending"` |' in text
    assert all(f"- `{tool}`: " in text for tool in skill.tools)
    assert f"python scripts/{skill.id}.py --tools MODULE:ATTR" in text
    assert "does not travel with this export" in text
    assert "NO SANDBOX" in script and "Review it as code" in script
    assert skill.source.strip() in script


def test_reexport_writes_the_same_bytes_and_touches_nothing(
    tmp_path: Path, repo_skills: list[Skill]
) -> None:
    out = tmp_path / "out"
    export_agent_skills(repo_skills, out)
    before = _tree(out)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}

    export_agent_skills(list(reversed(repo_skills)), out)

    assert _tree(out) == before
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == stamps


def test_a_changed_skill_replaces_its_earlier_export(
    tmp_path: Path, repo_skills: list[Skill]
) -> None:
    skill = repo_skills[0]
    (folder,) = export_agent_skills([skill], tmp_path)
    newer = dataclasses.replace(skill, version="1.1.0")

    export_agent_skills([newer], tmp_path)

    assert "skillbank-version: 1.1.0" in (folder / "SKILL.md").read_text()


@pytest.mark.parametrize(
    "prepare",
    [
        pytest.param(lambda f: (f.mkdir(), (f / "notes.txt").write_text("mine")), id="foreign"),
        pytest.param(lambda f: f.write_text("a file"), id="a-file"),
        pytest.param(None, id="extra-file-in-export"),
    ],
)
def test_refuses_to_overwrite_other_content(
    tmp_path: Path, repo_skills: list[Skill], prepare: object
) -> None:
    out = tmp_path / "out"
    target = out / agent_skill_name(repo_skills[-1].id)
    if prepare is None:
        export_agent_skills([repo_skills[-1]], out)
        (target / "references" / "mine.md").write_text("hand-written")
    else:
        out.mkdir()
        prepare(target)  # type: ignore[operator]
    before = _tree(out) if out.is_dir() else {}

    with pytest.raises(ExportError, match="export|folder"):
        export_agent_skills(repo_skills, out)

    assert _tree(out) == before  # checked before anything was written
    assert not (out / agent_skill_name(repo_skills[0].id)).exists()


def test_refuses_an_output_that_is_a_file(tmp_path: Path, repo_skills: list[Skill]) -> None:
    (tmp_path / "out").write_text("x")
    with pytest.raises(ExportError, match="not a folder"):
        export_agent_skills(repo_skills, tmp_path / "out")


@pytest.mark.parametrize(
    ("skill_id", "name"),
    [
        ("find_customer", "find-customer"),
        ("a", "a"),
        ("a__b", "a-b"),
        ("a_b_", "a-b"),
        ("v2_sync", "v2-sync"),
    ],
)
def test_names_use_single_hyphens(skill_id: str, name: str) -> None:
    assert agent_skill_name(skill_id) == name


def test_two_ids_with_one_name_are_refused(tmp_path: Path, repo_skills: list[Skill]) -> None:
    skill = repo_skills[0]
    twin = dataclasses.replace(skill, id=skill.id.replace("_", "__", 1))
    with pytest.raises(ExportError, match="both export as"):
        export_agent_skills([skill, twin], tmp_path)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- the scripts


def test_exported_script_as_a_subprocess_gives_what_bank_run_gives(
    tmp_path: Path, repo_skills: list[Skill], repo_bank: SkillBank
) -> None:
    skill = next(s for s in repo_skills if s.id == "place_order_by_email_and_query")
    (folder,) = export_agent_skills([skill], tmp_path / "out")
    args = _first_args(skill)
    script_shop = Shop.create(tmp_path / "script.sqlite")
    bank_shop = Shop.create(tmp_path / "bank.sqlite")

    proc = subprocess.run(
        [
            sys.executable,
            str(folder / "scripts" / f"{skill.id}.py"),
            "--tools",
            "skillbank.examples.shop:tools",
            json.dumps(args),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "SKILLBANK_SHOP_DB": str(tmp_path / "script.sqlite")},
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    expected = repo_bank.run(skill.id, args, bank_shop.tools())

    assert proc.returncode == 0, proc.stderr
    assert expected.ok, expected.error
    assert json.loads(proc.stdout) == expected.value
    assert script_shop.snapshot() == bank_shop.snapshot()  # it placed the same order


def test_every_exported_script_agrees_with_bank_run(
    tmp_path: Path, repo_skills: list[Skill], repo_bank: SkillBank
) -> None:
    folders = export_agent_skills(repo_skills, tmp_path / "out")
    for n, (skill, folder) in enumerate(zip(repo_skills, folders, strict=True)):
        script = _load_script(folder / "scripts" / f"{skill.id}.py")
        args = _first_args(skill)
        got = script._run(args, Shop.create(tmp_path / f"s{n}.sqlite").tools())
        expected = repo_bank.run(skill.id, args, Shop.create(tmp_path / f"b{n}.sqlite").tools())
        assert expected.ok, expected.error
        assert got == expected.value, skill.id


def test_script_reads_stdin_and_reports_errors_on_stderr(
    tmp_path: Path, repo_skills: list[Skill]
) -> None:
    skill = next(s for s in repo_skills if s.id == "list_orders_by_email")
    (folder,) = export_agent_skills([skill], tmp_path / "out")
    Shop.create(tmp_path / "shop.sqlite")
    script = str(folder / "scripts" / f"{skill.id}.py")
    env = {**os.environ, "SKILLBANK_SHOP_DB": str(tmp_path / "shop.sqlite")}

    def run(*argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, script, *argv],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=60,
            check=False,
        )

    ok = run("--tools", "skillbank.examples.shop:tools", stdin='{"email": "bob@example.com"}')
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["customer_id"] == "C-1002"
    unknown = run("--tools", "skillbank.examples.shop:tools", '{"email": "nobody@example.com"}')
    assert unknown.returncode == 1
    assert "ToolError: find_customer: ValueError: no customer has email" in unknown.stderr
    bad = run("--tools", "skillbank.examples.shop:tools", '{"mail": "bob@example.com"}')
    assert bad.returncode == 1 and "bad arguments" in bad.stderr


def test_script_reaches_only_declared_tools(tmp_path: Path, repo_skills: list[Skill]) -> None:
    skill = next(s for s in repo_skills if s.id == "list_orders_by_email")
    (folder,) = export_agent_skills([skill], tmp_path)
    script = _load_script(folder / "scripts" / f"{skill.id}.py")
    shop = Shop.create(tmp_path / "shop.sqlite").tools()

    with pytest.raises(script.ToolNotAllowed, match="list_orders"):
        script._run({"email": "bob@example.com"}, {"find_customer": shop["find_customer"]})
    script._run({"email": "bob@example.com"}, shop)
    with pytest.raises(script.ToolNotAllowed, match="cancel_order"):
        script.tools.cancel_order(order_id="O-5001", reason="x")


def _composed(base: Skill) -> Skill:
    source = (
        "def history_for(email: str) -> dict:\n"
        '    """The order history of {email}, through another skill."""\n'
        f"    return tools.{base.id}(email=email)\n"
    )
    return dataclasses.replace(
        base,
        id="history_for",
        source=source,
        signature=read_signature(source),
        tools=(base.id,),
        requires=(base.id,),
        tool_specs={},
    )


def test_a_composed_skill_carries_the_skills_it_calls(
    tmp_path: Path, repo_skills: list[Skill]
) -> None:
    base = next(s for s in repo_skills if s.id == "list_orders_by_email")
    composed = _composed(base)

    with pytest.raises(ExportError, match="requires skill 'list_orders_by_email'"):
        export_agent_skills([composed], tmp_path / "a")
    (folder,) = export_agent_skills([composed], tmp_path / "b", dependencies=repo_skills)

    assert skills_ref.validate(folder) == []
    text = (folder / "SKILL.md").read_text()
    assert "tools: find_customer list_orders" in text
    assert "skillbank-requires: list_orders_by_email" in text
    script = _load_script(folder / "scripts" / "history_for.py")
    shop = Shop.create(tmp_path / "shop.sqlite").tools()
    assert script._HOST_TOOLS == ("find_customer", "list_orders")
    got = script._run({"email": "bob@example.com"}, shop)
    assert got == script.list_orders_by_email(email="bob@example.com")
    assert got["customer_id"] == "C-1002"


# --------------------------------------------------------------------------- the command


def test_command_exports_the_chosen_skills(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "out"
    argv = ["agent-skills", str(out), "--root", str(REPO), "--skill", "list_orders_by_email"]

    result = runner.invoke(cli, ["export", *argv, "--json"])

    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [str(out / "list-orders-by-email")]
    assert skills_ref.validate(out / "list-orders-by-email") == []
    again = runner.invoke(cli, ["export", *argv])
    assert again.exit_code == 0 and "review them as code" in again.output
    missing = runner.invoke(cli, ["export", *argv[:4], "--skill", "no_such_skill"])
    assert missing.exit_code == 1 and "no_such_skill" in missing.output


def test_command_help_has_an_example() -> None:
    runner = CliRunner()
    for argv in (["--help"], ["agent-skills", "--help"]):
        result = runner.invoke(cli, ["export", *argv])
        assert result.exit_code == 0
        assert "Example:" in result.output


def test_an_exported_script_calls_tools_by_their_real_names(tmp_path: Path) -> None:
    # A skill learned from an MCP-style tool ("get-weather") writes tools.get_weather; the
    # script, like the sandbox, calls the host tool by its real name.
    from skillbank.trajectory import Outcome, Step, Trajectory

    runs = [
        Trajectory(
            f"w{i}", f"weather in {city}", (),
            (Step("get-weather", {"city": city}, {"t": i}, None, "c0"),), Outcome(True),
        )
        for i, city in enumerate(["Oslo", "Lima"])
    ]  # fmt: skip
    with SkillBank.init(tmp_path / "bank") as bank:
        (sid,) = bank.learn(runs).added
        skill = bank.get(sid)
    (folder,) = export_agent_skills([skill], tmp_path / "out")
    script = _load_script(folder / "scripts" / f"{sid}.py")
    (param,) = [p.name for p in skill.signature.params]
    got = script._run({param: "Rome"}, {"get-weather": lambda city: {"city": city}})
    assert got == {"city": "Rome"}
