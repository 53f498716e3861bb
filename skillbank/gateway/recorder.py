"""Recording what agents do through the gateway, as trajectories skillbank learns from.

Every call through the gateway becomes a `skillbank.trajectory.Step` (arguments; the result:
structured content when present, else the text, parsed when it is JSON; the error text when
the tool answered ``isError``), kept with the tool's definition. Calls are grouped into
trajectories by `TaskRecorder`, per MCP session:

- between ``skillbank_begin_task(task)`` and ``skillbank_end_task(success, note)``: one
  trajectory with that task and outcome;
- without them, the calls of one session, split where it was idle longer than the idle gap:
  one trajectory with no task text, successful when every failed call was later followed by a
  successful call of the same tool (a retry);
- a task left open (another begin, the session ending or going idle) is written with an
  unknown outcome (``"outcome": "unknown"`` under `RECORDED_KEY`, success false): it is kept
  for reading, never learned.

A skill called through the gateway is recorded as the upstream calls it made, so learning from
it adds evidence to the procedure itself.

`Recordings` is the folder (``<state_dir>/recordings/``, inside the bank's never-committed
state): one ``.json`` file per trajectory in the fine-tuning container
`skillbank.trajectory.load_trajectories` reads, created readable by the user only, the oldest
removed past a size cap (learned ones first), and a cursor (`Recordings.pending`,
`Recordings.mark_learned`) of what ``skillbank learn --recorded`` has learned.

`Redactor` keeps secrets out: the values of the upstream file's ``env`` and ``headers``, and
values that look like credentials (API keys, tokens, private keys, passwords in URLs, values
of keys named like ``password`` or ``api_key``, as JSON keys or written out in text such as
``api_key=...`` or a JSON string's ``"password": "..."``), are replaced by `REDACTED` in
everything written: arguments, results, errors, task text, notes and tool definitions.
"""

from __future__ import annotations

import json
import os
import re
import secrets as random
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from skillbank.errors import LibraryError
from skillbank.trajectory import Step

__all__ = [
    "IDLE_GAP_S",
    "MAX_BYTES",
    "RECORDED_KEY",
    "REDACTED",
    "Recordings",
    "Redactor",
    "TaskRecorder",
    "retried",
]

JSON = Any
Outcome = Literal["success", "failure", "unknown"]

#: What a secret is replaced with.
REDACTED = "[redacted]"
#: Seconds without a call after which a session's calls start a new trajectory.
IDLE_GAP_S = 600.0
#: The recordings folder's size cap in bytes; past it the oldest files are removed.
MAX_BYTES = 64 * 1024 * 1024
#: The key of a record holding how it was recorded: source, client, whether a task was given,
#: the outcome (``success``, ``failure`` or ``unknown``), start and end times.
RECORDED_KEY = "x-skillbank-recorded"
#: The task text of a trajectory recorded without ``skillbank_begin_task``.
NO_TASK = "(an MCP session recorded without a task)"
_CURSOR = "learned.txt"

# Values that are credentials whatever their key: API keys of well-known services, JWTs,
# private keys, bearer tokens, and the password in a URL's user info.
_CREDENTIALS = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----"
    r"|\b(?:sk|pk|rk)-(?:[A-Za-z0-9]+-)*[A-Za-z0-9_]{16,}"
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}|\bgithub_pat_[A-Za-z0-9_]{20,}|\bglpat-[A-Za-z0-9_-]{20,}"
    r"|\bxox[abprs]-[A-Za-z0-9-]{10,}|\bAKIA[0-9A-Z]{16}\b|\bAIza[0-9A-Za-z_-]{35}"
    r"|\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"
    r"|(?<=[Bb]earer )[A-Za-z0-9._~+/-]{16,}=*"
    r"|(?<=://)[^/\s:@]+:[^/\s@]+(?=@)",
    re.DOTALL,
)
# A key written out in text (``password=...``, ``"api_key": "..."``, ``Authorization: ...``,
# also JSON-escaped): the key and its separator only, so a key in the value is found too.
_KEY_IN_TEXT = re.compile(r"""\\?["']?([A-Za-z][\w-]*)\\?["']?[ \t]*[:=][ \t]*""")
# The value after such a key: quoted (plainly or JSON-escaped) up to its quote, or a word,
# with an auth scheme (``Bearer``, ``Basic``) before it.
_VALUE_IN_TEXT = re.compile(
    r"""\\"(?:[^"\\]|\\[^"])*\\"|"(?:[^"\\\n]|\\.)*"|'[^'\n]*'"""
    r"""|(?:(?:Bearer|Basic|Token|Digest)[ \t]+)?[^\s"',;&}\]]+""",
    re.IGNORECASE,
)
# Keys whose string values are secrets, compared without case, ``-`` or ``_``.
_SECRET_KEYS = frozenset(
    {
        "password", "passwd", "pwd", "secret", "clientsecret", "token", "accesstoken",
        "refreshtoken", "idtoken", "authtoken", "apikey", "apitoken", "authorization",
        "privatekey", "credential", "credentials", "cookie", "setcookie", "sessiontoken",
    }
)  # fmt: skip


class Redactor:
    """Replaces secrets in recorded values by `REDACTED`.

    Args:
        secrets: Exact values to remove wherever they occur (the upstream file's ``env`` and
            ``headers`` values).
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        #: The exact values removed, longest first (so a secret holding another goes whole).
        self.secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

    def text(self, text: str) -> str:
        """``text`` with every secret and credential-like value replaced."""
        # Again until none is left: a replacement can complete a secret with the text
        # around it (each pass shortens what is left of the secrets, so this ends).
        for _ in range(len(text) + 1):
            found = [s for s in self.secrets if s in text and s not in REDACTED]
            if not found:
                break
            for secret in found:
                text = text.replace(secret, REDACTED)
        return _CREDENTIALS.sub(REDACTED, _redact_keyed(text))

    def value(self, value: JSON, key: str | None = None) -> JSON:
        """A JSON value with secrets replaced, also in keys; the string value of a key named
        like a secret (``password``, ``api_key``) is replaced whole."""
        if isinstance(value, str):
            if key is not None and _secret_key(key) and value:
                return REDACTED
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.text(str(k)): self.value(v, str(k)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(v) for v in value]
        return value


def _secret_key(key: str) -> bool:
    return re.sub(r"[-_\s]", "", key).lower() in _SECRET_KEYS


def _redact_keyed(text: str) -> str:
    """``text`` with the value after each key named like a secret replaced: a JSON object or
    a ``key=value`` pair inside a string argument or a text result."""
    out: list[str] = []
    pos = 0
    for key in _KEY_IN_TEXT.finditer(text):
        if key.start() < pos or not _secret_key(key.group(1)):
            continue
        if text.startswith(REDACTED, key.end()):
            continue
        value = _VALUE_IN_TEXT.match(text, key.end())
        if value is None:
            continue
        found = value.group()
        if not found.strip("\\\"'"):
            continue  # an empty value holds no secret
        quote = found[: found.index(found[-1]) + 1] if found[-1] in "\"'" else ""
        out += [text[pos : key.end()], quote, REDACTED, quote]
        pos = value.end()
    return "".join([*out, text[pos:]])


def retried(steps: Sequence[Step]) -> bool:
    """Whether every failed call was followed, later, by a successful call of the same tool."""
    for i, step in enumerate(steps):
        if step.error is not None and not any(
            s.tool == step.tool and s.error is None for s in steps[i + 1 :]
        ):
            return False
    return True


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Recordings:
    """The recordings folder: one trajectory per file, size-capped, with a learning cursor.

    Args:
        folder: Where the files go (created readable by the user only).
        max_bytes: The folder's size cap; past it, the oldest files are removed (those already
            learned first).
    """

    def __init__(self, folder: str | Path, *, max_bytes: int = MAX_BYTES) -> None:
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()

    def _make_folder(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.folder.chmod(0o700)
            ignore = self.folder / ".gitignore"
            if not ignore.exists():  # never committed, even outside a bank's state folder
                ignore.write_text("# recordings of skillbank serve: never committed\n*\n")
        except OSError as exc:
            raise LibraryError(
                f"cannot create the recordings folder {self.folder}: {exc}"
            ) from None

    def write(self, record: Mapping[str, JSON]) -> Path:
        """Write one record as ``<time>-<id>.json`` (mode 0600); then keep under the cap.

        Raises:
            LibraryError: the folder or the file cannot be written.
        """
        text = json.dumps(record, ensure_ascii=False, sort_keys=True, indent=1) + "\n"
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        path = self.folder / f"{stamp}-{record.get('id', random.token_hex(4))}.json"
        with self._lock:
            self._make_folder()
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(text)
            except OSError as exc:
                raise LibraryError(f"cannot write the recording {path}: {exc}") from None
            self._rotate(keep=path)
        return path

    def files(self) -> list[Path]:
        """Every recording, oldest first."""
        if not self.folder.is_dir():
            return []
        return sorted(self.folder.glob("*.json"))

    def learned(self) -> set[str]:
        """The names of the files already learned (the cursor)."""
        try:
            return set((self.folder / _CURSOR).read_text(encoding="utf-8").split())
        except OSError:
            return set()

    def pending(self) -> list[Path]:
        """The recordings not learned yet, oldest first."""
        done = self.learned()
        return [p for p in self.files() if p.name not in done]

    def mark_learned(self, paths: Iterable[Path]) -> None:
        """Move the cursor past ``paths`` (names of removed files are forgotten)."""
        with self._lock:
            self._make_folder()
            present = {p.name for p in self.files()}
            names = sorted((self.learned() | {Path(p).name for p in paths}) & present)
            cursor = self.folder / _CURSOR
            fd = os.open(cursor, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write("".join(f"{n}\n" for n in names))

    def _rotate(self, keep: Path) -> None:
        files = [p for p in self.files() if p != keep]
        sizes = {p: p.stat().st_size for p in files}
        total = sum(sizes.values()) + keep.stat().st_size
        if total <= self.max_bytes:
            return
        done = self.learned()
        # Learned files go first, then the oldest of the rest; the newest is always kept.
        for path in sorted(files, key=lambda p: (p.name not in done, p.name)):
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= sizes[path]


@dataclass(eq=False)
class _Session:
    """What one MCP session has done since its last trajectory was written."""

    client: str
    steps: list[Step] = field(default_factory=list)
    tools: dict[str, dict[str, JSON]] = field(default_factory=dict)
    task: str | None = None
    started: str = field(default_factory=_now)
    last: float = field(default_factory=time.monotonic)


class TaskRecorder:
    """Groups the calls of MCP sessions into trajectories and writes them (thread-safe).

    Args:
        store: Where trajectories are written.
        redactor: What removes secrets before anything is written.
        idle_gap_s: Seconds without a call that end a session's trajectory.
    """

    def __init__(
        self, store: Recordings, redactor: Redactor, *, idle_gap_s: float = IDLE_GAP_S
    ) -> None:
        self.store = store
        self.redactor = redactor
        self.idle_gap_s = idle_gap_s
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()

    def _session(self, key: str, client: str) -> tuple[_Session, list[dict[str, JSON] | None]]:
        """The session's state, after closing what went idle (returns the records to write)."""
        written: list[dict[str, JSON] | None] = []
        session = self._sessions.get(key)
        if session is not None and time.monotonic() - session.last > self.idle_gap_s:
            written.append(self._close(session, "the session went idle with the task open"))
            session = None
        if session is None:
            session = self._sessions[key] = _Session(client)
        session.last = time.monotonic()
        return session, written

    def record(
        self,
        key: str,
        client: str,
        tool: Mapping[str, JSON],
        arguments: Mapping[str, JSON],
        result: JSON,
        error: str | None,
    ) -> list[Path]:
        """Record one call of the session ``key`` (``tool`` is its definition, in the Chat
        Completions shape); return the files written (a trajectory closed by an idle gap)."""
        name = str(tool["function"]["name"])
        with self._lock:
            session, records = self._session(key, client)
            session.tools.setdefault(name, dict(tool))
            call_id = f"call_{len(session.steps) + 1}"
            step = Step(name, dict(arguments), None if error else result, error, call_id)
            session.steps.append(step)
        return [self.store.write(r) for r in records if r]

    def begin(self, key: str, client: str, task: str) -> tuple[str, list[Path]]:
        """Start a task for the session; an open one is closed as unknown, calls made
        outside a task are written as a session trajectory. Returns a message and the files
        written."""
        with self._lock:
            session, records = self._session(key, client)
            note = ""
            if session.task is not None:
                note = f" The open task {session.task!r} was closed with an unknown outcome."
                records.append(self._close(session, "a new task began while it was open"))
            elif session.steps:
                records.append(self._close(session, ""))
            fresh = self._sessions[key] = _Session(client)
            fresh.task = task
        paths = [self.store.write(r) for r in records if r]
        return f"Recording the task {task!r}.{note}", paths

    def end(self, key: str, client: str, success: bool, note: str | None) -> tuple[str, list[Path]]:
        """End the session's task with its outcome; return a message and the file written
        (none when no task was open, or it made no calls)."""
        with self._lock:
            session = self._sessions.get(key)
            if session is None or session.task is None:
                return "No task was open (call skillbank_begin_task first); nothing ended.", []
            record = self._record_of(session, "success" if success else "failure", note)
            self._sessions[key] = _Session(client)
        if record is None:
            return (
                f"Ended the task {session.task!r}; it made no tool calls, so nothing was recorded.",
                [],
            )
        path = self.store.write(record)
        return f"Ended the task {session.task!r} ({'success' if success else 'failure'}).", [path]

    def close(self, key: str) -> list[Path]:
        """The session ended: write what it had (an open task as unknown)."""
        with self._lock:
            session = self._sessions.pop(key, None)
            record = (
                self._close(session, "the session ended with the task open") if session else None
            )
        return [self.store.write(record)] if record else []

    def close_idle(self) -> list[Path]:
        """Write the trajectories of sessions idle longer than the idle gap."""
        now = time.monotonic()
        with self._lock:
            idle = [k for k, s in self._sessions.items() if now - s.last > self.idle_gap_s]
            records = [
                self._close(self._sessions.pop(k), "the session went idle with the task open")
                for k in idle
            ]
        return [self.store.write(r) for r in records if r]

    def close_all(self) -> list[Path]:
        """Every session ended (the gateway stops)."""
        with self._lock:
            keys = list(self._sessions)
        return [p for k in keys for p in self.close(k)]

    def _close(self, session: _Session, why_unknown: str) -> dict[str, JSON] | None:
        if session.task is not None:
            return self._record_of(session, "unknown", f"unknown: {why_unknown}")
        return self._record_of(session, "success" if retried(session.steps) else "failure", None)

    def _record_of(
        self, session: _Session, outcome: Outcome, note: str | None
    ) -> dict[str, JSON] | None:
        """The session's trajectory as a record (redacted), None when it made no call."""
        if not session.steps:
            return None
        red = self.redactor
        task = red.text(session.task) if session.task is not None else NO_TASK
        messages: list[dict[str, JSON]] = [{"role": "user", "content": task}]
        for step in session.steps:
            clean = Step(
                step.tool, red.value(dict(step.arguments)), red.value(step.result),
                None if step.error is None else red.text(step.error), step.call_id,
            )  # fmt: skip
            messages += clean.to_chat_messages()
        detail = red.text(note) if note else None
        if detail:
            messages.append({"role": "assistant", "content": detail})
        outcome_json: dict[str, JSON] = {"success": outcome == "success"}
        if detail:
            outcome_json["detail"] = detail
        return {
            "id": f"mcp-{datetime.now(UTC).strftime('%Y%m%d%H%M%S')}-{random.token_hex(4)}",
            "task": task,
            "messages": messages,
            "tools": [red.value(t) for t in session.tools.values()],
            "outcome": outcome_json,
            RECORDED_KEY: {
                "source": "mcp",
                "client": red.text(session.client),
                "task_given": session.task is not None,
                "outcome": outcome,
                "started": session.started,
                "ended": _now(),
            },
        }
