"""How tool names become the identifiers skills call them by (`sandbox.names`)."""

from __future__ import annotations

import ast
import keyword
import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from sandbox.names import attribute_clashes, attribute_map, attribute_name


def _usable(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name) and not name.startswith("_")


@given(st.text(min_size=1, max_size=40))
def test_every_name_becomes_an_attribute_skill_code_can_write(tool: str) -> None:
    attribute = attribute_name(tool)
    assert _usable(attribute)
    # Python NFKC-normalises identifiers when it parses them: the attribute must survive that.
    assert unicodedata.normalize("NFKC", attribute) == attribute
    tree = ast.parse(f"tools.{attribute}()")
    assert tree.body[0].value.func.attr == attribute  # type: ignore[attr-defined]


@given(st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True).filter(_usable))
def test_a_usable_name_is_its_own_attribute(tool: str) -> None:
    assert attribute_name(tool) == tool
    assert attribute_map([tool]) == {tool: tool}


def test_names_mcp_servers_use() -> None:
    assert attribute_name("get-weather") == "get_weather"
    assert attribute_name("files.read") == "files_read"
    assert attribute_name("class") == "class_"
    assert attribute_name("2fa") == "tool_2fa"
    assert attribute_name("_private") == "private"
    assert attribute_name("天気-取得") == "天気_取得"


@given(st.lists(st.text(min_size=1, max_size=12), max_size=8))
def test_the_map_leads_back_to_each_tool_unless_two_share_an_attribute(tools: list[str]) -> None:
    mapping = attribute_map(tools)
    clashing = {name for _, names in attribute_clashes(tools) for name in names}
    for name in tools:
        attribute = attribute_name(name)
        if name not in clashing or attribute == name:
            assert mapping[attribute] == name
        elif attribute in mapping:
            # Only a tool whose real name is the attribute itself may keep a shared one.
            assert mapping[attribute] == attribute
    assert set(mapping.values()) <= set(tools)


def test_an_exact_name_wins_a_shared_attribute() -> None:
    assert attribute_map(["get_weather", "get-weather"]) == {"get_weather": "get_weather"}
    assert attribute_clashes(["get_weather", "get-weather", "ping"]) == [
        ("get_weather", ["get_weather", "get-weather"])
    ]
