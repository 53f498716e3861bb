"""The wire shapes of OTLP JSON traces, checked with pydantic.

`skillbank.formats.otel` checks each request with these models and decodes the spans into
its own values at once; nothing else uses them. Only the envelope and each span's identity
are checked here (ids as hex, times as integers); attribute values are decoded by
`skillbank.formats.otel`, which names the attribute in its messages.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ResourceSpans", "ScopeSpans", "Span", "Status", "TracesData"]

JSON = Any


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class Status(_Wire):
    #: 0 unset, 1 ok, 2 error (or the enum's name, ``STATUS_CODE_ERROR``).
    code: int | str = 0
    message: str | None = None


class Span(_Wire):
    traceId: str = Field(pattern=r"^[0-9a-fA-F]{32}$")
    spanId: str = Field(pattern=r"^[0-9a-fA-F]{16}$")
    parentSpanId: str = Field(default="", pattern=r"^([0-9a-fA-F]{16})?$")
    name: str = ""
    startTimeUnixNano: int | None = None
    endTimeUnixNano: int | None = None
    attributes: list[dict[str, JSON]] = Field(default_factory=list)
    status: Status | None = None


class ScopeSpans(_Wire):
    spans: list[Span] = Field(default_factory=list)


class ResourceSpans(_Wire):
    scopeSpans: list[ScopeSpans] = Field(default_factory=list)


class TracesData(_Wire):
    resourceSpans: list[ResourceSpans]
