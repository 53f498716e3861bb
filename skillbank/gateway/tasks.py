"""The gateway's task tools, and learning from what it recorded.

``skillbank_begin_task(task)`` and ``skillbank_end_task(success, note)`` (`BEGIN_TOOL`,
`END_TOOL`) mark where a task starts and ends, so the calls between them are one trajectory
with that task text and outcome (`skillbank.gateway.recorder.TaskRecorder`). The server's
instructions (`TASK_INSTRUCTIONS`) ask the model to call them.

`learn_recorded` learns from the recordings not learned yet (plus any other trajectory files)
through the bank's usual check-and-keep path, and moves the cursor past them: what
``skillbank learn --recorded`` and ``skillbank serve --learn`` run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skillbank.errors import TrajectoryError
from skillbank.gateway.recorder import RECORDED_KEY, Recordings
from skillbank.trajectory import Trajectory, scan_trajectories

if TYPE_CHECKING:
    from skillbank.bank import SkillBank
    from skillbank.formats import Format
    from skillbank.learning import LearnReport

__all__ = [
    "BEGIN_TOOL",
    "END_TOOL",
    "RECORDINGS_DIR",
    "TASK_INSTRUCTIONS",
    "RecordedLearning",
    "learn_recorded",
    "recordings_of",
]

JSON = Any

#: The recordings folder, inside the bank's state folder.
RECORDINGS_DIR = "recordings"

#: ``skillbank_begin_task``: the calls from here to ``skillbank_end_task`` are one task.
BEGIN_TOOL: dict[str, JSON] = {
    "name": "skillbank_begin_task",
    "description": (
        "Call this first, when you start a task, with the task in the user's words. The tool "
        "calls you make until skillbank_end_task are recorded as one task, so that the "
        "procedure can be learned and offered back as a single tool next time."
    ),
    "inputSchema": {
        "type": "object",
        "properties": {"task": {"type": "string", "description": "The task, in the user's words."}},
        "required": ["task"],
        "additionalProperties": False,
    },
    "annotations": {"readOnlyHint": True, "openWorldHint": False},
}

#: ``skillbank_end_task``: the open task ends, with its outcome.
END_TOOL: dict[str, JSON] = {
    "name": "skillbank_end_task",
    "description": (
        "Call this when the task you began with skillbank_begin_task is done: success true "
        "when it achieved what was asked, false otherwise; note: the answer, or what went wrong."
    ),
    "inputSchema": {
        "type": "object",
        "properties": {
            "success": {"type": "boolean", "description": "Whether the task was achieved."},
            "note": {
                "type": ["string", "null"],
                "description": "The final answer, or why it failed (optional).",
            },
        },
        "required": ["success"],
        "additionalProperties": False,
    },
    "annotations": {"readOnlyHint": True, "openWorldHint": False},
}

#: Added to the server's instructions when it records.
TASK_INSTRUCTIONS = (
    "Tool calls through this server are recorded so that procedures you repeat become skills "
    "(tools that do the whole procedure in one call). Before you start a task, call "
    "skillbank_begin_task with the task in the user's words; when it is done, call "
    "skillbank_end_task with success true or false. Prefer a skill over repeating its steps."
)


def recordings_of(bank: SkillBank) -> Recordings:
    """The bank's recordings folder (``<state_dir>/recordings``)."""
    return Recordings(bank.library.state / RECORDINGS_DIR)


@dataclass(frozen=True)
class RecordedLearning:
    """What `learn_recorded` did."""

    #: The learning report (None when there was nothing to learn).
    report: LearnReport | None
    #: The recordings read (the cursor moved past them).
    recordings: tuple[Path, ...]
    #: Recordings left out: outcome unknown, or not readable (one line each).
    skipped: tuple[str, ...]


def learn_recorded(
    bank: SkillBank,
    *,
    paths: Sequence[str | Path] = (),
    branch: str | None = None,
    store: Recordings | None = None,
    skip_invalid: bool = False,
    format: Format = "auto",
) -> RecordedLearning:
    """Learn from the recordings not learned yet, and from ``paths`` (read as ``format``),
    in one learning run; then move the cursor past the recordings read.

    A recording whose outcome is unknown (a task never ended) is never learned; one that
    cannot be read is skipped and named.

    Raises:
        TrajectoryError: a file of ``paths`` is malformed and ``skip_invalid`` is false
            (bad recordings are skipped and named instead).
    """
    import json

    store = store or recordings_of(bank)
    pending = store.pending()
    trajectories: list[Trajectory] = []
    skipped: list[str] = []
    for path in pending:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            skipped.append(f"{path.name}: cannot be read ({exc})")
            continue
        recorded = raw.get(RECORDED_KEY) if isinstance(raw, dict) else None
        if isinstance(recorded, dict) and recorded.get("outcome") == "unknown":
            skipped.append(f"{path.name}: the task was never ended (outcome unknown)")
            continue
        scan = scan_trajectories(path)
        skipped += [f"{path.name}: {e}" for e in scan.errors]
        trajectories += scan.trajectories
    if paths:
        scan = scan_trajectories(list(paths), format=format)
        if scan.errors and not skip_invalid:
            more = f" (and {len(scan.errors) - 1} more)" if len(scan.errors) > 1 else ""
            raise TrajectoryError(
                f"{scan.errors[0]}{more}; fix it, or pass --skip-invalid to learn from the good "
                "records"
            )
        trajectories += scan.trajectories
    report = bank.learn(trajectories, branch=branch) if trajectories else None
    store.mark_learned(pending)
    return RecordedLearning(report, tuple(pending), tuple(skipped))
