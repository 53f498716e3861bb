"""The wire's bounded decoding (`sandbox.protocol`) and the host's tool threads (`relay`)."""

from __future__ import annotations

import json
import struct
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox.protocol import (
    CONTAINER_COST,
    MAX_DEPTH,
    FrameReader,
    Shape,
    WireError,
    check,
    dumps,
    loads,
    measure,
)
from sandbox.relay import ToolRunner


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _containers(value: object) -> int:
    if isinstance(value, dict):
        return 1 + sum(_containers(v) for v in value.values())
    if isinstance(value, list):
        return 1 + sum(_containers(v) for v in value)
    return 0


# Strings full of what the scan must see through: brackets, quotes, backslashes, escapes.
_TRICKY = st.text(alphabet=st.sampled_from(list('[]{}"\\au\n\u00e9\U0001f600')), max_size=8)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _TRICKY,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TRICKY, inner, max_size=4),
    max_leaves=40,
)


@given(_JSON, st.booleans())
def test_measure_agrees_with_the_decoded_value(value, ascii_only):
    data = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8")
    assert measure(data) == Shape(len(data), _depth(value), _containers(value))


@pytest.mark.parametrize(
    ("text", "depth", "containers"),
    [
        ('"[[[{{{"', 0, 0),
        ('["\\"[", "]\\\\", {"a": [[]]}]', 4, 4),
        ('[[], {}, [[]], {"k": {"k": []}}]', 4, 8),
        ("[" * 150 + "]" * 150, 150, 150),
    ],
)
def test_measure_counts_only_structure(text, depth, containers):
    assert measure(text.encode()) == Shape(len(text.encode()), depth, containers)


def test_depth_is_checked_before_decoding():
    deep = ("[" * 5000 + "]" * 5000).encode()
    with pytest.raises(WireError, match="5000 levels deep") as caught:
        loads(deep)
    assert caught.value.kind == "depth"
    assert loads(("[" * MAX_DEPTH + "]" * MAX_DEPTH).encode())[1].depth == MAX_DEPTH
    with pytest.raises(WireError, match=f"{MAX_DEPTH + 1} levels"):
        check(("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)).encode())
    # Wrapping levels (a frame, an arguments mapping) do not count against the data.
    wrapped = ('{"a":{"b":' + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "}}").encode()
    assert check(wrapped, outer=2).depth == MAX_DEPTH + 2


def test_containers_weigh_against_the_budget_before_the_depth_scan():
    data = json.dumps([[] for _ in range(1000)]).encode()
    assert check(data).cost == len(data) + CONTAINER_COST * 1001
    with pytest.raises(WireError, match="1001 arrays and objects") as caught:
        check(data, max_cost=len(data) + 1000)
    assert caught.value.kind == "size"
    with pytest.raises(WireError, match="bytes of JSON"):
        check(b'"' + b"x" * 100 + b'"', max_cost=50)


@pytest.mark.parametrize(
    "data",
    [b'"\\ud800"', b'"\\udc00"', b'"\\ud800\\ud800\\udc00"', b'["\\uDBFF", 1]', b'{"\\udfff":1}'],
)
def test_escaped_lone_surrogates_are_refused(data):
    with pytest.raises(WireError, match="lone surrogate") as caught:
        loads(data)
    assert caught.value.kind == "encoding"


@pytest.mark.parametrize(
    ("data", "value"),
    [
        (b'"\\ud83d\\ude00"', "\U0001f600"),  # an escaped pair is one whole character
        (b'"\\\\ud800"', "\\ud800"),  # an escaped backslash, then plain text
        ('"\U0001f600"'.encode(), "\U0001f600"),
    ],
)
def test_whole_characters_cross(data, value):
    assert loads(data)[0] == value


@pytest.mark.parametrize(
    "data",
    [b'"\xed\xa0\x80"', b'"\xff"', b"NaN", b"[-Infinity]", b"1e400", b"9" * 5000, b"[1,"],
)
def test_anything_but_strict_utf8_json_is_refused(data):
    with pytest.raises(WireError):
        loads(data)


def test_dumps_refuses_lone_surrogates_and_names_them():
    with pytest.raises(WireError, match=r"lone surrogate \('\\udc80'\)") as caught:
        dumps({"text": "ok \udc80"}, what="return value")
    assert caught.value.kind == "encoding" and "return value" in str(caught.value)
    assert dumps({"t": "\u00e9\U0001f600"}) == '{"t":"\u00e9\U0001f600"}'.encode()
    with pytest.raises(WireError, match="too deeply") as deep:
        nested: list[object] = []
        for _ in range(100_000):
            nested = [nested]
        dumps(nested)
    assert deep.value.kind == "depth"


def test_frame_reader_refuses_a_frame_by_its_header():
    reader = FrameReader()
    reader.feed(struct.pack(">I", 7) + b'{"a":')
    assert reader.next_payload(cap=10) is None  # incomplete
    reader.feed(b"1}" + struct.pack(">I", 1 << 30))
    assert reader.next_payload(cap=10) == b'{"a":1}'
    with pytest.raises(WireError, match="over the 10-byte cap"):
        reader.next_payload(cap=10)  # refused before a byte of its payload arrived


def test_tool_runner_reuses_threads_and_grows_past_a_stuck_one():
    runner = ToolRunner(max_idle=1)
    release = threading.Event()
    try:
        stuck = runner.submit(lambda: release.wait(30))
        assert not stuck.wait(0.01)
        names = [runner.submit(lambda: threading.current_thread().ident) for _ in range(3)]
        idents = set()
        for task in names:
            assert task.wait(5)
            idents.add(task.result())
        assert threading.get_ident() not in idents
        release.set()
        assert stuck.wait(5) and stuck.result() is True
    finally:
        release.set()
        runner.close()


def test_tool_runner_hands_exceptions_back():
    runner = ToolRunner()
    try:
        task = runner.submit(lambda: 1 / 0)
        assert task.wait(5)
        with pytest.raises(ZeroDivisionError):
            task.result()
    finally:
        runner.close()
