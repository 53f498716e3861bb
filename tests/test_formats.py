"""Trajectory formats: Anthropic Messages and OpenTelemetry GenAI spans (OTLP JSON).

Golden files (tests/fixtures/formats/) are written from each format's published
documentation: the Messages API's tool use examples (a ``tool_use`` beside text, a
``tool_result`` answering it, ``is_error``, parallel calls, a ``thinking`` block), and the
GenAI semantic conventions' own example (``Weather in Paris?``, ``get_weather``, the
``tool_call``/``tool_call_response`` parts) spread over two lines of a Collector file
exporter's output, with one trace that has only chat spans.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from skillbank import (
    SkillBank,
    TrajectoryError,
    load_trajectories,
    parse_record,
    scan_trajectories,
)
from skillbank.cli import cli
from skillbank.formats import detect
from skillbank.formats.anthropic import from_chat
from skillbank.formats.otel import lines, to_otlp, trace_id_for
from skillbank.trajectory import Outcome, Step, ToolSpec, Trajectory
from tests.conftest import EXAMPLE_TRAJECTORIES, FIXTURES

GOLDEN = FIXTURES / "formats"
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"}
    },
    "required": ["location"],
}


def _same(a: Trajectory, b: Trajectory) -> bool:
    return replace(a, source="") == replace(b, source="")


# --------------------------------------------------------------------------- golden files


def test_anthropic_golden_file_reads_as_documented() -> None:
    first, second = load_trajectories(GOLDEN / "anthropic_weather.jsonl")
    assert first.id == "weather-sf"
    assert first.task == "What's the weather like in San Francisco?"
    assert [t.name for t in first.tools] == ["get_weather"]
    assert first.tools[0].parameters["required"] == ["location"]
    assert first.steps == (
        Step(
            "get_weather",
            {"location": "San Francisco, CA", "unit": "celsius"},
            "15 degrees",
            None,
            "toolu_01A09q90qw90lq917835lq9",
        ),
    )
    # Text beside a tool_use is not the answer; the last text-only message is.
    assert first.outcome == Outcome(
        True, "The current weather in San Francisco is 15 degrees Celsius.", inferred=True
    )
    # A bare message list: parallel tool_use blocks, a thinking block skipped, text blocks
    # of a tool_result joined (and parsed as JSON), is_error marking the failed call.
    assert second.task == "What's the weather in Paris and in Berlin?"
    assert second.steps == (
        Step("get_weather", {"location": "Paris"}, {"temperature": 18, "conditions": "sunny"},
             None, "toolu_01"),
        Step("get_weather", {"location": "Berlin"}, None,
             "ConnectionError: the weather service API is not available (HTTP 500)", "toolu_02"),
    )  # fmt: skip
    assert second.outcome.success is False and second.tools == ()


def test_otel_golden_file_gives_one_trajectory_per_trace() -> None:
    paris, rome = load_trajectories(GOLDEN / "otel_weather.json")
    assert paris.id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert paris.source.endswith("otel_weather.json:1")
    assert paris.task == "Weather in Paris?"
    assert paris.tools == (
        ToolSpec("get_weather", "Get the current weather in a given location", WEATHER_SCHEMA),
    )
    # Structured arguments (kvlistValue) and a plain-text result, from the execute_tool span
    # on the second line.
    assert paris.steps == (
        Step("get_weather", {"location": "Paris"}, "rainy, 57°F", None,
             "call_VSPygqKTWdrhaFErNvMV18Yl"),
    )  # fmt: skip
    assert paris.outcome == Outcome(
        True, "The weather in Paris is currently rainy with a temperature of 57°F.", inferred=True
    )
    # Chat spans only: the calls come from the last chat span's messages, the tool's
    # definition is inferred from its calls.
    assert rome.id == "0af7651916cd43dd8448eb211c80319c"
    assert rome.task == "Weather in Rome?"
    assert rome.steps == (
        Step("get_weather", {"location": "Rome"}, {"temperature": 24, "conditions": "clear"},
             None, "call_2"),
    )  # fmt: skip
    assert rome.tools == (
        ToolSpec(
            "get_weather",
            "",
            {"type": "object", "properties": {"location": {"type": "string"}},
             "required": ["location"]},
        ),
    )  # fmt: skip
    assert rome.outcome.detail == "Rome is clear, 24 degrees."


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "openai"),
        ({"input": "hi", "output": []}, "openai"),
        ({"messages": [{"role": "user", "content": "hi"}], "system": "be brief"}, "anthropic"),
        ({"messages": [], "tools": [{"name": "f", "input_schema": {}}]}, "anthropic"),
        ([{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"}]}], "anthropic"),
        ({"resourceSpans": []}, "otel"),
    ],
    ids=["chat", "responses", "system", "input_schema", "bare-blocks", "otlp"],
)
def test_detect_tells_a_format_by_its_content(obj: object, expected: str) -> None:
    assert detect(obj) == expected


# --------------------------------------------------------------------------- errors


def _anthropic_record() -> dict[str, object]:
    return json.loads((GOLDEN / "anthropic_weather.jsonl").read_text().splitlines()[0])


def _otlp_lines() -> list[dict[str, object]]:
    return [json.loads(line) for line in (GOLDEN / "otel_weather.json").read_text().splitlines()]


def _set_attribute(span: dict[str, object], key: str, value: dict[str, object]) -> None:
    attrs = span["attributes"]
    assert isinstance(attrs, list)
    for item in attrs:
        if item["key"] == key:
            item["value"] = value
            return
    attrs.append({"key": key, "value": value})


def test_anthropic_errors_name_file_line_record_and_field(tmp_path: Path) -> None:
    record = _anthropic_record()
    record["messages"][1]["content"][1]["input"] = "San Francisco"  # type: ignore[index]
    path = tmp_path / "runs.jsonl"
    path.write_text("\n" + json.dumps(record) + "\n")
    with pytest.raises(TrajectoryError) as caught:
        load_trajectories(path)
    assert str(caught.value).startswith(
        f"{path}:2 (record 'weather-sf'): messages[1].content[1].input: Input should be a "
        "valid dictionary"
    )
    record = _anthropic_record()
    record["messages"][2]["content"][0]["tool_use_id"] = "toolu_nope"  # type: ignore[index]
    path.write_text(json.dumps(record) + "\n")
    with pytest.raises(TrajectoryError, match=r"messages\[2\]\.content\[0\]\.tool_use_id: no "):
        load_trajectories(path)
    record = _anthropic_record()
    record["tools"][0]["name"] = "get weather"  # type: ignore[index]
    path.write_text(json.dumps(record) + "\n")
    with pytest.raises(TrajectoryError, match=r":1 \(record 'weather-sf'\): tools\[0\]\.name: "):
        load_trajectories(path)


def test_otel_errors_name_file_line_record_and_field(tmp_path: Path) -> None:
    path = tmp_path / "traces.json"
    first, second = _otlp_lines()
    span = second["resourceSpans"][0]["scopeSpans"][0]["spans"][0]  # type: ignore[index]
    _set_attribute(span, "gen_ai.tool.call.arguments", {"stringValue": "{not json"})
    path.write_text(lines([first, second]))
    scan_error = pytest.raises(TrajectoryError)
    with scan_error as caught:
        load_trajectories(path)
    assert str(caught.value).startswith(
        f"{path}:2 (record '4bf92f3577b34da6a3ce929d0e0e4736'): resourceSpans[0].scopeSpans[0]"
        ".spans[0].attributes[gen_ai.tool.call.arguments]: arguments are not valid JSON"
    )
    # The other trace of the file is still read with --skip-invalid.
    assert [t.task for t in load_trajectories(path, skip_invalid=True)] == ["Weather in Rome?"]
    first, second = _otlp_lines()
    second["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"] = "xyz"  # type: ignore[index]
    path.write_text(lines([first, second]))
    with pytest.raises(TrajectoryError, match=r":2 \(record '4bf92f3577b34da6a3ce929d0e0e4736'\): "
                       r"resourceSpans\[0\]\.scopeSpans\[0\]\.spans\[0\]\.spanId: not an OTLP "
                       "JSON traces request"):  # fmt: skip
        load_trajectories(path)
    # The bad line is one error; the first line's spans are still read, and their trace,
    # cut short (a call with no answer), is another.
    scan = scan_trajectories(path)
    assert scan.trajectories == ()
    assert [e.source.split(" ")[0] for e in scan.errors] == [f"{path}:2", f"{path}:1"]
    assert "has no tool message answering it" in str(scan.errors[1])


def test_format_can_be_forced(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    path.write_text(json.dumps(_anthropic_record()) + "\n")
    assert len(load_trajectories(path, format="anthropic")) == 1
    with pytest.raises(TrajectoryError, match="resourceSpans"):
        load_trajectories(path, format="otel")
    with pytest.raises(TrajectoryError, match="unknown trajectory format 'yaml'"):
        load_trajectories(path, format="yaml")  # type: ignore[arg-type]


def test_a_forced_format_that_does_not_fit_says_what_the_file_looks_like(tmp_path: Path) -> None:
    # An Anthropic file read with --format openai failed on a field, as if the record were
    # broken; the error says which format it looks like instead.
    path = tmp_path / "runs.jsonl"
    path.write_text(json.dumps(_anthropic_record()) + "\n")
    for forced in ("openai", "otel"):
        with pytest.raises(TrajectoryError, match=f"read as {forced}, .*looks like anthropic"):
            load_trajectories(path, format=forced)  # type: ignore[arg-type]
    result = CliRunner().invoke(cli, ["learn", "--root", str(tmp_path), "--format", "openai",
                                      str(path)])  # fmt: skip
    assert result.exit_code == 1 and "use --format anthropic" in result.output
    # A record broken in its own format gets no such note.
    broken = json.dumps(_anthropic_record()).replace('"input_schema": {', '"input_schema": [{', 1)
    path.write_text(broken.replace('"required": ["location"]}', '"required": ["location"]}]', 1))
    with pytest.raises(TrajectoryError) as raised:
        load_trajectories(path, format="anthropic")
    assert "looks like" not in str(raised.value)


# --------------------------------------------------------------------------- round trips

_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
_LEAF = st.none() | st.booleans() | st.integers(-(10**9), 10**9) | st.floats(-1e6, 1e6) | _TEXT
_SHALLOW = _LEAF | st.lists(_LEAF, max_size=3) | st.dictionaries(_TEXT, _LEAF, max_size=3)
_JSON = _SHALLOW | st.lists(_SHALLOW, max_size=2) | st.dictionaries(_TEXT, _SHALLOW, max_size=2)
_STRIPPED = (
    st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=20)
    .map(str.strip)
    .filter(bool)
)


@st.composite
def trajectories(draw: st.DrawFn) -> Trajectory:
    """Trajectories any format can hold: declared tools, unique call ids, an outcome that is
    recorded or inferred from the calls, a final answer without surrounding spaces."""
    names = draw(
        st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True), min_size=1, max_size=3,
                 unique=True)
    )  # fmt: skip
    tools = tuple(
        ToolSpec(
            name,
            draw(st.sampled_from(["", "Looks a thing up."])),
            {"type": "object", "properties": {"q": {"type": "string"}}},
            draw(st.sampled_from([{}, {"x-skillbank-effect": "query"}])),
        )
        for name in names
    )
    steps = []
    for n in range(draw(st.integers(0, 4))):
        failed = draw(st.booleans())
        steps.append(
            Step(
                draw(st.sampled_from(names)),
                draw(st.dictionaries(st.from_regex(r"[a-z]{1,5}", fullmatch=True), _JSON,
                                     max_size=3)),
                None if failed else draw(_JSON),
                draw(_STRIPPED) if failed else None,
                f"call_{n}",
            )
        )  # fmt: skip
    detail = draw(st.none() | _STRIPPED)
    if draw(st.booleans()):
        outcome = Outcome(draw(st.booleans()), detail)
    else:
        outcome = Outcome(all(s.error is None for s in steps), detail, inferred=True)
    task = draw(_STRIPPED | _TEXT.filter(str.strip))
    rid = draw(st.from_regex(r"[a-z0-9][a-z0-9-]{0,11}", fullmatch=True))
    return Trajectory(rid, task, tools, tuple(steps), outcome)


@given(trajectories())
def test_openai_record_round_trips(trajectory: Trajectory) -> None:
    assert _same(parse_record(json.loads(json.dumps(trajectory.to_record()))), trajectory)


@given(trajectories())
def test_anthropic_record_round_trips(trajectory: Trajectory) -> None:
    record = json.loads(json.dumps(from_chat(trajectory.to_record())))
    assert _same(parse_record(record, format="anthropic"), trajectory)
    assert _same(parse_record(record), trajectory)  # detected by its content


@given(trajectories())
def test_otlp_request_round_trips(trajectory: Trajectory) -> None:
    request = json.loads(json.dumps(to_otlp([trajectory.to_record()])))
    back = parse_record(request)
    assert _same(back, trajectory)
    assert request["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] == trace_id_for(
        trajectory.id
    )


# --------------------------------------------------------------------------- learning twins


def _learned_sources(root: Path, path: Path, fmt: str = "auto") -> dict[str, str]:
    runner = CliRunner()
    assert runner.invoke(cli, ["init", str(root)]).exit_code == 0
    result = runner.invoke(
        cli, ["learn", str(path), "--root", str(root), "--format", fmt, "--json"],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with SkillBank(root) as bank:
        return {s.id: s.source for s in bank.skills()}


# Learns the shop's 42 runs three times (~2 s each) through the CLI.
def test_each_format_learns_the_same_skills_as_its_openai_twin(tmp_path: Path) -> None:
    originals = load_trajectories(EXAMPLE_TRAJECTORIES)
    records = [t.to_record() for t in originals]
    anthropic = tmp_path / "shop.anthropic.jsonl"
    anthropic.write_text("".join(json.dumps(from_chat(r)) + "\n" for r in records))
    otlp = tmp_path / "shop.otlp.json"  # the file exporter's name, JSON lines inside
    otlp.write_text(lines([to_otlp(records[:25]), to_otlp(records[25:])]))

    expected = _learned_sources(tmp_path / "openai", EXAMPLE_TRAJECTORIES)
    assert len(expected) == 7
    assert _learned_sources(tmp_path / "anthropic", anthropic) == expected
    assert _learned_sources(tmp_path / "otel", otlp, "otel") == expected
    for path in (anthropic, otlp):
        assert all(_same(a, b) for a, b in zip(load_trajectories(path), originals, strict=True))


def test_the_readme_examples_read_as_the_same_trajectory() -> None:
    readme = (FIXTURES.parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Trajectory format", 1)[1].split("### Traces out", 1)[0]
    blocks = [b.split("```", 1)[0] for b in section.split("```json\n")[1:]]
    openai, anthropic, otlp = (json.loads(b) for b in blocks)
    assert (detect(openai), detect(anthropic), detect(otlp)) == ("openai", "anthropic", "otel")
    chat = parse_record(openai)
    for other in (parse_record(anthropic), parse_record(otlp)):
        assert other.task == chat.task
        assert [(s.tool, s.arguments, s.result) for s in other.steps] == [
            (s.tool, s.arguments, s.result) for s in chat.steps
        ]
