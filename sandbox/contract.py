"""The contract every :class:`sandbox.executor.Executor` backend must pass.

Each check takes a fresh backend and raises AssertionError when the backend breaks the
protocol. The checks use only the standard library, so a backend's own test suite can run
them with any test runner::

    @pytest.mark.parametrize("check", CONTRACT, ids=lambda c: c.__name__)
    def test_my_backend(check):
        backend = MyBackend()
        try:
            check(backend)
        finally:
            backend.close()
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from typing import Any

from sandbox.errors import ToolError, ToolNotAllowed
from sandbox.executor import ExecRequest, Executor, ToolHost
from sandbox.limits import Limits

__all__ = ["CONTRACT", "RecordingToolHost"]

_FAST = Limits(timeout_s=5.0, cpu_s=5, memory_mb=512, output_bytes=100_000)


class RecordingToolHost:
    """A tool host that records the JSON text it receives and answers from functions."""

    def __init__(self, tools: Mapping[str, Callable[..., Any]]) -> None:
        self.tools = dict(tools)
        self.received: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def call_tool(self, name: str, arguments_json: str) -> str:
        """Record the call, then run the function on the decoded arguments."""
        if not isinstance(arguments_json, str):
            raise AssertionError(f"a backend passed {type(arguments_json).__name__}, not JSON")
        with self._lock:
            self.received.append((name, arguments_json))
        if name not in self.tools:
            raise ToolNotAllowed(name, sorted(self.tools))
        try:
            return json.dumps(self.tools[name](**json.loads(arguments_json)))
        except Exception as exc:  # noqa: BLE001
            raise ToolError(name, str(exc)) from None


def _call(
    backend: Executor,
    source: str,
    args: Mapping[str, Any] | None = None,
    tools: ToolHost | None = None,
    limits: Limits = _FAST,
    entry: str = "skill",
) -> dict[str, Any]:
    host = tools or RecordingToolHost({})
    names = sorted(getattr(host, "tools", {}))
    request = ExecRequest.build(source, entry, args or {}, names, limits, skill_id="contract")
    response = backend.execute(request.to_json(), host)
    assert isinstance(response, str), "execute must return JSON text"
    data = json.loads(response)
    assert isinstance(data, dict), "the response must be a JSON object"
    for key in ("ok", "value", "error", "tool_calls", "duration_s", "output"):
        assert key in data, f"the response lacks {key!r}"
    result: dict[str, Any] = data
    return result


def returns_the_value(backend: Executor) -> None:
    """A skill's JSON return value comes back unchanged, with ok and no error."""
    data = _call(backend, "def skill(a: int, b: str) -> dict:\n    return {'sum': a + 1, 'b': b}\n",
                 {"a": 41, "b": "é"})  # fmt: skip
    assert data["ok"] is True and data["error"] is None, data
    assert data["value"] == {"sum": 42, "b": "é"}


def relays_tool_calls_as_json(backend: Executor) -> None:
    """Tool calls reach the host as JSON text, results flow back, calls are recorded."""
    host = RecordingToolHost(
        {"find": lambda id: {"id": id, "name": "Ann"}, "greet": lambda name: f"hi {name}"}
    )
    source = (
        "def skill(id: str) -> str:\n"
        "    person = tools.find(id=id)\n"
        "    return tools.greet(name=person['name'])\n"
    )
    data = _call(backend, source, {"id": "C-1"}, host)
    assert data["ok"] and data["value"] == "hi Ann", data
    assert [(n, json.loads(a)) for n, a in host.received] == [
        ("find", {"id": "C-1"}),
        ("greet", {"name": "Ann"}),
    ]
    calls = data["tool_calls"]
    assert [(c["tool"], c["arguments"], c["result"], c["error"]) for c in calls] == [
        ("find", {"id": "C-1"}, {"id": "C-1", "name": "Ann"}, None),
        ("greet", {"name": "Ann"}, "hi Ann", None),
    ]


def refuses_undeclared_tools(backend: Executor) -> None:
    """A tool that is not declared is refused with ToolNotAllowed and never reaches the host."""
    host = RecordingToolHost({"find": lambda id: id})
    data = _call(backend, "def skill() -> str:\n    return tools.delete_everything()\n", {}, host)
    assert data["ok"] is False and data["error"]["type"] == "ToolNotAllowed", data
    assert host.received == []


def reports_tool_failures(backend: Executor) -> None:
    """A failing tool reaches the skill as an exception it can catch; uncaught, a ToolError."""

    def broken(x: int) -> int:
        raise KeyError("no such record")

    host = RecordingToolHost({"broken": broken})
    caught = _call(
        backend,
        "def skill() -> str:\n    try:\n        tools.broken(x=1)\n    except Exception as e:\n"
        "        return 'caught: ' + str(e)\n    return 'no'\n",
        {},
        host,
    )
    assert caught["ok"] and "no such record" in caught["value"], caught
    uncaught = _call(backend, "def skill() -> int:\n    return tools.broken(x=1)\n", {}, host)
    assert uncaught["error"]["type"] == "ToolError" and uncaught["tool_calls"][0]["error"], uncaught


def reports_skill_errors_with_the_line(backend: Executor) -> None:
    """The skill's own exception comes back as SkillError with its type and line."""
    data = _call(backend, "def skill() -> int:\n    x = 1\n    raise ValueError('bad ' + str(x))\n")
    error = data["error"]
    assert data["ok"] is False and error["type"] == "SkillError", data
    assert error["exc_type"] == "ValueError" and error["line"] == 3 and "bad 1" in error["message"]


def refuses_forbidden_code(backend: Executor) -> None:
    """Code the policy forbids is a PolicyViolation, not a crash and not a run."""
    data = _call(backend, "import os\n\ndef skill() -> str:\n    return os.getcwd()\n")
    assert data["ok"] is False and data["error"]["type"] == "PolicyViolation", data


def enforces_the_wall_clock_limit(backend: Executor) -> None:
    """A skill that never ends is stopped at timeout_s and reported as ExecutionTimeout."""
    limits = Limits(timeout_s=1.0, cpu_s=5, memory_mb=512)
    data = _call(backend, "def skill() -> int:\n    while True:\n        pass\n", limits=limits)
    assert data["ok"] is False and data["error"]["type"] == "ExecutionTimeout", data
    after = _call(backend, "def skill() -> int:\n    return 1\n")
    assert after["ok"] and after["value"] == 1, "the backend must recover after a timeout"


def keeps_calls_isolated(backend: Executor) -> None:
    """State a skill leaves behind (globals, class attributes) is not seen by the next call."""
    source = "seen = []\n\ndef skill() -> int:\n    seen.append(1)\n    return len(seen)\n"
    values = [_call(backend, source)["value"] for _ in range(3)]
    assert values == [1, 1, 1], values


def refuses_requests_whose_hash_does_not_match(backend: Executor) -> None:
    """A request whose content_hash is not the source's sha256 is refused (ValueError)."""
    request = json.loads(
        ExecRequest.build("def skill() -> int:\n    return 1\n", "skill", {}, [], _FAST).to_json()
    )
    request["source"] = "def skill() -> int:\n    return 2\n"
    try:
        backend.execute(json.dumps(request), RecordingToolHost({}))
    except ValueError:
        return
    raise AssertionError("a request with a mismatching content_hash was executed")


def serves_concurrent_callers(backend: Executor) -> None:
    """Calls from several threads at once all complete with their own results."""
    results: dict[int, Any] = {}

    def one(n: int) -> None:
        results[n] = _call(backend, "def skill(n: int) -> int:\n    return n * n\n", {"n": n})[
            "value"
        ]

    threads = [threading.Thread(target=one, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {n: n * n for n in range(6)}, results


#: Every check, in a stable order.
CONTRACT: tuple[Callable[[Executor], None], ...] = (
    returns_the_value,
    relays_tool_calls_as_json,
    refuses_undeclared_tools,
    reports_tool_failures,
    reports_skill_errors_with_the_line,
    refuses_forbidden_code,
    enforces_the_wall_clock_limit,
    keeps_calls_isolated,
    refuses_requests_whose_hash_does_not_match,
    serves_concurrent_callers,
)
