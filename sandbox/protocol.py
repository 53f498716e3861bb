"""The wire format between host and worker: length-prefixed JSON frames.

Each frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON (always
ASCII in practice: both sides encode with ``ensure_ascii=True``, so lone surrogates in
strings survive). Only JSON crosses the pipe; nothing is ever pickled.

Messages (host -> worker, then worker -> host):

- ``{"op": "run", "source", "entry", "args", "tools": [names], "limits": {...}}``
- ``{"op": "tool", "name", "arguments"}`` -- the worker blocks until the host answers with
  ``{"op": "tool_result", "ok": true, "value"}`` or
  ``{"op": "tool_result", "ok": false, "error": message, "error_type": "ToolError"}``
  (``error_type`` may also be ``"ToolNotAllowed"`` or ``"ResourceLimitExceeded"``)
- ``{"op": "done", "ok", "value", "error": {...} | null, "output"}``
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any, Final

__all__ = [
    "HEADER",
    "decode_payload",
    "encode_frame",
    "encode_raw_frame",
    "read_frame",
    "write_all",
]

HEADER: Final = struct.Struct(">I")


def encode_frame(message: dict[str, Any]) -> bytes:
    """Serialise ``message`` as one frame.

    Raises:
        TypeError, ValueError: The message is not JSON-serialisable (NaN included).
    """
    return encode_raw_frame(json.dumps(message, allow_nan=False, separators=(",", ":")))


def encode_raw_frame(payload: str) -> bytes:
    """Frame an already-serialised JSON text."""
    data = (
        payload.encode("ascii") if payload.isascii() else payload.encode("utf-8", "surrogatepass")
    )
    return HEADER.pack(len(data)) + data


def decode_payload(data: bytes) -> dict[str, Any]:
    """Parse a frame's payload; it must be a JSON object.

    Raises:
        ValueError: The payload is not a JSON object.
    """
    message = json.loads(data.decode("utf-8", "surrogatepass"))
    if not isinstance(message, dict):
        raise ValueError(f"frame payload must be a JSON object, got {type(message).__name__}")
    return message


def _read_exactly(fd: int, size: int) -> bytes:
    chunks: list[bytes] = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            raise EOFError("pipe closed in the middle of a frame" if chunks else "pipe closed")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int) -> dict[str, Any]:
    """Read one frame from a blocking file descriptor (the worker side).

    Raises:
        EOFError: The other end closed the pipe.
        ValueError: The frame is not a JSON object.
    """
    (size,) = HEADER.unpack(_read_exactly(fd, HEADER.size))
    return decode_payload(_read_exactly(fd, size))


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to a blocking file descriptor."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
