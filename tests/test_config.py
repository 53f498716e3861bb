"""Configuration: layers and their precedence, lists."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

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
