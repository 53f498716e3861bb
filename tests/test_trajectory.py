from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox import ToolCall
from skillbank import Step, TrajectoryError, load_trajectories, parse_record, scan_trajectories
from skillbank.skill import Case
from skillbank.trajectory import ToolSpec, canonical_json

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "find_customer",
            "description": "Find a customer by email.",
            "parameters": {
                "type": "object",
                "properties": {"email": {"type": "string"}},
                "required": ["email"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "list_orders",
            "parameters": {
                "type": "object",
                "properties": {"customer_id": {"type": "string"}},
            },
        },
    },
]


def record(**extra: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "messages": [
            {"role": "system", "content": "You help."},
            {"role": "user", "content": "Show orders of ann@example.com"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {
                            "name": "find_customer",
                            "arguments": '{"email": "ann@example.com"}',
                        },
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": '{"customer_id": "C-7"}'},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c2",
                        "type": "function",
                        "function": {"name": "list_orders", "arguments": '{"customer_id": "C-7"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c2", "content": '{"orders": [{"id": "O-1"}]}'},
            {"role": "assistant", "content": "Ann has one order."},
        ],
        "tools": copy.deepcopy(TOOLS),
    }
    rec.update(extra)
    return rec


def test_parses_messages_tool_calls_and_json_results() -> None:
    t = parse_record(record(id="r1"), "x.jsonl:1")
    assert t.id == "r1"
    assert t.task == "Show orders of ann@example.com"
    assert [s.tool for s in t.steps] == ["find_customer", "list_orders"]
    assert t.steps[0].arguments == {"email": "ann@example.com"}
    assert t.steps[1].result == {"orders": [{"id": "O-1"}]}  # JSON text was parsed
    assert t.outcome.success and t.outcome.inferred
    assert t.outcome.detail == "Ann has one order."
    assert t.tool("find_customer") is not None
    assert t.tool("find_customer").description == "Find a customer by email."


def test_explicit_task_and_outcome_win() -> None:
    t = parse_record(record(task="list orders", outcome={"success": False, "detail": "wrong"}))
    assert t.task == "list orders"
    assert not t.outcome.success and not t.outcome.inferred and t.outcome.detail == "wrong"


def test_id_defaults_to_content_hash_and_hash_is_stable() -> None:
    a, b = parse_record(record(), "a"), parse_record(record(), "b")
    assert a.id == b.id == f"t-{a.sha256[:12]}"
    changed = record()
    changed["messages"][1]["content"] = "Show orders of bob@example.com"
    assert parse_record(changed).sha256 != a.sha256


def test_non_json_result_kept_as_text_and_error_marked() -> None:
    rec = record()
    rec["messages"][3]["content"] = "customer C-7"
    rec["messages"][5].update(content="boom", is_error=True)
    t = parse_record(rec)
    assert t.steps[0].result == "customer C-7"
    assert t.steps[1].error == "boom" and t.steps[1].result is None
    assert not t.outcome.success  # inferred: a call failed


def test_parallel_calls_keep_issue_order_even_if_answered_out_of_order() -> None:
    rec = record()
    msgs = rec["messages"]
    both = msgs[2]["tool_calls"] + msgs[4]["tool_calls"]
    rec["messages"] = [
        msgs[0],
        msgs[1],
        {"role": "assistant", "content": None, "tool_calls": both},
        msgs[5],
        msgs[3],
    ]
    t = parse_record(rec)
    assert [s.call_id for s in t.steps] == ["c1", "c2"]


def test_bare_message_list_and_content_parts() -> None:
    msgs = record()["messages"]
    msgs[1]["content"] = [{"type": "text", "text": "Show orders"}]
    t = parse_record(msgs)
    assert t.task == "Show orders" and t.tools == ()


def _mutate(path: str, value: Any) -> dict[str, Any]:
    rec = record(id="bad-one")
    target: Any = rec
    keys = [int(k) if k.isdigit() else k for k in path.split("/")]
    for key in keys[:-1]:
        target = target[key]
    if value is KeyError:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return rec


BAD = [
    ("no-messages", _mutate("messages", KeyError), "messages", "Field required"),
    ("empty-messages", _mutate("messages", []), "messages", "at least 1"),
    (
        "arguments-not-json",
        _mutate("messages/2/tool_calls/0/function/arguments", "{email:"),
        "messages[2].tool_calls[0].function.arguments",
        "not valid JSON",
    ),
    (
        "arguments-not-object",
        _mutate("messages/2/tool_calls/0/function/arguments", "[1, 2]"),
        "messages[2].tool_calls[0].function.arguments",
        "JSON object",
    ),
    (
        "unknown-tool",
        _mutate("messages/2/tool_calls/0/function/name", "drop_table"),
        "messages[2].tool_calls[0].function.name",
        "'drop_table'",
    ),
    (
        "unpaired-result",
        _mutate("messages/3/tool_call_id", "nope"),
        "messages[3].tool_call_id",
        "'nope'",
    ),
    (
        "unanswered-call",
        _mutate("messages/5", {"role": "assistant", "content": "done"}),
        "messages[4].tool_calls[0].id",
        "no tool message",
    ),
    ("bad-role", _mutate("messages/0/role", "robot"), "messages[0].role", "robot"),
    ("no-task", _mutate("messages/1", {"role": "system", "content": "x"}), "task", "no task"),
    ("bad-tool-def", _mutate("tools/0/function", {"name": "a b"}), "tools[0].function.name", ""),
    ("bad-outcome", _mutate("outcome", {"success": "maybe"}), "outcome.success", ""),
]


@pytest.mark.parametrize(("rec", "field", "words"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_malformed_records_name_file_record_and_field(
    tmp_path: Path, rec: dict[str, Any], field: str, words: str
) -> None:
    path = tmp_path / "runs.jsonl"
    path.write_text(json.dumps(record(id="good")) + "\n" + json.dumps(rec) + "\n")
    with pytest.raises(TrajectoryError) as info:
        load_trajectories(path)
    message = str(info.value)
    assert f"{path}:2" in message
    assert "'bad-one'" in message
    assert field in message and words in message
    assert info.value.field == field


def test_skip_invalid_loads_good_records_and_reports_bad(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    lines = [
        json.dumps(record(id="a")),
        "{not json",
        json.dumps(BAD[2][1]),
        json.dumps(record(id="b")),
    ]
    path.write_text("\n".join(lines) + "\n\n")
    with pytest.raises(TrajectoryError, match="2 more bad record|1 more bad record"):
        load_trajectories(path)
    assert [t.id for t in load_trajectories(path, skip_invalid=True)] == ["a", "b"]
    scan = scan_trajectories(path)
    assert [e.source.rsplit(":", 1)[-1].split(" ")[0] for e in scan.errors] == ["2", "3"]


def test_json_files_and_folders(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "one.json").write_text(json.dumps(record(id="one")))
    (tmp_path / "d" / "many.json").write_text(json.dumps([record(id="m1"), record(id="m2")]))
    (tmp_path / "d" / "notes.txt").write_text("ignored")
    assert sorted(t.id for t in load_trajectories(tmp_path / "d")) == ["m1", "m2", "one"]


def test_missing_path_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(TrajectoryError, match="no such file"):
        load_trajectories(tmp_path / "nope.jsonl")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrajectoryError, match="no .json or .jsonl"):
        load_trajectories(tmp_path / "empty")


def test_bundled_examples_load(example_trajectories: list[Any]) -> None:
    assert len(example_trajectories) >= 30
    assert all(t.outcome.success for t in example_trajectories)
    assert len({t.id for t in example_trajectories}) == len(example_trajectories)


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ('{"messages": [{"role": "user", "content": "\\ud800abc"}]}', "lone surrogate"),
        (
            '{"messages": [{"role": "user", "content": "x", "extra": '
            + "[" * 80
            + "]" * 80
            + "}]}",
            "deeper than",
        ),
        ("[" * 100_000 + "]" * 100_000, "nests too deeply"),
        ('{"messages": [{"role": "user", "content": NaN}]}', "not a JSON number"),
    ],
    ids=["surrogate", "deep", "very-deep", "nan"],
)
def test_unusable_values_are_trajectory_errors(tmp_path: Path, line: str, words: str) -> None:
    path = tmp_path / "odd.jsonl"
    path.write_text(line + "\n" + json.dumps(record(id="fine")) + "\n")
    scan = scan_trajectories(path)
    assert [t.id for t in scan.trajectories] == ["fine"]
    (error,) = scan.errors
    assert words in str(error) and f"{path}:1" in str(error)


def test_jsonl_lines_split_on_newline_only(tmp_path: Path) -> None:
    rec = record(id="sep")
    rec["messages"][1]["content"] = "Show orders\u2028of ann@example.com\u0085"
    path = tmp_path / "sep.jsonl"
    path.write_text(json.dumps(rec, ensure_ascii=False) + "\n", encoding="utf-8")
    (t,) = load_trajectories(path)
    assert "\u2028" in t.task


# --- OpenAI Responses items -----------------------------------------------------------------


def responses_record(**extra: Any) -> dict[str, Any]:
    """`record()`'s run, as Responses items (flat tools, content parts, a reasoning item)."""
    rec: dict[str, Any] = {
        "input": [
            {"type": "message", "role": "developer", "content": "You help."},
            {"role": "user", "content": [{"type": "input_text", "text": "Show orders of "}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {
                "type": "function_call",
                "id": "fc_1",
                "call_id": "c1",
                "name": "find_customer",
                "arguments": '{"email": "ann@example.com"}',
            },
            {"type": "function_call_output", "call_id": "c1", "output": '{"customer_id": "C-7"}'},
        ],
        "output": [
            {
                "type": "function_call",
                "call_id": "c2",
                "name": "list_orders",
                "arguments": '{"customer_id": "C-7"}',
                "status": "completed",
            },
            {
                "type": "function_call_output",
                "call_id": "c2",
                "output": '{"orders": [{"id": "O-1"}]}',
            },
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Ann has one order."}],
            },
        ],
        "tools": [{"type": "function", **t["function"]} for t in TOOLS]
        + [{"type": "web_search_preview"}],
    }
    rec["input"][1]["content"][0]["text"] = "Show orders of ann@example.com"
    rec.update(extra)
    return rec


def test_responses_items_read_like_chat_messages() -> None:
    chat = parse_record(record())
    resp = parse_record(responses_record())
    assert (resp.task, resp.tools, resp.steps, resp.outcome) == (
        chat.task,
        chat.tools,
        chat.steps,
        chat.outcome,
    )
    assert resp.sha256 == chat.sha256 and resp.id == chat.id
    assert resp.outcome.detail == "Ann has one order."


def test_responses_input_string_output_only_and_chat_shaped_tools() -> None:
    rec = responses_record(tools=copy.deepcopy(TOOLS))
    calls = rec["input"][3:] + rec["output"]
    t = parse_record({"input": "Show orders of ann@example.com", "output": calls, "tools": TOOLS})
    assert t.task == "Show orders of ann@example.com"
    assert [s.tool for s in t.steps] == ["find_customer", "list_orders"]
    # A Responses ``response`` object alone: output items and a task field.
    only = parse_record({"object": "response", "task": "Show orders", "output": calls})
    assert only.task == "Show orders" and len(only.steps) == 2


def test_responses_is_error_and_list_output() -> None:
    rec = responses_record()
    rec["output"][1] = {
        "type": "function_call_output",
        "call_id": "c2",
        "output": [{"type": "input_text", "text": "no such customer"}],
        "is_error": True,
    }
    t = parse_record(rec)
    assert t.steps[1].error == "no such customer" and not t.outcome.success


def test_responses_records_load_from_files_beside_chat_records(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    lines = [json.dumps(record(id="chat")), json.dumps(responses_record(id="resp"))]
    path.write_text("\n".join(lines) + "\n")
    loaded = load_trajectories(path)
    assert [t.id for t in loaded] == ["chat", "resp"]
    assert loaded[0].steps == loaded[1].steps


def _resp_mutate(path: str, value: Any) -> dict[str, Any]:
    rec = responses_record(id="bad-one")
    target: Any = rec
    keys = [int(k) if k.isdigit() else k for k in path.split("/")]
    for key in keys[:-1]:
        target = target[key]
    if value is KeyError:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return rec


RESPONSES_BAD = [
    ("args-not-json", _resp_mutate("input/3/arguments", "{email:"), "input[3].arguments",
     "not valid JSON"),
    ("args-not-object", _resp_mutate("output/0/arguments", "[1]"), "output[0].arguments",
     "JSON object"),
    ("args-not-text", _resp_mutate("output/0/arguments", {"a": 1}), "output[0].arguments",
     "JSON text"),
    ("unpaired-output", _resp_mutate("input/4/call_id", "zz"), "input[4].call_id", "'zz'"),
    ("unanswered-call", _resp_mutate("output/1", {"type": "reasoning"}), "output[0].call_id",
     "no function_call_output"),
    ("no-call-id", _resp_mutate("input/3/call_id", KeyError), "input[3].call_id", "call_id"),
    ("duplicate-call-id", _resp_mutate("output/0/call_id", "c1"), "output[0].call_id",
     "duplicate"),
    ("item-not-object", _resp_mutate("output/2", "hi"), "output[2]", "JSON object"),
    ("unknown-tool", _resp_mutate("output/0/name", "drop_table"), "output[0].name",
     "'drop_table'"),
    ("bad-role", _resp_mutate("input/0/role", "robot"), "input[0].role", "robot"),
    ("bad-flat-tool", _resp_mutate("tools/0/name", "a b"), "tools[0].name", ""),
    ("input-not-list", _resp_mutate("input", 3), "input", "string or a list"),
    ("both-shapes", responses_record(id="bad-one", messages=[]), "messages", "not both"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("rec", "field", "words"), [b[1:] for b in RESPONSES_BAD], ids=[b[0] for b in RESPONSES_BAD]
)
def test_malformed_responses_records_name_the_item(
    tmp_path: Path, rec: dict[str, Any], field: str, words: str
) -> None:
    path = tmp_path / "runs.jsonl"
    path.write_text(json.dumps(responses_record(id="good")) + "\n" + json.dumps(rec) + "\n")
    with pytest.raises(TrajectoryError) as info:
        load_trajectories(path)
    message = str(info.value)
    assert f"{path}:2" in message and "'bad-one'" in message
    assert words in message
    assert info.value.field == field
    assert message.count(f"{field}: ") == 1  # the field is named once, not stacked


# --- Step: the one tool-call record, and its conversions ---------------------------------------


def test_a_step_converts_from_a_sandbox_call_and_to_a_case_call() -> None:
    ran = ToolCall("get_order", {"order_id": "O-1"}, {"status": "shipped"}, None, 0.25)
    step = Step.from_tool_call(ran, "c7")
    assert step == Step("get_order", {"order_id": "O-1"}, {"status": "shipped"}, None, "c7")
    failed = Step.from_tool_call(ToolCall("get_order", {}, None, "ValueError: no", 0.0))
    assert (failed.error, failed.call_id) == ("ValueError: no", "")

    # A case keeps tool, arguments and result: the error and the call id are not stored.
    assert step.as_case_call() == Step("get_order", {"order_id": "O-1"}, {"status": "shipped"})
    assert step.to_case_json() == {
        "tool": "get_order", "arguments": {"order_id": "O-1"}, "result": {"status": "shipped"},
    }  # fmt: skip
    assert Step.from_case_json(step.to_case_json()) == step.as_case_call()
    assert Step.from_case_json({"tool": "ping", "arguments": {}}) == Step("ping", {})
    with pytest.raises(KeyError):
        Step.from_case_json({"tool": "ping"})


_TEXT = st.text(max_size=20)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=10,
)
_STEPS = st.builds(
    Step,
    tool=st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True),
    arguments=st.dictionaries(_TEXT, _JSON, max_size=3),
    result=_JSON,
    error=st.none() | st.text(min_size=1, max_size=20).filter(str.strip),
)


@given(steps=st.lists(_STEPS, max_size=4))
def test_steps_survive_chat_messages_and_case_json(steps: list[Step]) -> None:
    steps = [
        Step(s.tool, s.arguments, None if s.error else s.result, s.error, f"c{n}")
        for n, s in enumerate(steps)
    ]
    messages = [{"role": "user", "content": "do it"}]
    for step in steps:
        messages += step.to_chat_messages()
    assert parse_record({"messages": messages}).steps == tuple(steps)

    calls = tuple(s.as_case_call() for s in steps)
    case = Case("t", "0" * 64, "do it", {}, calls, None)
    stored = json.loads(canonical_json(case.to_json()))
    assert Case.from_json(stored) == case
    assert [c.call_id for c in Case.from_json(stored).calls] == [""] * len(steps)


# --- ToolSpec: a tool definition, and its one conversion to and from the chat shape ----------


def test_a_tool_definition_round_trips_through_the_chat_shape() -> None:
    from skillbank.examples import TOOL_SPECS

    for definition in TOOL_SPECS:
        spec = ToolSpec.from_openai(definition)
        assert spec.name == definition["function"]["name"] and spec.extra == {}
        assert spec.to_openai() == definition
    # Keys someone added to a stored definition are kept, so rewriting tools.json keeps them.
    marked = {"type": "function", "function": {"name": "ping", "parameters": {"type": "object"},
              "strict": True, "annotations": {"readOnlyHint": True}}}  # fmt: skip
    spec = ToolSpec.from_openai(marked)
    assert spec == ToolSpec("ping", "", {"type": "object"},
                            {"strict": True, "annotations": {"readOnlyHint": True}})  # fmt: skip
    assert spec.to_openai() == marked
    assert ToolSpec.from_openai({"function": {"name": "ping"}}) == ToolSpec("ping")


@pytest.mark.parametrize(
    ("definition", "words"),
    [
        pytest.param([], "expected a Chat Completions tool definition", id="not-an-object"),
        pytest.param({"type": "function", "name": "ping"}, "expected a Chat", id="flat-shape"),
        pytest.param({"type": "web_search", "function": {"name": "x"}}, "expected", id="builtin"),
        pytest.param({"function": {"description": "x"}}, "function.name", id="no-name"),
        pytest.param({"function": {"name": "x", "description": 3}}, "description", id="desc"),
        pytest.param({"function": {"name": "x", "parameters": []}}, "parameters", id="params"),
    ],
)
def test_a_malformed_tool_definition_names_the_bad_part(definition: Any, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        ToolSpec.from_openai(definition)
