from __future__ import annotations

import errno
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from skillbank.cli import cli
from skillbank.errors import SkillNotFound
from tests.conftest import EXAMPLE_TRAJECTORIES, REPO


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("COLUMNS", "200")
    return CliRunner()


def invoke(runner: CliRunner, *args: str) -> tuple[int, str]:
    result = runner.invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def learned_root(runner: CliRunner, tmp_path: Path) -> Path:
    root = tmp_path / "bank"
    assert invoke(runner, "init", str(root))[0] == 0
    code, out = invoke(runner, "learn", str(EXAMPLE_TRAJECTORIES), "--root", str(root), "--json")
    assert code == 0, out
    return root


def test_every_command_has_help(runner: CliRunner) -> None:
    code, out = invoke(runner, "-h")
    assert code == 0
    for name, command in cli.commands.items():
        assert command.help, name
        sub_code, sub_out = invoke(runner, name, "--help")
        assert sub_code == 0 and "Example" in sub_out, name


def test_learn_list_show_json(runner: CliRunner, learned_root: Path) -> None:
    code, out = invoke(runner, "list", "--root", str(learned_root), "--json")
    skills = json.loads(out)
    assert code == 0 and len(skills) == 7
    order = next(
        s for s in skills if "place_order" in s["tools"] and "search_products" in s["tools"]
    )
    assert order["parameters"] == [
        {"name": "email", "type": "str", "required": True},
        {"name": "query", "type": "str", "required": True},
        {"name": "quantity", "type": "int", "required": True},
    ]
    code, out = invoke(runner, "show", order["id"], "--root", str(learned_root), "--json")
    shown = json.loads(out)
    assert shown["source"].startswith(f"def {order['id']}(")
    assert len(shown["tasks"]) == 6
    code, out = invoke(runner, "show", order["id"], "--root", str(learned_root))
    assert code == 0 and "signature:" in out and "tools.place_order(" in out


def test_learn_twice_reports_nothing_to_commit(runner: CliRunner, learned_root: Path) -> None:
    code, out = invoke(runner, "learn", str(EXAMPLE_TRAJECTORIES), "--root", str(learned_root))
    assert code == 0
    assert "nothing to commit" in out and "42 trajectory(ies) already known" in out


def test_run_with_example_tools(
    runner: CliRunner, learned_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SKILLBANK_SHOP_DB", str(tmp_path / "shop.sqlite"))
    skills = json.loads(invoke(runner, "list", "--root", str(learned_root), "--json")[1])
    history = next(s["id"] for s in skills if s["tools"] == ["find_customer", "list_orders"])
    args = json.dumps({"email": "alice@example.com"})
    code, out = invoke(
        runner, "run", history, "--args", args, "--tools", "skillbank.examples.shop:tools",
        "--root", str(learned_root), "--json",
    )  # fmt: skip
    assert code == 0, out
    result = json.loads(out)
    assert result["ok"] and [c["tool"] for c in result["tool_calls"]] == [
        "find_customer",
        "list_orders",
    ]
    assert result["value"]["customer_id"] == result["tool_calls"][0]["result"]["customer_id"]
    # A tool failure is exit 1 with the error in the output.
    bad = json.dumps({"email": "nobody@example.com"})
    code, out = invoke(
        runner, "run", history, "--args", bad, "--tools", "skillbank.examples.shop:tools",
        "--root", str(learned_root),
    )  # fmt: skip
    assert code == 1 and "ToolError" in out
    # A module alone names its `tools`, as for `do` and `serve`.
    code, out = invoke(
        runner, "run", history, "--args", args, "--tools", "skillbank.examples.shop",
        "--root", str(learned_root), "--json",
    )  # fmt: skip
    assert code == 0 and json.loads(out)["ok"], out


_THREAD_BOUND_TOOLS = """\
import threading

from skillbank.examples.shop import tools as shop_tools


def tools():
    home = threading.get_ident()  # `--tools` loads them on the command's thread

    def bound(function):
        def tool(**kwargs):
            if threading.get_ident() != home:
                raise RuntimeError("called off the thread these tools belong to")
            return function(**kwargs)

        return tool

    return {name: bound(function) for name, function in shop_tools().items()}
"""


def test_run_inline_tools_calls_tools_on_the_commands_thread(
    runner: CliRunner, learned_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SKILLBANK_SHOP_DB", str(tmp_path / "shop.sqlite"))
    (tmp_path / "thread_bound_tools.py").write_text(_THREAD_BOUND_TOOLS, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    skills = json.loads(invoke(runner, "list", "--root", str(learned_root), "--json")[1])
    history = next(s["id"] for s in skills if s["tools"] == ["find_customer", "list_orders"])
    command = [
        "run", history, "--args", json.dumps({"email": "alice@example.com"}),
        "--tools", "thread_bound_tools", "--root", str(learned_root), "--json",
    ]  # fmt: skip
    code, out = invoke(runner, *command)
    assert code == 1 and "called off the thread" in out  # helper threads by default
    code, out = invoke(runner, *command, "--inline-tools")
    assert code == 0, out
    assert [c["tool"] for c in json.loads(out)["tool_calls"]] == ["find_customer", "list_orders"]


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["run", "nope", "--args", "{}"], 1, "no skill 'nope'"),
        (["run", "X", "--args", "{oops"], 2, "not valid JSON"),
        (["run", "X", "--args", "[1]"], 2, "JSON object"),
        (["learn", "missing.jsonl"], 1, "no such file"),
        (["frobnicate"], 2, "No such command"),
    ],
)
def test_errors_are_one_actionable_line_with_the_right_exit_code(
    runner: CliRunner, learned_root: Path, args: list[str], code: int, words: str
) -> None:
    result = runner.invoke(
        cli, [*args, *(["--root", str(learned_root)] if args[0] in ("run", "learn") else [])]
    )
    assert result.exit_code == code, result.output
    assert words in result.output
    assert "Traceback" not in result.output


def test_run_without_tools_says_how_to_pass_them(runner: CliRunner, learned_root: Path) -> None:
    skills = json.loads(invoke(runner, "list", "--root", str(learned_root), "--json")[1])
    result = runner.invoke(cli, ["run", skills[0]["id"], "--root", str(learned_root)])
    assert result.exit_code == 2 and "--tools MODULE:ATTR" in result.output


def test_learn_skip_invalid(runner: CliRunner, tmp_path: Path) -> None:
    root = tmp_path / "bank"
    invoke(runner, "init", str(root))
    mixed = tmp_path / "mixed.jsonl"
    lines = EXAMPLE_TRAJECTORIES.read_text().splitlines()[:2]
    mixed.write_text(lines[0] + "\n{broken\n" + lines[1] + "\n")
    result = runner.invoke(cli, ["learn", str(mixed), "--root", str(root)])
    assert (
        result.exit_code == 1
        and f"{mixed}:2" in result.output
        and "--skip-invalid" in result.output
    )
    result = runner.invoke(
        cli, ["learn", str(mixed), "--root", str(root), "--skip-invalid", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data["invalid_records"]) == 1 and len(data["entries"]) == 2


def test_a_broken_skill_folder_is_exit_1_naming_it(runner: CliRunner, tmp_path: Path) -> None:
    root = tmp_path / "bank"
    invoke(runner, "init", str(root))
    (root / "skills" / "x").mkdir()
    (root / "skills" / "x" / "SKILL.md").write_text("---\nname: x\n---\n")
    result = runner.invoke(cli, ["list", "--root", str(root)])
    assert result.exit_code == 1 and "skills/x" in result.output


def test_unexpected_errors_exit_3_without_a_traceback(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "bank"
    invoke(runner, "init", str(root))

    def explode(self: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("skillbank.SkillBank.skills", explode)
    result = runner.invoke(cli, ["list", "--root", str(root)])
    assert result.exit_code == 3
    assert "internal error: RuntimeError: disk on fire" in result.output
    assert "Traceback" not in result.output


def test_demo_learns_commits_and_runs_on_new_arguments(runner: CliRunner, tmp_path: Path) -> None:
    target = tmp_path / "demo"
    code, out = invoke(runner, "demo", str(target))
    assert code == 0, out
    assert "7 skill(s) added" in out and "hiro@example.com" in out
    assert "live shop changed: stock of SKU-CLOCK-WALL" in out
    log = subprocess.run(
        ["git", "log", "--oneline"], cwd=target, capture_output=True, text=True, check=True
    ).stdout
    assert "skillbank learn: add 7 skill(s)" in log
    # Running it again is safe: nothing new to learn, no new commit, the skill runs again.
    code, out = invoke(runner, "demo", str(target))
    assert code == 0 and "nothing to commit" in out


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "skillbank"
    proc = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and "skillbank" in proc.stdout


def test_readme_documents_every_command() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for name in cli.commands:
        assert f"skillbank {name}" in readme, name


def test_readme_python_example_runs(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parent.parent
    readme = (repo / "README.md").read_text()
    section = readme.split("## Using skillbank from Python", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    code = code.replace("/tmp/py-bank", str(tmp_path / "py-bank"))
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "list_orders_by_email(email: str) -> dict" in proc.stdout
    assert "True {'customer_id': 'C-1008', 'orders': []}" in proc.stdout


# --- the JSON error envelope ----------------------------------------------------------------


def _envelope(result: Result) -> dict[str, str]:
    data = json.loads(result.stdout)
    assert data["ok"] is False and set(data) == {"ok", "error"}, data
    assert set(data["error"]) == {"type", "message", "hint"}, data
    assert all(data["error"][key] for key in ("type", "message", "hint")), data
    return data["error"]


def test_a_skillbank_error_under_json_is_the_envelope_on_stdout(
    runner: CliRunner, learned_root: Path
) -> None:
    result = runner.invoke(
        cli, prog_name="skillbank", args=["show", "nope", "--json", "--root", str(learned_root)]
    )
    assert result.exit_code == 1
    error = _envelope(result)
    assert error["type"] == "SkillNotFound" and "no skill 'nope'" in error["message"]
    assert error["hint"] == SkillNotFound.hint
    assert result.stderr == ""
    # The same error without --json: one line on stderr, nothing on stdout.
    result = runner.invoke(
        cli, prog_name="skillbank", args=["show", "nope", "--root", str(learned_root)]
    )
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith("Error: no skill 'nope' in the library.")
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["run", "X", "--args", "{oops", "--json"], "not valid JSON"),  # raised by the command
        (["show", "--json"], "Missing argument 'SKILL_ID'"),  # raised by click, --json read
        (["list", "--json", "--bogus"], "No such option '--bogus'"),  # before --json is read
        (["export", "agent-skills", "out", "--bogus", "--json"], "No such option"),  # nested
    ],
)
def test_a_usage_error_under_json_is_the_envelope_with_exit_2(
    runner: CliRunner, learned_root: Path, args: list[str], words: str
) -> None:
    result = runner.invoke(cli, prog_name="skillbank", args=[*args, "--root", str(learned_root)])
    assert result.exit_code == 2, result.output
    error = _envelope(result)
    assert error["type"] == "UsageError" and words in error["message"]
    assert error["hint"].startswith(f"run `skillbank {args[0]}")
    assert result.stderr == ""


def test_gate_usage_errors_keep_their_type_and_exit_2(
    runner: CliRunner, learned_root: Path
) -> None:
    args = ["gate", "--base", "no-such-ref", "--root", str(learned_root)]
    result = runner.invoke(cli, prog_name="skillbank", args=[*args, "--json"])
    assert result.exit_code == 2
    error = _envelope(result)
    assert error["type"] == "GateUsageError" and "no-such-ref" in error["message"]
    result = runner.invoke(cli, prog_name="skillbank", args=args)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith("Usage: skillbank gate [OPTIONS] [PATHS]...")
    assert "Error: --base 'no-such-ref' is not a commit" in result.stderr


def test_an_internal_error_under_json_is_the_envelope_with_exit_3(
    runner: CliRunner, learned_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(self: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("skillbank.SkillBank.skills", explode)
    result = runner.invoke(
        cli, prog_name="skillbank", args=["list", "--json", "--root", str(learned_root)]
    )
    assert result.exit_code == 3
    error = _envelope(result)
    assert error == {
        "type": "InternalError",
        "message": "RuntimeError: disk on fire",
        "hint": "set SKILLBANK_DEBUG=1 for the traceback, and please report it",
    }


def test_a_command_without_json_never_prints_the_envelope(
    runner: CliRunner, learned_root: Path
) -> None:
    result = runner.invoke(cli, prog_name="skillbank", args=["demo", "--json"])
    assert result.exit_code == 2 and result.stdout == ""
    assert "No such option '--json'" in result.stderr


def test_diff_json_gives_the_same_facts_as_its_text(runner: CliRunner, learned_root: Path) -> None:
    from skillbank import SkillBank

    sid = SkillBank(learned_root).skills()[0].id
    args = ["diff", sid, "--root", str(learned_root)]
    text = runner.invoke(cli, prog_name="skillbank", args=args)
    result = runner.invoke(cli, prog_name="skillbank", args=[*args, "--json"])
    assert text.exit_code == 0 and result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["skill_id"] == sid and data["old"]["version"] is None
    assert data["new"]["version"] in text.stdout and data["signature"] in text.stdout
    assert data["files"][0]["name"] == "skill.py"
    for file in data["files"]:
        assert file["diff"] in text.stdout
    # Its errors are the envelope too.
    missing = runner.invoke(
        cli, prog_name="skillbank", args=["diff", "no_such_skill", "--json", "--root",
                                          str(learned_root)],
    )  # fmt: skip
    assert missing.exit_code == 1 and _envelope(missing)["type"] == "SkillNotFound"


def test_an_invalid_record_under_json_is_a_trajectory_error(
    runner: CliRunner, learned_root: Path
) -> None:
    bad = learned_root / "bad.jsonl"
    bad.write_text("{broken\n")
    args = ["learn", str(bad), "--json", "--root", str(learned_root)]
    result = runner.invoke(cli, prog_name="skillbank", args=args)
    assert result.exit_code == 1
    error = _envelope(result)
    assert error["type"] == "TrajectoryError" and f"{bad}:1" in error["message"]
    assert "--skip-invalid" in error["hint"]


@pytest.mark.parametrize(
    "args",
    [
        ["list"],
        ["stats"],
        ["search", "cancel the pending order of bob@example.com"],
        ["history", "list_orders_by_email"],
        ["gate", "--examples", "2"],
        ["match", str(EXAMPLE_TRAJECTORIES)],
        ["learn", str(EXAMPLE_TRAJECTORIES)],
    ],
    ids=lambda a: a[0],
)
def test_every_listing_reads_at_80_columns(
    args: list[str], learned_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    result = CliRunner().invoke(cli, [*args, "--root", str(learned_root)])
    assert result.exit_code == 0, result.output
    for line in result.output.splitlines():
        # Only a single word longer than the line (an id, a path) may pass the edge.
        assert len(line) <= 80 or " " not in line.strip(), line


def test_a_mistyped_skill_id_gets_a_did_you_mean(runner: CliRunner, learned_root: Path) -> None:
    code, out = invoke(runner, "show", "list_orders_by_emai", "--root", str(learned_root))
    assert code == 1 and "Did you mean 'list_orders_by_email'" in out
    result = runner.invoke(
        cli, ["show", "list_orders_by_emai", "--json", "--root", str(learned_root)]
    )
    assert "did you mean list_orders_by_email" in _envelope(result)["hint"]


def _refused_folder() -> Path:
    """A folder the OS refuses to create even for root (sysfs), or skip."""
    path = Path("/sys/skillbank-test-refused")
    try:
        path.mkdir()
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return path
        pytest.skip(f"/sys refuses differently here: {exc}")
    path.rmdir()
    pytest.skip("/sys accepts new folders here")


def test_a_bank_the_os_refuses_to_write_is_permission_denied_not_a_bug(
    runner: CliRunner,
) -> None:
    where = _refused_folder()
    result = runner.invoke(cli, prog_name="skillbank", args=["init", str(where), "--json"])
    assert result.exit_code == 1
    error = _envelope(result)
    assert error["type"] == "PermissionDenied"
    assert str(where) in error["message"] and "writable" in error["hint"]


def test_a_read_only_database_met_anywhere_is_permission_denied_with_exit_1(
    runner: CliRunner, learned_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real SQLite refusal (a read-only connection asked to write) that no layer named.
    database = tmp_path / "state.sqlite"
    sqlite3.connect(database).execute("CREATE TABLE t (x)").connection.commit()

    def write_read_only(self: object) -> None:
        sqlite3.connect(f"file:{database}?mode=ro", uri=True).execute("INSERT INTO t VALUES (1)")

    monkeypatch.setattr("skillbank.SkillBank.skills", write_read_only)
    args = ["list", "--root", str(learned_root)]
    result = runner.invoke(cli, prog_name="skillbank", args=[*args, "--json"])
    assert result.exit_code == 1
    error = _envelope(result)
    assert error["type"] == "PermissionDenied" and "readonly database" in error["message"]
    text = runner.invoke(cli, prog_name="skillbank", args=args)
    assert text.exit_code == 1 and "internal error" not in text.stderr
    assert "writable" in text.stderr


def test_the_ledger_says_permission_denied_not_remove_the_file() -> None:
    from skillbank import Ledger, PermissionDenied

    ledger = Ledger(_refused_folder() / "ledger.sqlite")
    with pytest.raises(PermissionDenied) as caught:
        ledger.record("some_skill", ok=True)
    assert "remove the file" not in str(caught.value)


def test_the_lazy_command_table_matches_the_commands() -> None:
    # `skillbank --help` lists the commands from a table, without importing them; the table
    # must say what each command's own help says, or the listing drifts from the truth.
    import importlib
    import inspect

    import click

    from skillbank.cli import COMMANDS as table

    for name, (module, attr, summary) in table.items():
        command = getattr(importlib.import_module(module), attr)
        assert command.name == name
        first = inspect.cleandoc(command.help or "").split("\n\n")[0]
        assert " ".join(first.split()) == summary, name
    lazy = CliRunner().invoke(cli, ["--help"], prog_name="skillbank", terminal_width=80)
    loaded = click.Group(
        name="skillbank", help=cli.help, params=cli.params, context_settings=cli.context_settings
    )
    for name in table:
        loaded.add_command(cli.commands[name])
    eager = CliRunner().invoke(loaded, ["--help"], prog_name="skillbank", terminal_width=80)
    assert lazy.output == eager.output and lazy.exit_code == eager.exit_code == 0


def test_run_on_an_unreachable_ray_cluster_names_the_address(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # --executor ray with ray_address from the environment: no cluster listens there, and
    # the error says which address and what to check (before Ray is even asked).
    import shutil

    from tests.servers import free_port

    root = tmp_path / "bank"
    assert invoke(runner, "init", str(root))[0] == 0
    shutil.copytree(
        REPO / "skills" / "list_orders_by_email", root / "skills" / "list_orders_by_email"
    )
    address = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("SKILLBANK_RAY_ADDRESS", address)
    code, out = invoke(
        runner, "run", "list_orders_by_email", "--args", '{"email": "a@b.c"}',
        "--tools", "skillbank.examples.shop:tools", "--executor", "ray",
        "--root", str(root), "--json",
    )  # fmt: skip
    error = json.loads(out)["error"]
    assert code == 1 and error["type"] == "ConfigError", out
    assert address in error["message"] and "ray start --head" in error["message"]
    assert "--executor local" in error["hint"]
