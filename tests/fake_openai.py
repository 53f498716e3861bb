"""A scripted OpenAI-compatible server on loopback, for tests that use the real ``openai`` client.

`FakeOpenAI` is a real HTTP server (``http.server.ThreadingHTTPServer`` on ``127.0.0.1``, an
ephemeral port, a background thread) that speaks enough of the Chat Completions API for the
official SDK: ``POST /v1/chat/completions`` (also ``/chat/completions``), with or without
``stream``, and ``GET /v1/models``. It never touches the network beyond loopback.

Replies are scripted: each request takes the next one from a queue. A reply is

- a ``str``: the assistant's text (``finish_reason="stop"``);
- a list of `ToolCall` (or ``{"name": ..., "arguments": {...}}`` dicts): the assistant asks for
  tool calls, rendered with JSON-string arguments and ids ``call_1``, ``call_2``, ...
  (``finish_reason="tool_calls"``);
- a `Message`: text and/or tool calls with an explicit finish reason;
- an `HTTPError`: an error status (500, 429, ...) with an OpenAI-style error body;
- a `Delay`: another reply, sent after a pause (to test client timeouts);
- a callable taking the request's JSON body and returning any of the above.

Every request body is recorded (`FakeOpenAI.requests` for chat completions, `FakeOpenAI.log`
for everything), so tests can assert on prompts. A request with no scripted reply left gets a
500 and is noted in `FakeOpenAI.problems`; the `fake_openai` fixture fails the test if any
problem was noted.

Example::

    with FakeOpenAI(["hello", [ToolCall("get_weather", {"city": "Oslo"})]]) as server:
        client = openai.OpenAI(base_url=server.url, api_key="test", max_retries=0)
        reply = client.chat.completions.create(model="m", messages=[...])
        assert reply.choices[0].message.content == "hello"
        assert server.requests[0]["messages"] == [...]
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeAlias

import pytest

__all__ = [
    "Delay",
    "FakeOpenAI",
    "HTTPError",
    "Message",
    "RecordedRequest",
    "Reply",
    "ToolCall",
    "fake_openai",
]

JSON = Any


@dataclass(frozen=True)
class ToolCall:
    """One tool call the scripted assistant asks for."""

    #: The function name.
    name: str
    #: The arguments (sent to the client as a JSON string, as the real API does); a ``str``
    #: is sent verbatim, to script a model that writes broken JSON.
    arguments: Mapping[str, JSON] | str = field(default_factory=dict)
    #: The call id; ``None`` numbers calls ``call_1``, ``call_2``, ... over the server's life.
    id: str | None = None


@dataclass(frozen=True)
class Message:
    """A full assistant message: text and/or tool calls, and the finish reason."""

    #: The text (``None`` for a pure tool-call message).
    content: str | None = None
    #: Tool calls, in order.
    tool_calls: Sequence[ToolCall] = ()
    #: ``None`` picks ``"tool_calls"`` when there are tool calls, else ``"stop"``.
    finish_reason: str | None = None


@dataclass(frozen=True)
class HTTPError:
    """An error response with an OpenAI-style body ``{"error": {...}}``."""

    #: The HTTP status, e.g. 500 or 429.
    status: int
    #: The error message.
    message: str = "scripted error"
    #: The error type, e.g. ``"server_error"``; ``None`` picks one from the status.
    type: str | None = None
    #: The error code, e.g. ``"rate_limit_exceeded"``.
    code: str | None = None
    #: Extra response headers, e.g. ``{"retry-after": "0"}``.
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Delay:
    """Send ``reply`` after ``seconds`` (a client with a shorter timeout gives up first)."""

    #: How long to wait before answering.
    seconds: float
    #: What to answer then.
    reply: Reply = ""


#: Anything a script may hold.
Reply: TypeAlias = (
    "str | Message | HTTPError | Delay | Sequence[ToolCall | Mapping[str, JSON]] "
    "| Callable[[JSON], Reply]"
)


@dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request the server received."""

    #: ``GET`` or ``POST``.
    method: str
    #: The request path, e.g. ``/v1/chat/completions``.
    path: str
    #: The request headers (lower-cased names).
    headers: Mapping[str, str]
    #: The decoded JSON body (``None`` for a GET or a body that was not JSON).
    body: JSON


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}


class FakeOpenAI:
    """A Chat Completions server on ``127.0.0.1`` that answers from a script.

    Args:
        replies: The initial script, answered in order (more can be added with `add`).
        models: The model ids ``GET /v1/models`` lists.
    """

    def __init__(self, replies: Iterable[Reply] = (), *, models: Sequence[str] = ("fake-model",)):
        self.models = tuple(models)
        #: Bodies of the chat completion requests, in arrival order.
        self.requests: list[JSON] = []
        #: Every request, in arrival order.
        self.log: list[RecordedRequest] = []
        #: Things that went wrong on the server side (no reply left, a script callable raised).
        self.problems: list[str] = []
        self._script: deque[Reply] = deque(replies)
        self._lock = threading.Lock()
        self._call_ids = 0
        self._completions = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL to give the client, e.g. ``http://127.0.0.1:54321/v1``."""
        if self._server is None:
            raise RuntimeError("the fake server is not running; use it as a context manager")
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> FakeOpenAI:
        """Start serving in a background thread (idempotent)."""
        if self._server is None:
            server = _Server(("127.0.0.1", 0), _handler_for(self))
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.01},  # shutdown() waits up to one interval
                name="fake-openai",
                daemon=True,
            )
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop the server and free its port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._server = self._thread = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- scripting ----------------------------------------------------------------------

    def add(self, *replies: Reply) -> FakeOpenAI:
        """Append replies to the script."""
        with self._lock:
            self._script.extend(replies)
        return self

    @property
    def pending(self) -> int:
        """Scripted replies not yet used."""
        with self._lock:
            return len(self._script)

    def messages(self, n: int = -1) -> list[JSON]:
        """The ``messages`` of the ``n``-th chat completion request (default: the last)."""
        return list(self.requests[n]["messages"])

    def _next_reply(self, body: JSON) -> Reply | None:
        with self._lock:
            self.requests.append(body)
            if not self._script:
                self.problems.append(
                    f"request {len(self.requests)} arrived but the script has no reply left"
                )
                return None
            return self._script.popleft()

    def _resolve(self, reply: Reply, body: JSON) -> Reply:
        # A callable may return any reply, including another callable or a delay.
        while True:
            if isinstance(reply, Delay):
                time.sleep(reply.seconds)
                reply = reply.reply
            elif callable(reply) and not isinstance(reply, (str, Message, HTTPError)):
                reply = reply(body)
            else:
                return reply

    # --- rendering ----------------------------------------------------------------------

    def _message(self, reply: Reply) -> Message:
        if isinstance(reply, Message):
            return reply
        if isinstance(reply, str):
            return Message(content=reply)
        if isinstance(reply, (list, tuple)):
            calls = [
                c if isinstance(c, ToolCall) else ToolCall(str(c["name"]), c.get("arguments", {}))
                for c in reply
            ]
            return Message(tool_calls=tuple(calls))
        raise TypeError(f"cannot render {reply!r} as an assistant message")

    def _tool_calls(self, calls: Sequence[ToolCall]) -> list[JSON]:
        rendered = []
        with self._lock:
            for call in calls:
                if call.id is None:
                    self._call_ids += 1
                rendered.append(
                    {
                        "id": call.id or f"call_{self._call_ids}",
                        "type": "function",
                        "function": {
                            "name": call.name,
                            "arguments": call.arguments
                            if isinstance(call.arguments, str)
                            else json.dumps(dict(call.arguments), ensure_ascii=False),
                        },
                    }
                )
        return rendered

    def completion(self, message: Message, model: str) -> tuple[JSON, list[JSON]]:
        """The ``chat.completion`` object for ``message``, and its rendered tool calls."""
        with self._lock:
            self._completions += 1
            number = self._completions
        tool_calls = self._tool_calls(message.tool_calls)
        finish = message.finish_reason or ("tool_calls" if tool_calls else "stop")
        out: dict[str, JSON] = {"role": "assistant", "content": message.content}
        if tool_calls:
            out["tool_calls"] = tool_calls
        completion_tokens = len((message.content or "").split()) + 8 * len(tool_calls)
        return (
            {
                "id": f"chatcmpl-fake-{number}",
                "object": "chat.completion",
                "created": 1_700_000_000 + number,
                "model": model,
                "choices": [
                    {"index": 0, "message": out, "finish_reason": finish, "logprobs": None}
                ],
                "usage": {
                    "prompt_tokens": 10,
                    "completion_tokens": completion_tokens,
                    "total_tokens": 10 + completion_tokens,
                },
            },
            tool_calls,
        )


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (a timeout test) closes its socket before a delayed reply is
        # written; that is expected, not worth a traceback on stderr.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


def _error_body(status: int, message: str, type_: str | None, code: str | None) -> JSON:
    kind = type_ or _ERROR_TYPES.get(status, "server_error" if status >= 500 else "api_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _handler_for(server: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "fake-openai/1"

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep test output clean

        def _record(self, body: JSON) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            with server._lock:
                server.log.append(RecordedRequest(self.command, self.path, headers, body))

        def _send_json(
            self, status: int, payload: JSON, headers: Mapping[str, str] | None = None
        ) -> None:
            data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def _send_error(self, status: int, message: str, code: str | None = None) -> None:
            self._send_json(status, _error_body(status, message, None, code))

        def do_GET(self) -> None:
            self._record(None)
            path = self.path.split("?", 1)[0].rstrip("/")
            if path in ("/v1/models", "/models"):
                data = [
                    {"id": m, "object": "model", "created": 0, "owned_by": "fake-openai"}
                    for m in server.models
                ]
                self._send_json(200, {"object": "list", "data": data})
            else:
                self._send_error(404, f"no route GET {self.path}", "unknown_url")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw or b"null")
            except ValueError:
                self._record(None)
                self._send_error(400, "the request body is not valid JSON")
                return
            self._record(body)
            path = self.path.split("?", 1)[0].rstrip("/")
            if path not in ("/v1/chat/completions", "/chat/completions"):
                self._send_error(404, f"no route POST {self.path}", "unknown_url")
                return
            if (
                not isinstance(body, dict)
                or not isinstance(body.get("model"), str)
                or not isinstance(body.get("messages"), list)
            ):
                self._send_error(400, "a chat completion needs 'model' and a 'messages' list")
                return
            reply = server._next_reply(body)
            if reply is None:
                self._send_error(500, "fake_openai: the script has no reply left")
                return
            try:
                reply = server._resolve(reply, body)
                if isinstance(reply, HTTPError):
                    payload = _error_body(reply.status, reply.message, reply.type, reply.code)
                    self._send_json(reply.status, payload, reply.headers)
                    return
                message = server._message(reply)
            except Exception as exc:  # a broken script must show up in the test, not hang it
                server.problems.append(f"the scripted reply raised {type(exc).__name__}: {exc}")
                self._send_error(500, f"fake_openai: the scripted reply raised {exc!r}")
                return
            completion, tool_calls = server.completion(message, body["model"])
            if body.get("stream"):
                self._stream(completion, message, tool_calls, body)
            else:
                self._send_json(200, completion)

        def _stream(
            self, completion: JSON, message: Message, tool_calls: list[JSON], body: JSON
        ) -> None:
            # Server-sent events: a role chunk, the content, each tool call, the finish reason.
            base = {k: completion[k] for k in ("id", "created", "model")}
            base["object"] = "chat.completion.chunk"

            def chunk(delta: JSON, finish: str | None = None) -> bytes:
                event = {
                    **base,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }
                return f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode()

            parts = [chunk({"role": "assistant", "content": ""})]
            if message.content:
                parts.append(chunk({"content": message.content}))
            for i, call in enumerate(tool_calls):
                parts.append(chunk({"tool_calls": [{"index": i, **call}]}))
            parts.append(chunk({}, completion["choices"][0]["finish_reason"]))
            if (body.get("stream_options") or {}).get("include_usage"):
                usage = {**base, "choices": [], "usage": completion["usage"]}
                parts.append(f"data: {json.dumps(usage)}\n\n".encode())
            parts.append(b"data: [DONE]\n\n")
            data = b"".join(parts)
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A running `FakeOpenAI` with an empty script; fails the test if the script broke.

    Use it from a test module with ``pytest_plugins = ["tests.fake_openai"]`` or by importing
    the fixture.
    """
    with FakeOpenAI() as server:
        yield server
    if server.problems:
        pytest.fail("fake OpenAI server: " + "; ".join(server.problems))
