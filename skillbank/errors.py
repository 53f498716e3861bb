"""The exceptions skillbank raises when a caller cannot go on.

Expected failures (a skill fails its replay test, sandboxed code raises) come back as values
(`LearnReport` entries, `RunResult.error`); these classes are for misuse and broken input.

    SkillbankError
    ├── TrajectoryError      a trajectory file or record is malformed
    ├── CompileError         a trajectory cannot be turned into a skill
    │   ├── LLMRequestError  the LLM endpoint could not be asked, or refused
    │   └── LLMReplyError    the LLM's reply is not the JSON object asked for
    ├── UnsupportedType      an annotation outside the type vocabulary (also a ValueError)
    ├── SkillRejected        a skill's source breaks the validation policy (carries findings)
    ├── SkillTestFailed      a skill does not reproduce its recorded cases (carries the failure)
    ├── SkillCheckFailed     a check of ``pytest skills/`` failed (carries the whole report)
    ├── SkillNotFound        no skill with that id in the library
    ├── SkillArgumentError   arguments do not match a skill's signature
    ├── SkillCallFailed      a skill that another skill requires failed inside that call
    ├── LibraryError         the skills folder or its git repository is broken or unwritable
    │   ├── PermissionDenied the bank's files cannot be written by this user (or are read-only)
    │   └── DiskFull         no space is left for the bank's files
    ├── ConfigError          configuration is invalid
    ├── GateUsageError       the gate was asked something it cannot do (a bad base ref)
    ├── ExportError          an export cannot be written as asked
    └── UpstreamError        an upstream MCP server could not answer a call (down, died, slow)
        └── UpstreamToolError  the upstream tool answered with an error (``isError``)

Every error carries a ``hint``: one line saying what to do next. Each class has a default,
and a raise can pass a sharper one (``raise ConfigError(message, hint="...")``). The CLI's
JSON error envelope shows it next to the class name and the message.

The sandbox has its own tree (`sandbox.SandboxError`), because `sandbox` never imports us.
"""

from __future__ import annotations

import difflib
import errno
import sqlite3
from collections.abc import Sequence

from skillbank.findings import Finding

__all__ = [
    "CompileError",
    "ConfigError",
    "ExportError",
    "GateUsageError",
    "LLMReplyError",
    "LLMRequestError",
    "DiskFull",
    "LibraryError",
    "PermissionDenied",
    "SkillArgumentError",
    "SkillCallFailed",
    "SkillCheckFailed",
    "SkillNotFound",
    "SkillRejected",
    "SkillTestFailed",
    "SkillbankError",
    "TrajectoryError",
    "UnsupportedType",
    "UpstreamError",
    "UpstreamToolError",
]


class SkillbankError(Exception):
    """Root of every error skillbank raises on purpose; the CLI prints it as one line.

    ``hint`` says what to do next: the class's default unless the raise passed one.
    """

    #: What to do next, in one line (each class has its own default).
    hint: str = "read the message: it names what is wrong and where"

    def __init__(self, *args: object, hint: str | None = None) -> None:
        super().__init__(*args)
        if hint is not None:
            self.hint = hint


class TrajectoryError(SkillbankError):
    """Raised when a trajectory file or record is malformed.

    The message names the file, the record (line number or id) and the field, e.g.
    ``runs.jsonl:3 (record 'abc'): messages[2].tool_calls[0].function.arguments: ...``.
    """

    hint = "fix the record the message names, or pass --skip-invalid to learn from the good ones"

    def __init__(
        self, message: str, *, source: str = "", field: str = "", hint: str | None = None
    ) -> None:
        self.source = source
        self.field = field
        where = ": ".join(part for part in (source, field) if part)
        super().__init__(f"{where}: {message}" if where else message, hint=hint)


class CompileError(SkillbankError):
    """Raised when a trajectory cannot be compiled into a skill (for example it made no calls)."""

    hint = "check that the trajectory succeeded and called tools; the message says what is missing"


class LLMRequestError(CompileError):
    """Raised by `LLMCompiler.propose` when the endpoint could not be asked or refused.

    ``retryable`` is true for failures another attempt may get past (timeouts, connection
    errors, 429, 5xx) and false for ones it cannot (a bad key, an unknown model, a 400).
    `LLMCompiler.compile` never raises it; it reports it in `LLMResult`.
    """

    hint = "check OPENAI_API_KEY, the model name and the endpoint, then try again"

    def __init__(self, message: str, *, retryable: bool, hint: str | None = None) -> None:
        self.retryable = retryable
        super().__init__(message, hint=hint)


class LLMReplyError(CompileError):
    """Raised by `LLMCompiler.propose` when the reply is not the JSON object asked for.

    ``reply`` holds the raw text. `LLMCompiler.compile` never raises it: it tells the model
    the expected format and asks again.
    """

    hint = "try again, or use a model that follows JSON instructions more closely"

    def __init__(self, message: str, reply: str = "", *, hint: str | None = None) -> None:
        self.reply = reply
        super().__init__(message, hint=hint)


class UnsupportedType(SkillbankError, ValueError):
    """Raised by `skillbank.signature.annotation_schema` for an annotation outside the vocabulary.

    ``annotation`` is the offending part (``Any`` in ``list[Any]``), ``line`` (1-based) and
    ``col`` (0-based) point at it in the text that was read, and ``reason`` says what to
    write instead. It is also a ``ValueError``: a bad annotation is a bad value.
    """

    hint = "annotate with a supported type, as the message suggests"

    def __init__(self, annotation: str, reason: str, *, line: int = 1, col: int = 0) -> None:
        self.annotation = annotation
        self.reason = reason
        self.line = line
        self.col = col
        super().__init__(f"unsupported type {annotation!r} at {line}:{col}: {reason}")


class SkillRejected(SkillbankError):
    """Raised when a skill's source breaks the validation policy.

    ``findings`` holds every problem with its rule id, line and column; ``str()`` renders them
    like a compiler would, with the offending line and a caret.
    """

    hint = "fix each finding at the line and column shown, then check the skill again"

    def __init__(self, skill: str, findings: Sequence[Finding], source: str = "") -> None:
        self.skill = skill
        self.findings = tuple(findings)
        lines = [f"skill {skill!r} was rejected with {len(self.findings)} finding(s):"]
        lines += [f.render(source, path=skill) for f in self.findings]
        super().__init__("\n".join(lines))


class SkillTestFailed(SkillbankError):
    """Raised when a skill does not reproduce a recorded case; ``failure`` says how."""

    hint = "fix the skill's code, or record new cases if the tools changed"

    def __init__(self, skill: str, failure: str) -> None:
        self.skill = skill
        self.failure = failure
        super().__init__(f"skill {skill!r} failed its tests: {failure}")


class SkillCheckFailed(SkillbankError):
    """Raised by a ``pytest skills/`` item (`skillbank.testing`) when its check fails.

    The message is the whole report pytest shows for the item, without a traceback.
    """

    hint = "read the report; `skillbank gate` runs the same checks"


class SkillNotFound(SkillbankError):
    """Raised by `SkillBank.get` and friends when no skill has the requested id."""

    hint = "run `skillbank list` to see the skill ids"

    def __init__(self, skill_id: str, known: Sequence[str] = ()) -> None:
        self.skill_id = skill_id
        close = difflib.get_close_matches(skill_id, list(known), n=3, cutoff=0.6)
        said = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        hint = f" Known skills: {', '.join(sorted(known))}." if known else " The library is empty."
        super().__init__(
            f"no skill {skill_id!r} in the library.{said}{hint} Run `skillbank list` to see them."
        )
        if close:
            self.hint = f"did you mean {' or '.join(close)}?"


class SkillArgumentError(SkillbankError):
    """Raised when arguments passed to a skill do not match its signature."""

    hint = "pass arguments that match the skill's signature (`skillbank show ID`)"


class SkillCallFailed(SkillbankError):
    """Raised to a calling skill (as a tool error) when a skill it requires failed.

    See `skillbank.compose.grant`; the caller sees the message, not a traceback.
    """

    hint = "run the required skill on its own to see why it failed"


class LibraryError(SkillbankError):
    """Raised when the skills folder or its git repository cannot be read or written.

    A failed write never leaves the library half-changed: files are restored before raising.
    """

    hint = "check that the folder is a skill bank (`skillbank init`), writable, with git"


class PermissionDenied(LibraryError):
    """Raised when the bank's files (skills, git, ledger) cannot be written by this user."""

    hint = "make the bank folder writable for this user (ls -l names the owner), or work on a copy"


class DiskFull(LibraryError):
    """Raised when no space is left (or a file size limit is hit) for the bank's files."""

    hint = "free space on the disk that holds the bank (df -h), then run the command again"


_PERMISSION_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def storage_error(exc: BaseException, what: str, after: str = "") -> LibraryError | None:
    """`PermissionDenied` or `DiskFull` for an OS or SQLite error writing ``what``; else None.

    ``after`` is appended to the message (for example "nothing was changed").

    One classification for every place that touches the disk (the ledger, the CLI's last
    resort), so a read-only bank or a full disk reads the same wherever it is met.
    """
    tail = f"; {after}" if after else ""
    if isinstance(exc, OSError):
        named = exc.filename and str(exc.filename) not in what
        where = f"{what} ({exc.filename})" if named else what
        if exc.errno in _PERMISSION_ERRNOS:
            return PermissionDenied(f"cannot write {where}: {exc.strerror or exc}{tail}")
        if exc.errno in _SPACE_ERRNOS:
            return DiskFull(f"cannot write {where}: {exc.strerror or exc}{tail}")
    if isinstance(exc, sqlite3.Error):
        extended = getattr(exc, "sqlite_errorcode", None)
        code = extended & 0xFF if isinstance(extended, int) else None
        text = str(exc)
        if code == sqlite3.SQLITE_READONLY or "readonly database" in text:
            return PermissionDenied(f"cannot write {what}: {text}{tail}")
        if code == sqlite3.SQLITE_FULL or "disk is full" in text:
            return DiskFull(f"cannot write {what}: {text}{tail}")
        if code == sqlite3.SQLITE_CANTOPEN and "unable to open" in text:
            return PermissionDenied(
                f"cannot open {what}: {text} (its folder is missing or not writable){tail}"
            )
    return None


class ConfigError(SkillbankError):
    """Raised when a configuration value (pyproject, environment, flag) is invalid."""

    hint = "fix the value in pyproject.toml [tool.skillbank], SKILLBANK_* or the flag"


class GateUsageError(SkillbankError):
    """Raised by `skillbank.gate` when it is asked something it cannot do.

    For example an unknown base ref, or tool specs that cannot be read (exit code 2).
    """

    hint = "check the --base ref or the --tool-specs value the message names"


class ExportError(SkillbankError):
    """Raised by `skillbank.export` when an export cannot be written as asked.

    For example: the output folder holds something that is not an earlier export of the same
    skill, two skill ids map to one Agent Skills name, or a skill requires a skill that was
    not given.
    """

    hint = "export into an empty folder, or one holding an earlier export of these skills"


class UpstreamError(SkillbankError):
    """Raised by `skillbank.gateway.upstream.Upstreams.call` when an upstream MCP call could
    not be made or did not finish: no such tool, the server is not running (it never started,
    or cannot be started again), it stopped during the call, or the call timed out.

    Inside a skill it is the ``ToolError`` of the call; through the gateway, a tool error.
    Compare `UpstreamToolError`: the server answered, with an error.
    """

    hint = "check the server's entry in the upstream file, or run its command by hand"


class UpstreamToolError(UpstreamError):
    """Raised by an upstream tool called as a host tool when it answered ``isError``; the
    message is the text it returned (a skill sees it as ``ToolError``)."""

    hint = "read the tool's message: the arguments or the state it acts on are wrong"
