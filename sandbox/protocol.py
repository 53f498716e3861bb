"""The wire format between host and worker: length-prefixed, bounded, UTF-8 JSON frames.

Each frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON. Only JSON
crosses the pipe; nothing is ever pickled.

Messages (host -> worker, then worker -> host):

- ``{"op": "run", "source", "entry", "args", "tools": [names], "limits": {...}}``
- ``{"op": "tool", "name", "arguments"}`` -- the worker blocks until the host answers with
  ``{"op": "tool_result", "ok": true, "value", "io"}`` or
  ``{"op": "tool_result", "ok": false, "error": message, "error_type": "ToolError", "io"}``
  (``error_type`` may also be ``"ToolNotAllowed"`` or ``"ResourceLimitExceeded"``; ``io`` is
  the tool traffic the host has counted so far, so both sides apply ``Limits.tool_io_bytes``
  to the same figure)
- ``{"op": "done", "ok", "value", "error": {...} | null, "output"}``

**Bounded decoding.** Neither side trusts the other's JSON, so every payload is checked
*before* ``json.loads`` sees it, by :func:`measure` (a scan of the raw bytes that runs in C:
``bytes.replace``/``translate`` and one regular expression, with no Python loop over
characters):

- the length, from the frame header, before the payload is even read (:class:`FrameReader`);
- the nesting depth of arrays and objects (at most :data:`MAX_DEPTH`), so no decoder, encoder
  or later walk of the value can run out of stack;
- the number of arrays and objects, each counted as :data:`CONTAINER_COST` bytes (roughly
  what one costs once decoded), so a payload of ``[[],[],...]`` cannot grow the reader's
  memory thirty times its size;
- Unicode: the bytes must be UTF-8 and no ``\\uXXXX`` escape may stand for a lone surrogate,
  which no UTF-8 text can hold. Senders encode with :func:`dumps`, which refuses such strings
  with a :class:`WireError` naming the character;
- strict JSON: ``NaN``, ``Infinity`` and numbers that overflow a float are refused, as are
  integers past Python's digit limit.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, Final, Literal

__all__ = [
    "CONTAINER_COST",
    "FRAME_OUTER",
    "HEADER",
    "MAX_DEPTH",
    "FrameReader",
    "Shape",
    "WireError",
    "check",
    "decode_payload",
    "depth_of",
    "dumps",
    "encode_frame",
    "encode_raw_frame",
    "encode_text",
    "loads",
    "measure",
    "read_frame",
    "write_all",
]

HEADER: Final = struct.Struct(">I")

#: Deepest nesting of arrays and objects any payload may have. Real tool data rarely goes past
#: 20 levels; the bound keeps every recursive encoder, decoder and walk far from the stack limit.
MAX_DEPTH: Final = 100

#: Wrapping levels of a frame that do not count toward :data:`MAX_DEPTH`: the message object
#: and the arguments mapping around the values.
FRAME_OUTER: Final = 2

#: Bytes one array or object counts for in a size budget (about its decoded size in CPython).
CONTAINER_COST: Final = 64

WireKind = Literal["size", "depth", "encoding", "syntax"]


class WireError(ValueError):
    """A payload the wire refuses: too big, nested too deeply, not UTF-8, or not JSON.

    Attributes:
        kind: ``"size"``, ``"depth"``, ``"encoding"`` or ``"syntax"``.
        message: What was wrong, for a person.
    """

    def __init__(self, kind: WireKind, message: str) -> None:
        super().__init__(kind, message)
        self.kind: WireKind = kind
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Shape:
    """What :func:`measure` found in a JSON payload."""

    #: Payload length in bytes.
    size: int
    #: Deepest nesting of arrays and objects (0 for a scalar).
    depth: int
    #: Number of arrays and objects.
    containers: int

    @property
    def cost(self) -> int:
        """The payload's weight in a size budget: its bytes plus each container's cost."""
        return self.size + CONTAINER_COST * self.containers


# Brackets of both kinds become "(" and ")"; every byte but those and the quote is deleted.
_TO_PARENS: Final = bytes.maketrans(b"[]{}", b"()()")
_NOT_STRUCTURE: Final = bytes(b for b in range(256) if b not in b'"[]{}')
# A string whose body still holds brackets (strings without any collapse to `""` first).
_STRING: Final = re.compile(rb'"[^"]*"')
_DELTA: Final = tuple(1 if b == ord("(") else -1 if b == ord(")") else 0 for b in range(256))
# A \uXXXX escape of a surrogate, and of one that is not half of a pair.
_SURROGATE_ESCAPE: Final = re.compile(rb"\\u[dD][89a-fA-F]")
_LONE_SURROGATE: Final = re.compile(
    rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    rb"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)
# Digits become "0", exponent letters "e", the plus sign stays, anything else is a space: what
# json.loads would turn into an infinity then shows as "e000", "e+000" or 300 zeros in a row
# (a false alarm, say "e123" inside a string, only costs a slower parse).
_NUMBER_SHAPE: Final = bytes(
    ord("0") if 48 <= b <= 57 else ord("e") if b in b"eE" else b if b == ord("+") else 32
    for b in range(256)
)
_LONGEST_FINITE_DIGITS: Final = b"0" * 300
# Leaf passes before the exact scan: most documents (lists of records) collapse in a few.
_LEAF_PASSES: Final = 4


def measure(data: bytes) -> Shape:
    """Measure a JSON payload's nesting depth and container count without decoding it.

    Escaped backslashes and escaped quotes are dropped, every byte but quotes and brackets
    is deleted, and strings (now runs of brackets between quotes) are removed; what is left
    is the bracket skeleton of the document, measured with C-level iteration only. The bytes
    are not validated as JSON here: ``json.loads`` still rejects malformed text afterwards.

    Raises:
        WireError: ``kind="encoding"`` for an escape of a lone surrogate; ``kind="syntax"``
            for an unterminated string.
    """
    return check(data, max_depth=None)


def check(
    data: bytes,
    *,
    max_depth: int | None = MAX_DEPTH,
    max_cost: int | None = None,
    outer: int = 0,
    what: str = "payload",
) -> Shape:
    """:func:`measure` ``data``, refusing it if it weighs more than ``max_cost`` or nests deeper
    than ``max_depth`` (the weight is checked first: it bounds the work of the depth scan).

    ``outer`` is the number of wrapping levels that do not count: 2 for a frame (the message
    object and the arguments mapping around the values), 1 for a mapping of arguments.

    Raises:
        WireError: ``kind="size"``, ``"depth"``, ``"encoding"`` or ``"syntax"``.
    """
    size = len(data)
    if max_cost is not None and size > max_cost:
        raise _too_heavy(what, Shape(size, 0, 0), max_cost)
    # Escapes start at the first backslash of a run, so dropping backslash pairs left to
    # right leaves exactly the backslashes that begin an escape.
    unescaped = data.replace(b"\\\\", b"") if b"\\" in data else data
    if b"\\u" in unescaped and _SURROGATE_ESCAPE.search(unescaped):
        lone = _LONE_SURROGATE.search(unescaped)
        if lone is not None:
            raise WireError(
                "encoding",
                f"the {what} escapes a lone surrogate ({lone.group().decode()}), which no "
                "UTF-8 text can hold; send text made of whole characters",
            )
    if b"[" not in data and b"{" not in data:
        return Shape(size, 0, 0)
    if b'\\"' in unescaped:
        unescaped = unescaped.replace(b'\\"', b"")
    # Adjacent quotes pair up either as an empty string or as the end of one string and the
    # start of the next with no bracket between; dropping them moves no bracket in or out.
    skeleton = unescaped.translate(_TO_PARENS, _NOT_STRUCTURE).replace(b'""', b"")
    if b'"' in skeleton:
        skeleton = _STRING.sub(b"", skeleton)
        if b'"' in skeleton:
            raise WireError("syntax", f"the {what} has an unterminated string")
    shape = Shape(size, 0, skeleton.count(b"("))
    if max_cost is not None and shape.cost > max_cost:
        raise _too_heavy(what, shape, max_cost)
    depth = 0
    while skeleton and depth < _LEAF_PASSES:
        # Leaves ("()") never overlap, so one replace removes exactly the deepest level.
        shorter = skeleton.replace(b"()", b"")
        if len(shorter) == len(skeleton):
            break  # unbalanced brackets: json.loads will say where
        skeleton, depth = shorter, depth + 1
    if skeleton:
        depth += max(0, max(accumulate(map(_DELTA.__getitem__, skeleton))))
    shape = Shape(size, depth, shape.containers)
    if max_depth is not None and depth - outer > max_depth:
        raise WireError(
            "depth",
            f"arrays and objects in the {what} are nested {depth - outer} levels deep, more "
            f"than the {max_depth} the sandbox carries; flatten the data",
        )
    return shape


def _too_heavy(what: str, shape: Shape, max_cost: int) -> WireError:
    detail = (
        f"{shape.size} bytes of JSON and {shape.containers} arrays and objects at "
        f"{CONTAINER_COST} bytes each"
        if shape.containers
        else f"{shape.size} bytes of JSON"
    )
    return WireError(
        "size", f"the {what} weighs {shape.cost} bytes ({detail}), more than the {max_cost} left"
    )


def loads(
    data: bytes,
    *,
    max_depth: int = MAX_DEPTH,
    max_cost: int | None = None,
    outer: int = 0,
    what: str = "payload",
) -> tuple[Any, Shape]:
    """Check, then decode a UTF-8 JSON payload; return the value and its :class:`Shape`.

    Raises:
        WireError: The payload is refused (see :func:`check`), is not UTF-8 or not JSON.
    """
    shape = check(data, max_depth=max_depth, max_cost=max_cost, outer=outer, what=what)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WireError("encoding", f"the {what} is not UTF-8 ({exc})") from None
    try:
        if not _may_be_non_finite(data):
            return json.loads(text), shape
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite), shape
    except RecursionError:  # the caller's own stack was already deep
        raise WireError("depth", f"the {what} is nested too deeply to decode here") from None
    except ValueError as exc:  # JSONDecodeError, a number past int's digit limit, inf, NaN
        raise WireError("syntax", f"the {what} is not strict JSON ({exc})") from None


def _may_be_non_finite(data: bytes) -> bool:
    if b"NaN" in data or b"Infinity" in data:
        return True
    shape = data.translate(_NUMBER_SHAPE)
    return b"e000" in shape or b"e+000" in shape or _LONGEST_FINITE_DIGITS in shape


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} overflows a float")
    return value


def dumps(value: object, *, what: str = "value") -> bytes:
    """Encode ``value`` as compact UTF-8 JSON (NaN and infinities refused).

    Raises:
        WireError: ``kind="encoding"``: a string holds a lone surrogate; ``kind="depth"``:
            the value nests too deeply for the encoder.
        TypeError, ValueError: The value is not JSON data (``json.dumps``'s own errors).
    """
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except RecursionError:
        raise WireError(
            "depth", f"the {what} nests arrays and objects too deeply to encode; flatten it"
        ) from None
    return encode_text(text, what)


def encode_text(text: str, what: str = "value") -> bytes:
    """``text`` as UTF-8, or a :class:`WireError` naming the first lone surrogate in it."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        char = exc.object[exc.start]
        raise WireError(
            "encoding",
            f"the {what} holds a string with a lone surrogate ({char!r}), which cannot be "
            "encoded as UTF-8; send text made of whole characters (e.g. decode bytes with "
            "errors='replace')",
        ) from None


def encode_frame(message: dict[str, Any]) -> bytes:
    """Serialise ``message`` as one frame.

    Raises:
        WireError: A string holds a lone surrogate, or the message nests too deeply.
        TypeError, ValueError: The message is not JSON-serialisable (NaN included).
    """
    data = dumps(message, what="message")
    return HEADER.pack(len(data)) + data


def encode_raw_frame(payload: str) -> bytes:
    """Frame an already-serialised JSON text.

    Raises:
        WireError: The text holds a lone surrogate.
    """
    data = encode_text(payload, "message")
    return HEADER.pack(len(data)) + data


def decode_payload(data: bytes, *, max_cost: int | None = None) -> dict[str, Any]:
    """Check and parse a frame's payload; it must be a JSON object.

    Raises:
        WireError: The payload is refused (too deep, too heavy, not UTF-8, not JSON).
        ValueError: The payload is not a JSON object.
    """
    message, _ = loads(data, max_cost=max_cost, outer=FRAME_OUTER, what="frame")
    if not isinstance(message, dict):
        raise WireError(
            "syntax", f"frame payload must be a JSON object, got {type(message).__name__}"
        )
    return message


class FrameReader:
    """Splits a byte stream into frame payloads, refusing an oversized frame by its header.

    Sans I/O: feed it what the pipe gave, then take complete payloads out. The cap is given
    per call of :meth:`next_payload`, so it can follow a budget that shrinks during a call; a
    frame over it is refused as soon as its 4-byte header is in, before its payload is read.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> None:
        """Append bytes read from the pipe."""
        self._buffer += chunk

    def next_payload(self, cap: int) -> bytes | None:
        """The next complete payload, or None if more bytes are needed.

        Raises:
            WireError: ``kind="size"``: the next frame is longer than ``cap`` bytes.
        """
        buffer = self._buffer
        if len(buffer) < HEADER.size:
            return None
        (size,) = HEADER.unpack_from(buffer)
        if size > cap:
            raise WireError("size", f"a {size}-byte frame is over the {cap}-byte cap")
        end = HEADER.size + size
        if len(buffer) < end:
            return None
        payload = bytes(buffer[HEADER.size : end])
        del buffer[:end]
        return payload

    def clear(self) -> None:
        """Drop buffered bytes (after a call was abandoned half-way)."""
        self._buffer.clear()


#: Bytes :func:`read_frame` asks for first (a larger buffer costs page faults per read).
_FIRST_READ: Final = 4096


def _read_exactly(fd: int, size: int, head: bytes = b"") -> bytes:
    """``head`` followed by exactly ``size`` more bytes read from ``fd``."""
    chunks: list[bytes] = [head] if head else []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            raise EOFError("pipe closed in the middle of a frame" if chunks else "pipe closed")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, *, checked: bool = True) -> dict[str, Any]:
    """Read one frame from a blocking file descriptor (the worker side).

    Args:
        fd: The pipe.
        checked: Run :func:`check` before decoding. The worker passes False for the host's
            frames: the host checked what it sends, and only the worker's own stack is at
            stake there.

    Raises:
        EOFError: The other end closed the pipe.
        ValueError: The frame is refused or not a JSON object (a :class:`WireError`).
    """
    # Header and payload in one read when the frame is small (most requests, every tool
    # result of a few KiB): one system call less on the call's path. The protocol has at
    # most one frame in flight toward a reader, so a first read never holds a second frame.
    first = os.read(fd, _FIRST_READ)
    if not first:
        raise EOFError("pipe closed")
    if len(first) < HEADER.size:
        first = _read_exactly(fd, HEADER.size - len(first), first)
    (size,) = HEADER.unpack_from(first)
    payload = first[HEADER.size :]
    if len(payload) > size:
        raise WireError("syntax", "the pipe held more than one frame; the peer broke the protocol")
    if len(payload) < size:  # joined once: a large payload is not copied twice
        payload = _read_exactly(fd, size - len(payload), payload)
    if checked:
        return decode_payload(payload)
    message = json.loads(payload)
    if not isinstance(message, dict):
        raise WireError("syntax", f"frame payload must be a JSON object, got {type(message)}")
    return message


def depth_of(value: object, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of the lists and dicts in a Python value, counting no further than
    ``limit + 1`` (for data the host builds itself; strings cost nothing, unlike a byte scan).
    """
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (list, tuple, dict)):
            level += 1
            if level > deepest:
                deepest = level
                if deepest > limit:
                    return deepest
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level) for child in children)
    return deepest


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to a blocking file descriptor."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
