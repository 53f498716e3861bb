"""OpenTelemetry spans of skill runs, through the real SDK and its in-memory exporter."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, StatusCode
from opentelemetry.util.types import Attributes

from skillbank import SkillBank, Step, load_trajectories
from skillbank.examples import Shop
from skillbank.formats.otel import lines
from skillbank.tracing import spans_to_otlp
from tests.conftest import EXAMPLE_TRAJECTORIES, REPO


class _Switch(Sampler):
    """Samples only while a test of this module runs: the global provider can be set once
    per process, and other tests' skill runs should not be recorded."""

    on = False

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        return SamplingResult(Decision.RECORD_AND_SAMPLE if self.on else Decision.DROP)

    def get_description(self) -> str:
        return "on while tests/test_tracing.py runs"


_EXPORTER = InMemorySpanExporter()
_SWITCH = _Switch()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider(sampler=_SWITCH)
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
    _EXPORTER.clear()
    _SWITCH.on = True
    try:
        yield _EXPORTER
    finally:
        _SWITCH.on = False
        _EXPORTER.clear()


@pytest.fixture
def shop_bank(tmp_path: Path) -> Iterator[tuple[SkillBank, Shop]]:
    with SkillBank.init(tmp_path / "bank") as bank:
        bank.learn(load_trajectories(EXAMPLE_TRAJECTORIES))
        yield bank, Shop.create(tmp_path / "shop.sqlite")


def _attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


# Learns the shop (~2 s) and runs two skills in the sandbox.
def test_a_skill_run_is_an_execute_tool_span_with_a_child_per_tool_call(
    spans: InMemorySpanExporter, shop_bank: tuple[SkillBank, Shop], tmp_path: Path
) -> None:
    bank, shop = shop_bank
    args = {"email": "hiro@example.com"}
    result = bank.run("list_orders_by_email", args, shop.tools(), caller="test")
    assert result.ok
    *children, root = spans.get_finished_spans()
    assert root.name == "execute_tool list_orders_by_email" and root.parent is None
    assert root.kind == SpanKind.INTERNAL
    skill = bank.get("list_orders_by_email")
    assert _attributes(root) == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "list_orders_by_email",
        "gen_ai.tool.type": "function",
        "gen_ai.tool.description": skill.description,
        "gen_ai.tool.call.arguments": json.dumps(args),
        "gen_ai.tool.call.result": json.dumps(result.value),
        "gen_ai.skill.name": "list_orders_by_email",
        "gen_ai.skill.description": skill.description,
        "skillbank.skill.version": str(skill.version),
        "skillbank.skill.stage": skill.stage,
        "skillbank.caller": "test",
    }
    assert [c.name for c in children] == ["execute_tool find_customer", "execute_tool list_orders"]
    for n, (child, call) in enumerate(zip(children, result.tool_calls, strict=True), start=1):
        assert child.parent is not None and child.parent.span_id == root.context.span_id
        assert child.context.trace_id == root.context.trace_id
        attrs = _attributes(child)
        assert attrs["gen_ai.tool.call.id"] == f"call_{n}"
        assert json.loads(attrs["gen_ai.tool.call.arguments"]) == call.arguments
        assert json.loads(attrs["gen_ai.tool.call.result"]) == call.result
        assert root.start_time <= child.start_time <= child.end_time <= root.end_time

    # Exported as OTLP JSON (as a Collector's file exporter writes it), the trace reads back
    # as the trajectory of that run.
    path = tmp_path / "traces.json"
    path.write_text(lines([spans_to_otlp(spans.get_finished_spans())]))
    (back,) = load_trajectories(path)
    assert back.id == f"{root.context.trace_id:032x}"
    assert back.task == 'list_orders_by_email {"email": "hiro@example.com"}'
    assert back.steps == tuple(
        Step.from_tool_call(call, f"call_{n}") for n, call in enumerate(result.tool_calls, 1)
    )
    assert [t.name for t in back.tools] == ["find_customer", "list_orders"]
    assert back.outcome.success

    # A tool that raises: an error status on its span and on the skill's.
    spans.clear()
    tools = dict(shop.tools())

    def broken(**arguments: Any) -> Any:
        raise RuntimeError("the shop is closed")

    tools["list_orders"] = broken
    failed = bank.run("list_orders_by_email", args, tools)
    assert not failed.ok
    child_failed = spans.get_finished_spans()[1]
    root_failed = spans.get_finished_spans()[-1]
    assert child_failed.status.status_code == StatusCode.ERROR
    assert child_failed.status.description == "RuntimeError: the shop is closed"
    assert _attributes(child_failed)["error.type"] == "RuntimeError"
    assert root_failed.status.status_code == StatusCode.ERROR
    assert _attributes(root_failed)["error.type"] == failed.error_type


# Learns the shop (~2 s) in a fresh interpreter where OpenTelemetry cannot be imported.
def test_without_opentelemetry_a_run_imports_nothing_of_it(tmp_path: Path) -> None:
    script = f"""
import sys
sys.modules["opentelemetry"] = None  # as if skillbank[otel] were not installed
from skillbank import SkillBank, load_trajectories
from skillbank.examples import Shop
with SkillBank.init({str(tmp_path / "bank")!r}) as bank:
    bank.learn(load_trajectories({str(EXAMPLE_TRAJECTORIES)!r}))
    shop = Shop.create({str(tmp_path / "shop.sqlite")!r})
    result = bank.run("list_orders_by_email", {{"email": "hiro@example.com"}}, shop.tools())
assert result.ok, result.error
loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry") and sys.modules[m])
print("loaded:", loaded)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "loaded: []" in done.stdout


def test_a_skill_another_calls_is_a_child_span_with_its_own_calls_beneath_it(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    from tests.test_compose import TOOLS, history, latest

    with SkillBank.init(tmp_path / "bank") as bank:
        bank.learn([history("h1", "ann@x.io"), history("h2", "bob@x.io")])
        runs = [latest("l1", "ann@x.io"), latest("l2", "cy@x.io")]
        (sid,) = bank.learn(runs, branch="current").added
        assert bank.get(sid).requires == ("list_orders_by_email",)
        spans.clear()
        result = bank.run(sid, {"email": "bob@x.io"}, TOOLS)
        assert result.ok, result.error
    by_name = {s.name: s for s in spans.get_finished_spans()}
    assert len(by_name) == 5
    root = by_name[f"execute_tool {sid}"]
    nested = by_name["execute_tool list_orders_by_email"]
    assert root.parent is None
    assert nested.parent is not None and nested.parent.span_id == root.context.span_id
    for name, parent in (("find_customer", nested), ("list_orders", nested), ("get_order", root)):
        span = by_name[f"execute_tool {name}"]
        assert span.parent is not None and span.parent.span_id == parent.context.span_id, name
        assert parent.start_time <= span.start_time <= span.end_time <= parent.end_time
    attrs = _attributes(nested)
    assert attrs["gen_ai.skill.name"] == "list_orders_by_email"
    assert json.loads(attrs["gen_ai.tool.call.arguments"]) == {"email": "bob@x.io"}
    assert json.loads(attrs["gen_ai.tool.call.result"])["customer_id"] == "C-2"
    ids = [_attributes(s)["gen_ai.tool.call.id"] for s in spans.get_finished_spans() if s != root]
    assert sorted(ids) == ["call_1", "call_2", "call_3", "call_4"]
    # Read back, the trace is the run's real tool calls; the nested skill holds its own.
    path = tmp_path / "traces.json"
    path.write_text(lines([spans_to_otlp(spans.get_finished_spans())]))
    (back,) = load_trajectories(path)
    assert [s.tool for s in back.steps] == ["find_customer", "list_orders", "get_order"]
