"""Configuration: layers and their precedence, lists, deprecated keys, secrets."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from skillbank import config as config_module
from skillbank.config import Config, load_config
from skillbank.errors import ConfigError
from tests.conftest import REPO


def _pyproject(root: Path, body: str) -> Path:
    (root / "pyproject.toml").write_text(f"[tool.skillbank]\n{body}\n", encoding="utf-8")
    return root


def test_config_rejects_non_finite_and_unknown_values(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SKILLBANK_TIMEOUT_S", "nan")
    with pytest.raises(ConfigError, match="timeout_s"):
        load_config(tmp_path)
    monkeypatch.delenv("SKILLBANK_TIMEOUT_S")
    _pyproject(tmp_path, "timeout = 3")
    with pytest.raises(ConfigError, match="unknown key 'timeout'"):
        load_config(tmp_path)


def test_sandbox_isolation_is_checked_and_reaches_the_banks_sandbox(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from skillbank import SkillBank

    monkeypatch.setenv("SKILLBANK_SANDBOX_ISOLATION", "shared")
    with pytest.raises(ConfigError, match="sandbox_isolation='shared' must be 'fresh'"):
        load_config(tmp_path)
    assert Config().sandbox_isolation == "fresh"
    monkeypatch.setenv("SKILLBANK_SANDBOX_ISOLATION", "reuse")
    with SkillBank.init(tmp_path / "bank") as bank:
        assert bank.config.sandbox_isolation == "reuse"
        assert bank.sandbox.executor.pool.isolation == "reuse"  # type: ignore[attr-defined]


def test_every_key_is_in_the_readme_table() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("## Configuration") :].split("\n## ", 1)[0]
    missing = [f.name for f in dataclasses.fields(Config) if f"`{f.name}`" not in table]
    assert missing == []


# --- lists ------------------------------------------------------------------------------


def test_lists_are_toml_arrays(tmp_path: Path) -> None:
    _pyproject(tmp_path, 'query_tools = ["find_customer", " list_orders ", ""]')
    config = load_config(tmp_path)
    assert config.query_tools == ("find_customer", "list_orders")  # stripped, empty dropped
    assert config.command_tools == ()


def test_lists_are_comma_separated_in_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SKILLBANK_COMMAND_TOOLS", " place_order,, cancel_order , ")
    assert load_config(tmp_path).command_tools == ("place_order", "cancel_order")
    monkeypatch.setenv("SKILLBANK_COMMAND_TOOLS", "")
    assert load_config(tmp_path).command_tools == ()


@pytest.mark.parametrize(
    "body", ["query_tools = [1, 2]", "query_tools = 3", 'query_tools = [["a"]]'], ids=str
)
def test_a_list_of_something_else_is_refused(tmp_path: Path, body: str) -> None:
    _pyproject(tmp_path, body)
    with pytest.raises(ConfigError, match=r"\[tool\.skillbank\]: query_tools=.* TOML array"):
        load_config(tmp_path)


def test_a_tool_in_both_lists_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _pyproject(tmp_path, 'query_tools = ["find_customer", "place_order"]')
    monkeypatch.setenv("SKILLBANK_COMMAND_TOOLS", "place_order,send_mail")
    with pytest.raises(ConfigError, match="'place_order' is in both query_tools and command_tools"):
        load_config(tmp_path)
    with pytest.raises(ConfigError, match="'a', 'b' are in both"):
        Config(query_tools=("b", "a"), command_tools=("a", "b"))
    with pytest.raises(ConfigError, match="tuple of tool names"):
        Config(query_tools=["a"])  # type: ignore[arg-type]


# --- precedence -------------------------------------------------------------------------


def test_flags_beat_the_environment_which_beats_pyproject(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _pyproject(tmp_path, 'query_tools = ["from_file"]\ntimeout_s = 1.0\nmemory_mb = 100')
    assert load_config(tmp_path).query_tools == ("from_file",)

    monkeypatch.setenv("SKILLBANK_QUERY_TOOLS", "from_env")
    monkeypatch.setenv("SKILLBANK_TIMEOUT_S", "2")
    config = load_config(tmp_path)
    assert (config.query_tools, config.timeout_s, config.memory_mb) == (("from_env",), 2.0, 100)

    config = load_config(tmp_path, {"query_tools": ["from_flag"], "timeout_s": None})
    assert (config.query_tools, config.timeout_s) == (("from_flag",), 2.0)  # None: flag not given
    assert load_config(tmp_path, {"query_tools": "a, b"}).query_tools == ("a", "b")


# --- deprecated keys --------------------------------------------------------------------


@pytest.fixture
def renamed(monkeypatch: pytest.MonkeyPatch) -> None:
    """No key has been renamed yet, so the tests rename two of their own."""
    monkeypatch.setattr(
        config_module,
        "_DEPRECATED_KEYS",
        {
            "timeout": config_module._Deprecated("timeout_s", "units are in the name now"),
            "use_colour": config_module._Deprecated(None, "output follows NO_COLOR"),
        },
    )


@pytest.mark.usefixtures("renamed")
def test_a_renamed_key_still_works_with_a_warning(tmp_path: Path) -> None:
    _pyproject(tmp_path, "timeout = 3")
    with pytest.warns(
        DeprecationWarning, match=r"'timeout' is deprecated.*rename it to 'timeout_s'"
    ):
        config = load_config(tmp_path)
    assert config.timeout_s == 3.0


@pytest.mark.usefixtures("renamed")
def test_the_warning_points_at_the_caller(tmp_path: Path) -> None:
    _pyproject(tmp_path, "timeout = 3")
    with pytest.warns(DeprecationWarning) as caught:
        load_config(tmp_path)
    assert [w.filename for w in caught] == [__file__]


@pytest.mark.usefixtures("renamed")
def test_when_both_names_are_set_the_new_one_wins(tmp_path: Path) -> None:
    _pyproject(tmp_path, "timeout = 3\ntimeout_s = 4")
    with pytest.warns(
        DeprecationWarning, match=r"also sets its replacement 'timeout_s', which wins"
    ):
        config = load_config(tmp_path)
    assert config.timeout_s == 4.0


@pytest.mark.usefixtures("renamed")
def test_a_renamed_key_in_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _pyproject(tmp_path, "timeout_s = 4")
    monkeypatch.setenv("SKILLBANK_TIMEOUT", "5")
    # A later layer still wins, whatever name it uses.
    with pytest.warns(DeprecationWarning, match="environment SKILLBANK_TIMEOUT: 'timeout'"):
        assert load_config(tmp_path).timeout_s == 5.0
    monkeypatch.setenv("SKILLBANK_TIMEOUT_S", "6")
    with pytest.warns(DeprecationWarning, match="SKILLBANK_TIMEOUT_S also sets"):
        assert load_config(tmp_path).timeout_s == 6.0


@pytest.mark.usefixtures("renamed")
def test_a_retired_key_is_accepted_and_ignored(tmp_path: Path) -> None:
    _pyproject(tmp_path, "use_colour = true")
    with pytest.warns(DeprecationWarning, match="'use_colour' is retired and has no effect"):
        assert load_config(tmp_path) == Config()


@pytest.mark.usefixtures("renamed")
def test_a_renamed_keys_bad_value_names_both_keys(tmp_path: Path) -> None:
    _pyproject(tmp_path, 'timeout = "soon"')
    with (
        pytest.warns(DeprecationWarning),
        pytest.raises(ConfigError, match=r"\('timeout', now 'timeout_s'\): timeout_s='soon'"),
    ):
        load_config(tmp_path)


# --- secrets ----------------------------------------------------------------------------


def test_a_password_in_pyproject_is_refused_without_repeating_it(tmp_path: Path) -> None:
    for url in ("postgresql://me:hunter2@db/skills", "postgresql://db/skills?password=hunter2"):
        _pyproject(tmp_path, f'ledger_url = "{url}"')
        with pytest.raises(ConfigError) as caught:
            load_config(tmp_path)
        message = str(caught.value)
        assert "ledger_url holds a password" in message
        assert "set the environment variable SKILLBANK_LEDGER_URL" in message
        assert "hunter2" not in message


def test_a_postgresql_ledger_url_from_pyproject_or_with_its_password_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert load_config(tmp_path).ledger_url == ""
    _pyproject(tmp_path, 'ledger_url = "postgresql://db/skills"')  # no password: may be here
    assert load_config(tmp_path).ledger_url == "postgresql://db/skills"
    monkeypatch.setenv("SKILLBANK_LEDGER_URL", "postgresql://me:hunter2@db/skills")
    assert load_config(tmp_path).ledger_url == "postgresql://me:hunter2@db/skills"
    monkeypatch.setenv("SKILLBANK_LEDGER_URL", "mysql://me:hunter2@db/skills")
    with pytest.raises(ConfigError, match="must be a PostgreSQL URL") as caught:
        load_config(tmp_path)
    assert "hunter2" not in str(caught.value) and "me:***@db" in str(caught.value)


def test_scale_settings_are_checked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert load_config(tmp_path).executor == "local"
    monkeypatch.setenv("SKILLBANK_EXECUTOR", "ray")
    monkeypatch.setenv("SKILLBANK_RAY_ADDRESS", "127.0.0.1:6379")
    config = load_config(tmp_path)
    assert (config.executor, config.ray_address) == ("ray", "127.0.0.1:6379")
    for key, value, said in (
        ("executor", "dask", "must be 'local'"),
        ("replica", "a b", "letters, digits"),
        ("sync_from", "main", "REMOTE/BRANCH"),
        ("sync_interval_s", "-1", "0 (no periodic fetch)"),
        ("ray_actors", "-2", "one per CPU"),
        ("ray_calls_per_actor", "0", "at least 1"),
    ):
        with pytest.raises(ConfigError, match=re.escape(said)):
            load_config(tmp_path, {key: value})
