"""Tests for the sandbox package, with real worker processes (no mocks)."""

from __future__ import annotations

import copy
import os
import signal
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sandbox
from sandbox import (
    ALLOWED_MODULES,
    ExecutionTimeout,
    Limits,
    PolicyViolation,
    ResourceLimitExceeded,
    Result,
    Sandbox,
    SandboxError,
    SkillError,
    ToolCall,
    ToolError,
    ToolNotAllowed,
    WorkerCrashed,
)
from sandbox.policy import compile_skill

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")


def src(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


@pytest.fixture(scope="module")
def sb() -> Sandbox:
    with Sandbox() as shared:
        yield shared


def run(sb: Sandbox, source: str, args=None, tools=None, **limits) -> Result:
    return sb.run(src(source), "run", args or {}, tools or {}, Limits(**limits) if limits else None)


# ------------------------------------------------------------------------ happy path


def test_two_tools_with_data_flow(sb):
    def search(query):
        return {"ids": [7, 8], "query": query}

    def fetch(id):
        return {"id": id, "title": f"doc {id}"}

    result = run(
        sb,
        """
        def run(topic):
            hits = tools.search(query=topic)
            doc = tools.fetch(id=hits["ids"][0])
            return {"title": doc["title"], "n": len(hits["ids"])}
        """,
        {"topic": "rust"},
        {"search": search, "fetch": fetch},
    )
    assert result.ok, result.error
    assert result.value == {"title": "doc 7", "n": 2}
    assert result.error is None
    assert [(c.tool, c.arguments, c.result, c.error) for c in result.tool_calls] == [
        ("search", {"query": "rust"}, {"ids": [7, 8], "query": "rust"}, None),
        ("fetch", {"id": 7}, {"id": 7, "title": "doc 7"}, None),
    ]
    assert all(isinstance(c, ToolCall) and c.duration_s >= 0 for c in result.tool_calls)
    assert result.duration_s > 0
    result.raise_for_error()  # no error: does nothing


def test_tool_arguments_round_trip_through_json(sb):
    seen = []

    def keep(items):
        seen.append(items)
        items.append("mutated by the tool")
        return len(items)

    result = run(sb, "def run():\n    return tools.keep(items=(1, 'a'))\n", tools={"keep": keep})
    assert result.value == 3
    assert seen == [[1, "a", "mutated by the tool"]]  # the tuple arrived as a JSON list
    assert result.tool_calls[0].arguments == {"items": [1, "a"]}  # the record is not aliased


def test_print_is_captured(sb):
    result = run(sb, "def run():\n    print('hello', 42)\n    print('again')\n    return 1\n")
    assert result.ok
    assert result.output == "hello 42\nagain\n"


def test_augmented_assignment_on_items_and_attributes(sb):
    result = run(
        sb,
        """
        from collections import Counter

        class Box:
            def __init__(self):
                self.n = 1

        def run(words):
            d = {}
            counts = Counter()
            for w in words:
                d[w] = d.get(w, 0)
                d[w] += 1
                counts[w] += 2
            box = Box()
            box.n *= 5
            xs = [1, 2, 3]
            xs[0:2] += [9]
            total = 0
            total += 1.5
            return {"d": d, "counts": dict(counts), "box": box.n, "xs": xs, "total": total}
        """,
        {"words": ["a", "b", "a"]},
    )
    assert result.ok, result.error
    assert result.value == {
        "d": {"a": 2, "b": 1},
        "counts": {"a": 4, "b": 2},
        "box": 5,
        "xs": [1, 2, 9, 3],
        "total": 1.5,
    }


@pytest.mark.parametrize("module", ALLOWED_MODULES)
def test_allowed_modules_import(sb, module):
    result = run(sb, f"import {module}\ndef run():\n    return repr({module})\n")
    assert result.ok, result.error
    assert module in result.value


def test_allowed_modules_work(sb):
    result = run(
        sb,
        """
        import json, statistics, itertools, re, datetime
        from decimal import Decimal
        def run():
            return [
                json.loads("[1, 2]"),
                statistics.mean([1, 2, 3]),
                list(itertools.islice(itertools.count(), 3)),
                re.sub("a+", "b", "caaat"),
                datetime.date(2024, 2, 29).isoformat(),
                str(Decimal("1.10") + Decimal("2")),
                math.floor(2.7),
            ]
        """,
    )
    assert result.value == [[1, 2], 2, [0, 1, 2], "cbt", "2024-02-29", "3.10", 2]


def test_future_import_and_from_imports(sb):
    result = run(
        sb,
        """
        from __future__ import annotations
        from json import dumps
        from collections import defaultdict

        def run(n: int) -> str:
            groups = defaultdict(list)
            groups["a"].append(n)
            return dumps(groups)
        """,
        {"n": 3},
    )
    assert result.value == '{"a": [3]}'


def _pid_source() -> str:
    return src(
        """
        seen = []
        def run(x):
            seen.append(x)
            return {"seen": len(seen), "pid": tools.pid()}
        """
    )


def test_state_does_not_leak_between_calls_in_reuse_mode():
    with Sandbox(max_idle_workers=1, isolation="reuse") as box:
        pid = lambda: box._pool.pids()["busy"][0]  # noqa: E731
        first = box.run(_pid_source(), "run", {"x": 1}, {"pid": pid})
        second = box.run(_pid_source(), "run", {"x": 2}, {"pid": pid})
    assert first.value["pid"] == second.value["pid"]  # same warm process both times
    assert (first.value["seen"], second.value["seen"]) == (1, 1)


def test_every_call_runs_in_a_process_of_its_own_by_default():
    with Sandbox(max_idle_workers=1) as box:
        pid = lambda: box._pool.pids()["busy"][0]  # noqa: E731
        results = [box.run(_pid_source(), "run", {"x": i}, {"pid": pid}) for i in range(4)]
    assert [r.value["seen"] for r in results] == [1, 1, 1, 1]
    assert len({r.value["pid"] for r in results}) == 4


def test_isolation_mode_is_checked():
    with pytest.raises(ValueError, match="isolation='shared' is not a mode; use 'fresh'"):
        Sandbox(isolation="shared")


def test_concurrent_runs_from_threads(sb):
    source = "def run(i):\n    return tools.twice(x=i) + 1\n"

    def twice(x):
        time.sleep(0.05)  # keep the calls overlapping
        return 2 * x

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(
            pool.map(lambda i: sb.run(source, "run", {"i": i}, {"twice": twice}), range(4))
        )
    assert [r.value for r in results] == [1, 3, 5, 7]
    assert all(r.ok and len(r.tool_calls) == 1 for r in results)


# ------------------------------------------------------------------------------ tools


def test_undeclared_tool_is_not_allowed(sb):
    result = run(
        sb, "def run():\n    return tools.delete_everything(confirm=True)\n", tools={"ok": dict}
    )
    assert isinstance(result.error, ToolNotAllowed)
    assert result.error.tool == "delete_everything"
    assert "'ok'" in str(result.error)
    assert result.tool_calls == ()
    with pytest.raises(ToolNotAllowed):
        result.raise_for_error()


def test_undeclared_tool_can_be_caught(sb):
    result = run(
        sb,
        """
        def run():
            try:
                return tools.optional()
            except ToolNotAllowed:
                return "fallback"
        """,
    )
    assert result.value == "fallback"


def failing_tool(**kwargs):
    raise KeyError("no such record")


def test_tool_error_reaches_the_skill_as_a_fresh_exception(sb):
    result = run(
        sb,
        """
        def run():
            try:
                tools.lookup(id=1)
            except ToolError as e:
                return [isinstance(e, ToolError), e.tool, e.message, list(e.args)]
        """,
        tools={"lookup": failing_tool},
    )
    assert result.ok, result.error
    message = "KeyError: 'no such record'"  # only the message crosses over, not the exception
    assert result.value == [True, "lookup", message, ["lookup", message]]
    (call,) = result.tool_calls
    assert (call.tool, call.arguments, call.result) == ("lookup", {"id": 1}, None)
    assert call.error == "KeyError: 'no such record'"


def test_uncaught_tool_error_is_the_result_error(sb):
    result = run(sb, "def run():\n    return tools.lookup(id=1)\n", tools={"lookup": failing_tool})
    assert isinstance(result.error, ToolError)
    assert (result.error.tool, result.error.message) == ("lookup", "KeyError: 'no such record'")
    assert str(result.error) == "tool 'lookup' failed: KeyError: 'no such record'"


def test_tool_returning_non_json_is_a_tool_error(sb):
    result = run(sb, "def run():\n    return tools.bad()\n", tools={"bad": lambda: {1, 2}})
    assert isinstance(result.error, ToolError)
    assert "not JSON-serialisable" in result.error.message
    assert result.tool_calls[0].error == result.error.message


def test_tools_take_keyword_arguments_only(sb):
    result = run(sb, "def run():\n    return tools.echo(1)\n", tools={"echo": lambda **kw: kw})
    assert isinstance(result.error, SkillError)
    assert result.error.exc_type == "TypeError" and "keyword arguments only" in result.error.message


def test_tool_call_limit(sb):
    result = run(
        sb,
        """
        def run():
            try:
                while True:
                    tools.ping()
            except Exception:
                return "swallowed"
        """,
        tools={"ping": lambda: None},
        max_tool_calls=3,
    )
    assert isinstance(result.error, ResourceLimitExceeded) and result.error.limit == "tool_calls"
    assert len(result.tool_calls) == 3


# ---------------------------------------------------------------------------- policy

POLICY_ROWS = [
    ("import_os", "import os\ndef run():\n    return 1\n", 1),
    ("from_os_path", "from os import path\ndef run():\n    return 1\n", 1),
    ("relative_import", "from . import x\ndef run():\n    return 1\n", 1),
    ("submodule", "import collections.abc\ndef run():\n    return 1\n", 1),
    ("dunder_class", "def run():\n    return ().__class__\n", 2),
    ("subclasses", "def run():\n    return [].__class__.__mro__[1].__subclasses__()\n", 2),
    ("underscore_name", "def run():\n    _x = 1\n    return _x\n", 2),
    ("frame_access", "def run():\n    g = (i for i in [1])\n    return g.gi_frame\n", 3),
    ("exec_builtin_name", "def run():\n    return __builtins__\n", 2),
    ("runtime_getattr", "def run():\n    return getattr((), '__class__')\n", 2),
    ("runtime_import", "def run():\n    return __import__('os')\n", 2),
    ("str_format", "def run():\n    return '{0.__class__}'.format(1)\n", 2),
    ("module_write", "import json\ndef run():\n    json.dumps = None\n    return 1\n", 3),
    (
        "caught_refusal_is_sticky",
        "def run():\n    try:\n        getattr(1, '_x')\n"
        "    except Exception:\n        return 'swallowed'\n",
        3,
    ),
]


@pytest.mark.parametrize(
    ("snippet", "line"), [row[1:] for row in POLICY_ROWS], ids=[row[0] for row in POLICY_ROWS]
)
def test_policy_violations(sb, snippet, line):
    result = sb.run(snippet, "run", {}, {})
    assert not result.ok
    assert isinstance(result.error, PolicyViolation), result.error
    assert result.error.line == line
    assert str(result.error).startswith(f"line {line}")


def test_open_is_not_available_and_nothing_is_written(sb, tmp_path: Path):
    target = tmp_path / "x"
    result = run(sb, f"def run():\n    open({str(target)!r}, 'w').write('pwned')\n    return 1\n")
    assert not result.ok
    assert isinstance(result.error, (SkillError, PolicyViolation))
    assert getattr(result.error, "exc_type", "NameError") == "NameError"
    assert not target.exists()


def test_syntax_error_is_a_policy_violation_with_location(sb):
    result = run(sb, "def run():\n    x = 1\n    return x +\n")
    assert isinstance(result.error, PolicyViolation)
    assert result.error.line == 3 and result.error.col is not None
    assert "SyntaxError" in result.error.message
    assert "return x +" in str(result.error) and "^" in str(result.error)


def test_skill_exception_reports_type_and_line(sb):
    result = run(
        sb,
        """
        def helper(x):
            if x > 1:
                raise ValueError(f"x={x} is too big")
            return x

        def run(x):
            return helper(x)
        """,
        {"x": 5},
    )
    assert isinstance(result.error, SkillError)
    assert (result.error.exc_type, result.error.message, result.error.line) == (
        "ValueError",
        "x=5 is too big",
        3,
    )
    assert str(result.error) == "line 3: ValueError: x=5 is too big"


@pytest.mark.parametrize(
    "expression",
    ["{1, 2}", "Thing()", "float('nan')", "(i for i in [1])"],
    ids=["set", "object", "nan", "generator"],
)
def test_non_json_return_value_is_a_type_error(sb, expression):
    result = run(sb, f"class Thing:\n    pass\ndef run():\n    return {expression}\n")
    assert isinstance(result.error, SkillError)
    assert result.error.exc_type == "TypeError"
    assert "must return JSON-serialisable data" in result.error.message


def test_missing_entry_function(sb):
    result = sb.run("x = 1\n", "run", {}, {})
    assert isinstance(result.error, SkillError) and result.error.exc_type == "NameError"


def test_skill_cannot_raise_system_exit_into_the_host(sb):
    result = run(sb, "class Stop(BaseException):\n    pass\ndef run():\n    raise Stop('bye')\n")
    assert isinstance(result.error, SkillError) and result.error.exc_type == "Stop"
    assert (
        run(sb, "def run():\n    raise SystemExit(1)\n").error.message
        == "name 'SystemExit' is not defined"
    )


@settings(max_examples=50, deadline=None)
@given(name=st.from_regex(r"_[A-Za-z0-9_]{1,12}", fullmatch=True))
def test_no_underscore_attribute_compiles(name):
    for snippet in (f"x = [].{name}\n", f"x = 1\nx.{name} = 2\n", f"{name} = 1\n"):
        with pytest.raises(PolicyViolation):
            compile_skill(snippet)


# ---------------------------------------------------------------------------- limits


@linux_only
def test_timeout_kills_the_worker_and_the_next_call_succeeds():
    with Sandbox() as box:
        started = time.monotonic()
        result = box.run(
            "def run():\n    tools.started()\n    while True:\n        pass\n",
            "run",
            {},
            {"started": lambda: box._pool.pids()["busy"]},
            Limits(timeout_s=1),
        )
        assert time.monotonic() - started < 3
        assert isinstance(result.error, ExecutionTimeout)
        assert isinstance(result.error, ResourceLimitExceeded) and result.error.limit == "wall"
        assert result.tool_calls[0].tool == "started"  # recorded although the call failed
        (pid,) = result.tool_calls[0].result
        assert not Path(f"/proc/{pid}").exists()  # killed and reaped: no zombie
        again = box.run("def run():\n    return 'fine'\n", "run", {}, {})
        assert again.ok and again.value == "fine"


def test_cpu_limit():
    with Sandbox() as box:
        result = box.run(
            "def run():\n    while True:\n        pass\n",
            "run",
            {},
            {},
            Limits(cpu_s=1, timeout_s=8),
        )
    assert isinstance(result.error, ResourceLimitExceeded)
    assert not isinstance(result.error, ExecutionTimeout)
    assert result.error.limit == "cpu"


def test_memory_limit(sb):
    result = run(sb, "def run():\n    x = [0] * (10 ** 9)\n    return 1\n", memory_mb=256)
    assert isinstance(result.error, ResourceLimitExceeded) and result.error.limit == "memory"
    assert run(sb, "def run():\n    return 2\n").value == 2


def test_output_limit_on_prints_is_sticky(sb):
    result = run(
        sb,
        """
        def run():
            try:
                print("x" * 5000)
            except Exception:
                pass
            return 1
        """,
        output_bytes=100,
    )
    assert isinstance(result.error, ResourceLimitExceeded) and result.error.limit == "output"
    assert result.output == "x" * 100


def test_output_limit_on_the_result(sb):
    result = run(sb, "def run():\n    return 'y' * 500\n", output_bytes=100)
    assert isinstance(result.error, ResourceLimitExceeded) and result.error.limit == "output"
    assert result.value is None


def test_worker_killed_mid_call_is_a_crash_and_the_next_call_succeeds():
    with Sandbox() as box:

        def kill_my_worker():
            for pid in box._pool.pids()["busy"]:
                os.killpg(pid, signal.SIGKILL)
            time.sleep(0.05)
            return "too late"

        result = box.run(
            "def run():\n    return tools.kill()\n", "run", {}, {"kill": kill_my_worker}
        )
        assert isinstance(result.error, WorkerCrashed)
        assert result.error.exitcode == -signal.SIGKILL
        assert "SIGKILL" in str(result.error)
        again = box.run("def run():\n    return 'alive'\n", "run", {}, {})
        assert again.value == "alive"


# ------------------------------------------------------------------ API and misuse


@pytest.mark.parametrize(
    "field", ["timeout_s", "cpu_s", "memory_mb", "output_bytes", "max_tool_calls"]
)
def test_limits_must_be_positive(field):
    with pytest.raises(ValueError, match=rf"Limits\.{field}=-1 must be positive"):
        Limits(**{field: -1})
    with pytest.raises(TypeError):
        Limits(**{field: "1"})


def test_run_rejects_bad_arguments(sb):
    with pytest.raises(TypeError, match="JSON-serialisable"):
        sb.run("def run(x):\n    return x\n", "run", {"x": object()}, {})
    with pytest.raises(TypeError, match="tool names"):
        sb.run("def run():\n    return 1\n", "run", {}, {"": print})
    with pytest.raises(ValueError, match="entry"):
        sb.run("def run():\n    return 1\n", "not an identifier", {}, {})
    with pytest.raises(TypeError, match="limits"):
        sb.run("def run():\n    return 1\n", "run", {}, {}, limits={"timeout_s": 1})


def test_closed_sandbox_refuses_to_run():
    box = Sandbox()
    assert box.run("def run():\n    return 1\n", "run", {}, {}).ok
    box.close()
    box.close()  # idempotent
    assert box._pool.pids() == {"idle": [], "busy": []}
    with pytest.raises(RuntimeError, match="closed"):
        box.run("def run():\n    return 1\n", "run", {}, {})


def test_public_api():
    assert sorted(sandbox.__all__) == sandbox.__all__
    for name in sandbox.__all__:
        assert hasattr(sandbox, name)
    for error in (
        PolicyViolation,
        ResourceLimitExceeded,
        ExecutionTimeout,
        ToolNotAllowed,
        ToolError,
        SkillError,
        WorkerCrashed,
    ):
        assert issubclass(error, SandboxError) and error.__doc__


@pytest.mark.parametrize(
    "error",
    [
        PolicyViolation("bad", 3, 4, "x = ().__class__"),
        ResourceLimitExceeded("cpu", "too much"),
        ExecutionTimeout("slow", 1.0),
        ToolNotAllowed("x", ["a"]),
        ToolError("t", "boom"),
        SkillError("ValueError", "v", 2),
        WorkerCrashed("died", -9),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_copy_and_render(error):
    clone = copy.copy(error)
    assert type(clone) is type(error) and str(clone) == str(error) and vars(clone) == vars(error)


def test_policy_violation_points_at_the_column():
    error = PolicyViolation("no", 1, 7, "x = ().__class__")
    assert str(error) == "line 1:7: no\n    x = ().__class__\n          ^"


def test_tool_traffic_is_capped_per_call_so_host_memory_stays_bounded() -> None:
    from sandbox import Limits, ResourceLimitExceeded, Sandbox

    source = (
        "def flood() -> int:\n"
        "    n = 0\n"
        "    while True:\n"
        "        tools.sink(data='x' * 100000)\n"
        "        n += 1\n"
    )
    with Sandbox() as sandbox:
        result = sandbox.run(source, "flood", {}, {"sink": lambda data: len(data)},
                             Limits(tool_io_bytes=1_000_000))  # fmt: skip
        assert isinstance(result.error, ResourceLimitExceeded) and result.error.limit == "tool_io"
        assert 5 <= len(result.tool_calls) <= 11
        assert sandbox.run("def ok() -> int:\n    return 1\n", "ok", {}, {}).value == 1


def test_tools_named_like_mcp_tools_are_called_by_their_identifier(sb):
    # MCP servers name tools "get-weather" or "files.read"; a skill writes the identifier
    # sandbox.names gives, and the host is called back by the real name.
    seen: list[str] = []

    def tool(name):
        def call(**kwargs):
            seen.append(name)
            return {"tool": name, **kwargs}

        return call

    tools = {n: tool(n) for n in ("get-weather", "files.read", "class", "2fa")}
    source = (
        "def run():\n"
        "    return [tools.get_weather(city='Oslo'), tools.files_read(path='a'),\n"
        "            tools.class_(), tools.tool_2fa()]\n"
    )
    result = sb.run(source, "run", {}, tools)
    result.raise_for_error()
    assert seen == ["get-weather", "files.read", "class", "2fa"]
    assert result.value[0] == {"tool": "get-weather", "city": "Oslo"}
    assert [c.tool for c in result.tool_calls] == seen
    # The real name itself is no attribute when it is not an identifier.
    refused = sb.run("def run():\n    return tools.get_weather_x()\n", "run", {}, tools)
    assert refused.error is not None and "get_weather" in str(refused.error)
