"""Security rows, class "host-side decoding": what crosses the wire cannot hurt the host.

The red team found that a deeply nested return value or tool argument made ``Sandbox.run``
raise ``RecursionError``; that 10 MB of nested lists grew the host by ~1 GB because frames
were decoded before the budget was checked; that a call with ``timeout_s=5`` returned after
11-14 s because neither decoding nor host tools were under the deadline; and that lone
surrogates reached the host. Each row here is one such attack, from a skill (through a real
worker) or from a worker that has gone hostile (a real process that writes crafted bytes
instead of running the skill). Each asserts the exact failure, that no secret leaked, and
that the next call on a clean sandbox is correct.
"""

from __future__ import annotations

import json
import os
import stat
import struct
import sys
import textwrap
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sandbox import (
    ExecutionTimeout,
    Limits,
    LocalExecutor,
    Result,
    Sandbox,
    ToolNotAllowed,
    WorkerCrashed,
)
from sandbox.protocol import MAX_DEPTH
from tests.sandbox.test_sandbox_security import (
    LIGHT,
    TOOLS,
    Expect,
    FollowUp,
    _assert_nothing_leaked,
    limit,
    skill,
    tool_error,
)

CRASHED = Expect(WorkerCrashed)
TIMEOUT = Expect(ExecutionTimeout, limit="wall")


def _nested(depth: int, leaf: object = 0) -> object:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


#: Host tools a hostile skill can aim at the host's decoder through.
DECODING_TOOLS: dict[str, Callable[..., Any]] = {
    **TOOLS,
    "deep": lambda depth: _nested(depth),
    "ident": lambda value: value,
    "lone": lambda: {"text": "ok \udc80 ok"},
    "lone_key": lambda: {"\ud800": 1},
    "huge_int": lambda: 10**5000,
    "nan": lambda: float("nan"),
    "blob": lambda size: "x" * size,
    "lists": lambda n: [[] for _ in range(n)],
}


def _no_tool_calls(result: Result) -> None:
    assert result.tool_calls == ()


def _one_failed_tool_call(result: Result) -> None:
    assert len(result.tool_calls) == 1 and result.tool_calls[0].error is not None


def _message_has(*words: str) -> Callable[[Result], None]:
    def check(result: Result) -> None:
        for word in words:
            assert word in str(result.error), (word, str(result.error))

    return check


@dataclass(frozen=True)
class SkillRow:
    """A skill that aims at the host's decoding through a real worker."""

    name: str
    expect: Expect
    source: str
    limits: Limits = LIGHT
    check: Callable[[Result], None] | None = None

    @property
    def id(self) -> str:
        return f"host-side-decoding-{self.name}"


def S(name: str, expect: Expect, source: str, **kwargs: Any) -> SkillRow:
    return SkillRow(name, expect, textwrap.dedent(source).lstrip("\n"), **kwargs)


DEEP = MAX_DEPTH + 1

SKILL_ROWS = [
    S(
        "return-just-over-depth",
        skill("TypeError"),
        f"""
        def run():
            x = 0
            for i in range({DEEP}):
                x = [x]
            return x
    """,
        check=_message_has(f"{DEEP} levels deep", f"{MAX_DEPTH}"),
    ),
    S(
        "return-nested-990",
        skill("TypeError"),
        """
        def run():
            x = {}
            for i in range(990):
                x = {"k": x}
            return x
    """,
    ),
    S(
        "return-deep-inside-wide",
        skill("TypeError"),
        f"""
        def run():
            x = 0
            for i in range({DEEP}):
                x = [x]
            return {{"rows": [[1, 2, 3]] * 1000 + [x]}}
    """,
    ),
    S(
        "tool-argument-just-over-depth",
        skill("TypeError"),
        f"""
        def run():
            x = 0
            for i in range({DEEP}):
                x = [x]
            return tools.echo(payload=x)
    """,
        check=_no_tool_calls,
    ),
    S(
        "tool-argument-nested-900",
        skill("TypeError"),
        """
        def run():
            x = {}
            for i in range(900):
                x = {"k": x}
            return tools.echo(payload=x)
    """,
        check=_no_tool_calls,
    ),
    S(
        "tool-argument-amplifies-in-memory",
        limit("tool_io"),
        """
        def run():
            return tools.echo(payload=[[] for i in range(40000)])
    """,
        limits=Limits(
            timeout_s=5, cpu_s=2, memory_mb=256, output_bytes=10_000, tool_io_bytes=1_000_000
        ),
        check=_no_tool_calls,
    ),  # fmt: skip
    S(
        "return-lone-surrogate",
        skill("ValueError"),
        "def run():\n    return '\\udc80'\n",
        check=_message_has("lone surrogate", "'\\udc80'"),
    ),  # fmt: skip
    S(
        "return-lone-surrogate-key",
        skill("ValueError"),
        """
        def run():
            return {"\\ud800": 1}
    """,
    ),
    S(
        "return-surrogate-pair-as-two-chars",
        skill("ValueError"),
        """
        def run():
            return "\\ud83d" + "\\ude00"
    """,
    ),
    S(
        "tool-argument-lone-surrogate",
        skill("ValueError"),
        """
        def run():
            return tools.echo(text="a\\udfffb")
    """,
        check=_no_tool_calls,
    ),
    S(
        "print-lone-surrogate",
        skill("ValueError"),
        """
        def run():
            print("before \\ud800 after")
            return 1
    """,
        check=lambda result: result.output == "",
    ),  # fmt: skip
    S(
        "error-message-lone-surrogate",
        skill("ValueError"),
        """
        def run():
            raise ValueError("bad \\ud800 value")
    """,
        check=_message_has("bad \\ud800 value"),
    ),
    S(
        "error-fields-as-big-as-the-worker-allows",
        Expect(ToolNotAllowed, tool="x"),
        """
        def run():
            raise ToolNotAllowed("x", ["\\x01" * 300 + str(i) for i in range(500)])
    """,
        limits=Limits(timeout_s=5, cpu_s=2, memory_mb=256, output_bytes=1_000),
    ),
    S(
        "tool-error-lone-surrogate",
        tool_error("t"),
        """
        def run():
            raise ToolError("t", "\\udcff")
    """,
    ),
    S(
        "tool-result-too-deep",
        tool_error("deep"),
        f"""
        def run():
            return tools.deep(depth={DEEP})
    """,
        check=_one_failed_tool_call,
    ),
    S(
        "tool-result-nested-5000",
        tool_error("deep"),
        """
        def run():
            return tools.deep(depth=5000)
    """,
        check=_one_failed_tool_call,
    ),
    S(
        "tool-result-lone-surrogate",
        tool_error("lone"),
        "def run():\n    return tools.lone()\n",
        check=_one_failed_tool_call,
    ),  # fmt: skip
    S(
        "tool-result-lone-surrogate-key",
        tool_error("lone_key"),
        """
        def run():
            return tools.lone_key()
    """,
        check=_one_failed_tool_call,
    ),
    S(
        "tool-result-huge-int",
        tool_error("huge_int"),
        """
        def run():
            return tools.huge_int()
    """,
        check=_one_failed_tool_call,
    ),
    S(
        "tool-result-nan",
        tool_error("nan"),
        "def run():\n    return tools.nan()\n",
        check=_one_failed_tool_call,
    ),  # fmt: skip
    S(
        "tool-result-over-budget",
        limit("tool_io"),
        """
        def run():
            return len(tools.blob(size=2_000_000))
    """,
        limits=Limits(
            timeout_s=5, cpu_s=2, memory_mb=256, output_bytes=10_000, tool_io_bytes=1_000_000
        ),
    ),  # fmt: skip
    S(
        "tool-result-amplifies-in-memory",
        limit("tool_io"),
        """
        def run():
            return len(tools.lists(n=40000))
    """,
        limits=Limits(
            timeout_s=5, cpu_s=2, memory_mb=256, output_bytes=10_000, tool_io_bytes=1_000_000
        ),
    ),  # fmt: skip
    S(
        "caught-depth-error-then-clean-return",
        skill("TypeError"),
        f"""
        def run():
            x = 0
            for i in range({DEEP}):
                x = [x]
            try:
                tools.echo(payload=x)
            except TypeError:
                pass
            return x
    """,
        check=_no_tool_calls,
    ),
]


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox(max_idle_workers=1) as shared:
        yield shared


@pytest.mark.parametrize("row", SKILL_ROWS, ids=[row.id for row in SKILL_ROWS])
def test_skill_cannot_hurt_the_hosts_decoding(sb, row):
    result = sb.run(row.source, "run", {}, DECODING_TOOLS, row.limits)
    assert isinstance(result, Result)
    row.expect.check(result)
    if row.check is not None:
        row.check(result)
    _assert_nothing_leaked(result)
    json.dumps(str(result.error)).encode("utf-8")  # the error itself crosses as UTF-8
    FollowUp.run(sb).check()


def test_values_at_the_depth_limit_cross_every_way(sb):
    value = _nested(MAX_DEPTH)
    built = (
        f"def run():\n    x = 0\n    for i in range({MAX_DEPTH}):\n        x = [x]\n    return x\n"
    )
    assert sb.run(built, "run", {}, {}).value == value
    assert sb.run("def run(v):\n    return v\n", "run", {"v": value}, {}).value == value
    echoed = sb.run("def run(v):\n    return tools.ident(value=v)\n", "run", {"v": value},
                    DECODING_TOOLS)  # fmt: skip
    assert echoed.value == value and echoed.tool_calls[0].arguments == {"value": value}


# ------------------------------------------------------------------- the host's own input


@pytest.mark.parametrize(
    ("args", "source", "tools", "message"),
    [
        ({"x": _nested(DEEP)}, "def run(x):\n    return 1\n", {}, "levels deep"),
        ({"x": _nested(5000)}, "def run(x):\n    return 1\n", {}, "more than 100 levels"),
        ({"x": "\ud800"}, "def run(x):\n    return 1\n", {}, "lone surrogate"),
        ({}, "def run():\n    return '\ud800'\n", {}, "Sandbox.run source"),
        ({}, "def run():\n    return 1\n", {"\udc80": lambda: 1}, "Sandbox.run tool name"),
    ],
    ids=[
        "args-over-depth",
        "args-nested-5000",
        "args-lone-surrogate",
        "source-lone-surrogate",
        "tool-name-lone-surrogate",
    ],  # fmt: skip
)
def test_callers_bad_input_is_a_clear_value_error(sb, args, source, tools, message):
    with pytest.raises(ValueError, match=message):
        sb.run(source, "run", args, tools)
    FollowUp.run(sb).check()


# ------------------------------------------------------------------ the deadline and tools


def test_a_hanging_tool_cannot_hold_the_call_past_its_deadline(sb):
    returned = threading.Event()
    saw: list[bool] = []

    def hang() -> str:
        # Blocks until the test has its Result back (or 60 s pass, which then fails below).
        saw.append(returned.wait(60))
        return "late"

    # Long enough for a worker to start on a busy machine: the tool must be what hangs.
    limits = Limits(timeout_s=1.5, cpu_s=5, memory_mb=256, output_bytes=10_000)
    source = "def run():\n    tools.ping()\n    return tools.hang()\n"
    result = sb.run(source, "run", {}, {**TOOLS, "hang": hang}, limits)
    returned.set()
    TIMEOUT.check(result)
    assert result.error.tool == "hang"
    assert "tool call #2, tools.hang()" in str(result.error)
    assert [call.tool for call in result.tool_calls] == ["ping", "hang"]
    assert "discarded" in result.tool_calls[1].error and result.tool_calls[1].result is None
    FollowUp.run(sb).check()
    for _ in range(100):  # the helper thread finishes once released; its value went nowhere
        if saw:
            break
        time.sleep(0.05)
    assert saw == [True], "Sandbox.run waited for the hanging tool"


def test_tools_run_off_the_calling_thread_unless_inline(sb):
    caller = threading.get_ident()
    seen: list[int] = []

    def where() -> int:
        seen.append(threading.get_ident())
        return 1

    source = "def run():\n    return tools.where()\n"
    assert sb.run(source, "run", {}, {"where": where}).value == 1
    assert sb.run(source, "run", {}, {"where": where}, inline_tools=True).value == 1
    assert seen[0] != caller and seen[1] == caller
    # Inline, the deadline still decides the outcome, but only once the tool has returned.
    limits = Limits(timeout_s=0.2, cpu_s=5, memory_mb=256, output_bytes=10_000)
    slow = {"slow": lambda: time.sleep(0.4) or 1}
    late = sb.run("def run():\n    return tools.slow()\n", "run", {}, slow, limits,
                  inline_tools=True)  # fmt: skip
    TIMEOUT.check(late)
    FollowUp.run(sb).check()


def test_a_tool_raising_base_exception_still_propagates(sb):
    def interrupt() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sb.run("def run():\n    return tools.stop()\n", "run", {}, {"stop": interrupt})
    FollowUp.run(sb).check()


def test_tools_run_in_the_callers_context(sb):
    import contextvars

    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")
    request_id.set("req-42")
    result = sb.run(
        "def run():\n    return tools.whoami()\n", "run", {}, {"whoami": request_id.get}
    )
    assert result.value == "req-42"


# ---------------------------------------------------------------------- a hostile worker

# A stand-in for the template process (``LocalExecutor(python=...)`` runs the template): it
# speaks the control protocol of sandbox.forkserver, and each "worker" it forks writes the
# crafted bytes instead of running the skill.
_HOSTILE = """\
#!{python}
import json, os, socket, struct, sys, time
config = next(json.loads(a) for a in sys.argv[1:] if a.startswith('{{"control_fd"'))
control = socket.socket(fileno=int(config["control_fd"]))
def read(fd, n):
    data = b""
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            os._exit(0)
        data += chunk
    return data
def hostile(in_fd, out_fd):
    (size,) = struct.unpack(">I", read(in_fd, 4))
    read(in_fd, size)  # the run request
    with open({payload!r}, "rb") as f:
        for part in f.read().split(b"<PAUSE>"):
            os.write(out_fd, part)
            time.sleep(0.05)
    while True:  # answer nothing more; the host decides when this call is over
        if not os.read(in_fd, 1 << 16):
            os._exit(0)
control.send(json.dumps({{"ready": {{}}}}).encode())
while True:
    data = control.recv(1 << 17)
    if not data:
        sys.exit(0)
    if data in (b"F", b"f"):
        request_read, request_write = os.pipe()
        reply_read, reply_write = os.pipe()
        pid = os.fork()
        if pid == 0:
            control.close()
            os.close(request_write)
            os.close(reply_read)
            try:
                hostile(request_read, reply_write)
            finally:
                os._exit(0)
        os.close(request_read)
        os.close(reply_write)
        pidfd = os.pidfd_open(pid)
        message = json.dumps({{"worker": pid}}).encode()
        socket.send_fds(control, [message], [pidfd, request_write, reply_read])
        for fd in (pidfd, request_write, reply_read):
            os.close(fd)
    elif data.startswith(b"W "):
        pid = int(data[2:])
        _, status = os.waitpid(pid, 0)
        control.send(json.dumps({{"exit": pid, "status": status}}).encode())
"""


def frame(payload: bytes | str, size: int | None = None) -> bytes:
    data = payload.encode("utf-8") if isinstance(payload, str) else payload
    return struct.pack(">I", len(data) if size is None else size) + data


def done(value_json: str | bytes) -> bytes:
    value = value_json.encode("utf-8") if isinstance(value_json, str) else value_json
    return frame(b'{"op":"done","ok":true,"error":null,"output":"","value":' + value + b"}")


def tool(arguments_json: str | bytes, name: str = "echo") -> bytes:
    arguments = arguments_json.encode() if isinstance(arguments_json, str) else arguments_json
    return frame(b'{"op":"tool","name":"' + name.encode() + b'","arguments":' + arguments + b"}")


SMALL_IO = Limits(timeout_s=5, cpu_s=2, memory_mb=256, output_bytes=10_000, tool_io_bytes=4_000_000)


@dataclass(frozen=True)
class HostileRow:
    """Bytes a hostile worker writes instead of running the skill."""

    name: str
    expect: Expect
    sends: bytes
    limits: Limits = LIGHT
    #: Most bytes the host may allocate while handling the call (tracemalloc peak).
    peak_bytes: int = 16 * 1024 * 1024

    @property
    def id(self) -> str:
        return f"host-side-decoding-hostile-{self.name}"


HOSTILE_ROWS = [
    HostileRow("done-nested-5000", CRASHED, done("[" * 5000 + "]" * 5000)),
    HostileRow("done-nested-just-over", CRASHED, done("[" * (DEEP + 1) + "]" * (DEEP + 1))),
    HostileRow(
        "tool-arguments-nested-5000", CRASHED, tool('{"x":' + "[" * 5000 + "]" * 5000 + "}")
    ),  # fmt: skip
    HostileRow("done-lone-surrogate-escape", CRASHED, done('"\\ud800"')),
    HostileRow("tool-arguments-lone-surrogate-escape", CRASHED, tool('{"text":"\\udc00"}')),
    HostileRow("done-lone-low-surrogate-escape", CRASHED, done('["a","\\udfff"]')),
    HostileRow("done-surrogate-in-utf8-bytes", CRASHED, done(b'"\xed\xa0\x80"')),
    HostileRow("done-invalid-utf8", CRASHED, done(b'"\xff\xfe"')),
    HostileRow("done-nan", CRASHED, done("NaN")),
    HostileRow("done-infinity-by-overflow", CRASHED, done("1e999")),
    HostileRow("done-int-past-digit-limit", CRASHED, done("9" * 5000)),
    HostileRow("frame-is-a-list", CRASHED, frame('[{"op":"done"}]')),
    HostileRow("frame-unknown-op", CRASHED, frame('{"op":"exec","code":"x"}')),
    HostileRow("frame-duplicate-op-key", CRASHED, frame('{"op":"done","op":"exec","ok":true}')),
    HostileRow("header-claims-2-gib", CRASHED, struct.pack(">I", 2**31) + b"{"),
    # Over 7 x output_bytes (value and escaped output) plus room for the error's fields.
    HostileRow("done-over-the-output-cap", CRASHED, done('"' + "x" * 1_000_000 + '"')),
    HostileRow(
        "tool-frame-over-the-budget-by-header",
        CRASHED,
        tool('{"x":"' + "x" * 5_000_000 + '"}'),
        SMALL_IO,
    ),  # fmt: skip
    HostileRow(
        "tool-arguments-amplify-in-memory",
        limit("tool_io"),
        tool('{"x":[' + ",".join(["[]"] * 1_000_000) + "]}"),
        SMALL_IO,
    ),  # fmt: skip
    HostileRow("tool-private-argument", CRASHED, tool('{"_secret":1}')),
    HostileRow(
        "half-a-frame-then-silence",
        TIMEOUT,
        struct.pack(">I", 100) + b'{"op":"done"',
        Limits(timeout_s=0.5),
    ),  # fmt: skip
    HostileRow(
        "drip-feeds-a-frame",
        TIMEOUT,
        struct.pack(">I", 200) + b"<PAUSE>".join([b"[1,"] * 40),
        Limits(timeout_s=0.5),
    ),
]


@pytest.fixture(scope="module")
def hostile_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile")


def _hostile_sandbox(folder: Path, row: HostileRow) -> Sandbox:
    payload = folder / f"{row.name}.bin"
    payload.write_bytes(row.sends)
    script = folder / f"{row.name}.py"
    script.write_text(_HOSTILE.format(python=sys.executable, payload=str(payload)))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return Sandbox(executor=LocalExecutor(max_idle_workers=0, python=str(script)))


@pytest.mark.parametrize("row", HOSTILE_ROWS, ids=[row.id for row in HOSTILE_ROWS])
def test_hostile_worker_cannot_hurt_the_host(sb, hostile_dir, row):
    with _hostile_sandbox(hostile_dir, row) as hostile:
        tracemalloc.start()
        try:
            result = hostile.run("def run():\n    return 1\n", "run", {}, TOOLS, row.limits)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert isinstance(result, Result)
        row.expect.check(result)
        assert peak < row.peak_bytes, f"the host allocated {peak} bytes"
        if row.expect.error is WorkerCrashed:
            assert "protocol" in str(result.error)
        pids = hostile._pool.pids()
        assert pids == {"idle": [], "busy": []}, "the hostile worker was kept"
    FollowUp.run(sb).check()


def test_the_decoding_class_has_twenty_rows_or_more():
    rows = [row.id for row in SKILL_ROWS] + [row.id for row in HOSTILE_ROWS]
    assert len(rows) == len(set(rows))
    assert len(rows) >= 20
    assert os.path.basename(__file__) == "test_security_decoding.py"


def test_a_text_only_backend_carries_values_at_the_depth_limit():
    from tests.sandbox.test_executor import RelayExecutor

    value = _nested(MAX_DEPTH)
    with Sandbox(executor=RelayExecutor()) as relay:
        result = relay.run("def run(v):\n    return tools.ident(value=v)\n", "run", {"v": value},
                           DECODING_TOOLS)  # fmt: skip
        assert result.value == value
        with pytest.raises(ValueError, match="levels deep"):
            relay.run("def run(v):\n    return 1\n", "run", {"v": _nested(DEEP)}, {})
