"""OpenTelemetry spans of skill runs, following the GenAI semantic conventions (optional).

With ``pip install 'skillbank[otel]'`` every skill run (`skillbank.running.Runner`) emits
spans through the standard OpenTelemetry API, to whatever tracer provider the application
configured (an OTLP exporter to Jaeger, Langfuse, Phoenix or any OTLP backend; with none
configured the API's no-op tracer records nothing and costs next to nothing):

- the skill call is an ``execute_tool`` span (kind ``INTERNAL``), named
  ``execute_tool <skill id>``, with ``gen_ai.operation.name = "execute_tool"``,
  ``gen_ai.tool.name``, ``gen_ai.tool.type = "function"``, ``gen_ai.tool.description``,
  ``gen_ai.tool.call.arguments`` and ``gen_ai.tool.call.result`` (JSON text, since the Python
  SDK takes no structured attribute values), and ``error.type`` with an error status when
  it fails. It carries the agent-skill attributes too, as the conventions have them for a
  tool call that explicitly identifies a skill: ``gen_ai.skill.name`` (the skill id) and
  ``gen_ai.skill.description``. The span name stays ``execute_tool {gen_ai.tool.name}``:
  the conventions append the skill's name only together with a skill resource, which a
  skill run does not read;
- each tool call the skill makes is a child ``execute_tool`` span, ``execute_tool <tool>``,
  with the tool's name, a call id (``call_<n>``, in call order), its arguments and its
  result, or an error status and ``error.type`` when the tool raised. A skill it calls
  (`skillbank.compose`) is a child span of the same form as the skill's own, with a call id,
  and the calls that skill makes are its children. The spans are made as
  the calls happen, with their real times (the host runs them on helper threads, so the
  parent is passed explicitly);
- ``skillbank.skill.version``, ``skillbank.skill.stage`` and ``skillbank.caller`` say which
  version ran, at which stage, for whom.

Exported as OTLP JSON, such a trace reads back (`skillbank.formats.otel`) as the trajectory
of that run: its steps are the child spans, in order; it has no chat span, so its task is
``"<skill id> <arguments as JSON>"``.

Without OpenTelemetry installed, `SkillTrace.start` returns None after one cached lookup,
and the runner does nothing more: no import, no wrapper around the tools.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox import Result
    from skillbank.skill import Skill

__all__ = ["SkillTrace", "enabled", "spans_to_otlp"]

JSON = Any

_STATE: dict[str, Any] = {}
_LOCK = threading.Lock()


def enabled() -> bool:
    """Whether the OpenTelemetry API is installed (checked once per process)."""
    found = _STATE.get("enabled")
    if found is None:
        try:
            found = importlib.util.find_spec("opentelemetry.trace") is not None
        except (ImportError, ValueError):  # a parent package missing or blocked
            found = False
        _STATE["enabled"] = found
    return bool(found)


def _tracer() -> Any:
    tracer = _STATE.get("tracer")
    if tracer is None:
        from importlib.metadata import version

        from opentelemetry import trace

        tracer = trace.get_tracer("skillbank", version("skillbank"))
        _STATE["tracer"] = tracer
    return tracer


def _dumps(value: JSON) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


class SkillTrace:
    """The spans of one skill run: its ``execute_tool`` span and a child per tool call."""

    def __init__(self, span: Any, recording: bool, numbers: Iterator[int] | None = None) -> None:
        self._span = span
        self._recording = recording
        #: Call ids, shared with the runs nested in this one: unique in the trace.
        self._numbers = numbers if numbers is not None else itertools.count(1)

    @classmethod
    def start(
        cls,
        skill: Skill,
        args: Mapping[str, JSON],
        caller: str | None = None,
        *,
        parent: SkillTrace | None = None,
    ) -> SkillTrace | None:
        """Start the span of a run of ``skill`` (a child of ``parent``'s, for a skill another
        calls); None when OpenTelemetry is not installed."""
        if not enabled():
            return None
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind

        context = trace.set_span_in_context(parent._span) if parent is not None else None
        span = _tracer().start_span(
            f"execute_tool {skill.id}", context=context, kind=SpanKind.INTERNAL
        )
        recording = bool(span.is_recording())
        if recording:
            attributes: dict[str, Any] = {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": skill.id,
                "gen_ai.tool.type": "function",
                "gen_ai.tool.call.arguments": _dumps(dict(args)),
                "gen_ai.skill.name": skill.id,
                "skillbank.skill.version": str(skill.version),
                "skillbank.skill.stage": skill.stage,
            }
            if skill.description:
                attributes["gen_ai.tool.description"] = skill.description
                attributes["gen_ai.skill.description"] = skill.description
            if caller:
                attributes["skillbank.caller"] = caller
            if parent is not None:
                with _LOCK:
                    attributes["gen_ai.tool.call.id"] = f"call_{next(parent._numbers)}"
            span.set_attributes(attributes)
        return cls(span, recording, parent._numbers if parent is not None else None)

    def nested(self, skill: Skill, args: Mapping[str, JSON]) -> SkillTrace:
        """The spans of a run of ``skill`` that this run called (`skillbank.compose`): a
        child span, whose own calls are its children."""
        child = SkillTrace.start(skill, args, parent=self)
        assert child is not None  # this trace exists, so OpenTelemetry is installed
        return child

    def wrap(self, tools: Mapping[str, Callable[..., JSON]]) -> dict[str, Callable[..., JSON]]:
        """The host tools, each making a child span per call (as is, when not recording)."""
        if not self._recording:
            return dict(tools)
        return {name: self._wrapped(name, fn) for name, fn in tools.items()}

    def _wrapped(self, name: str, fn: Callable[..., JSON]) -> Callable[..., JSON]:
        def call(**arguments: JSON) -> JSON:
            from opentelemetry import trace
            from opentelemetry.trace import SpanKind, Status, StatusCode

            with _LOCK:
                number = next(self._numbers)
            context = trace.set_span_in_context(self._span)
            span = _tracer().start_span(
                f"execute_tool {name}", context=context, kind=SpanKind.INTERNAL
            )
            span.set_attributes(
                {
                    "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": name,
                    "gen_ai.tool.type": "function",
                    "gen_ai.tool.call.id": f"call_{number}",
                    "gen_ai.tool.call.arguments": _dumps(arguments),
                }
            )
            try:
                value = fn(**arguments)
            except Exception as exc:
                span.set_attribute("error.type", type(exc).__name__)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                span.end()
                raise
            span.set_attribute("gen_ai.tool.call.result", _dumps(value))
            span.end()
            return value

        call.__name__ = getattr(fn, "__name__", name)
        return call

    def end(self, result: Result) -> None:
        """End the skill's span with what the run returned, or its error."""
        if self._recording:
            from opentelemetry.trace import Status, StatusCode

            if result.ok:
                self._span.set_attribute("gen_ai.tool.call.result", _dumps(result.value))
            else:
                kind = type(result.error).__name__
                self._span.set_attribute("error.type", kind)
                self._span.set_status(Status(StatusCode.ERROR, f"{kind}: {result.error}"))
        self._span.end()

    def abandon(self, error: BaseException) -> None:
        """End the span of a run that never reached the sandbox (misuse: the error says)."""
        if self._recording:
            from opentelemetry.trace import Status, StatusCode

            self._span.set_attribute("error.type", type(error).__name__)
            self._span.set_status(Status(StatusCode.ERROR, str(error)))
        self._span.end()


def spans_to_otlp(spans: Sequence[Any]) -> dict[str, JSON]:
    """Finished SDK spans (``opentelemetry.sdk.trace.ReadableSpan``) as one OTLP JSON traces
    request, the shape an OpenTelemetry Collector's file exporter writes (and
    `skillbank.formats.otel` reads): ids as hex, attribute values as ``AnyValue`` objects,
    spans grouped by resource and instrumentation scope."""
    from skillbank.formats.otel import attributes

    groups: dict[tuple[str, str, str], list[dict[str, JSON]]] = {}
    resources: dict[str, dict[str, JSON]] = {}
    for span in spans:
        resource = dict(span.resource.attributes) if span.resource is not None else {}
        resource_key = json.dumps(resource, sort_keys=True, default=str)
        resources[resource_key] = resource
        lib = span.instrumentation_scope
        key = (resource_key, lib.name if lib else "", (lib.version or "") if lib else "")
        context = span.context
        status: dict[str, JSON] = {}
        if span.status.status_code.value:
            status["code"] = span.status.status_code.value
            if span.status.description:
                status["message"] = span.status.description
        groups.setdefault(key, []).append(
            {
                "traceId": f"{context.trace_id:032x}",
                "spanId": f"{context.span_id:016x}",
                "parentSpanId": f"{span.parent.span_id:016x}" if span.parent else "",
                "name": span.name,
                "kind": span.kind.value + 1,  # OTLP counts from UNSPECIFIED = 0
                "startTimeUnixNano": str(span.start_time),
                "endTimeUnixNano": str(span.end_time),
                "attributes": attributes(dict(span.attributes or {})),
                "status": status,
            }
        )
    by_resource: dict[str, list[dict[str, JSON]]] = {}
    for (resource_key, scope_name, scope_version), items in groups.items():
        scope: dict[str, JSON] = {"name": scope_name}
        if scope_version:
            scope["version"] = scope_version
        by_resource.setdefault(resource_key, []).append({"scope": scope, "spans": items})
    return {
        "resourceSpans": [
            {"resource": {"attributes": attributes(resources[key])}, "scopeSpans": scopes}
            for key, scopes in by_resource.items()
        ]
    }
