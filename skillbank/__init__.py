"""skillbank: procedural memory for AI agents, kept as tested, reviewed, versioned code.

A successful trajectory (a task and the tool calls that solved it) is compiled into a
parameterised Python function, a *skill*; the skill is validated with libcst, replayed in a
RestrictedPython sandbox, committed to a git-tracked ``skills/`` folder, and run again on new
arguments instead of being re-derived by the model.

Names in ``__all__`` are the public API; anything else may change without notice.
"""

from __future__ import annotations

from skillbank.bank import SkillBank
from skillbank.compiler import compile_group, compile_trajectory
from skillbank.config import Config, load_config
from skillbank.errors import (
    CompileError,
    ConfigError,
    DiskFull,
    ExportError,
    GateUsageError,
    LibraryError,
    LLMReplyError,
    LLMRequestError,
    PermissionDenied,
    SkillArgumentError,
    SkillbankError,
    SkillCallFailed,
    SkillCheckFailed,
    SkillNotFound,
    SkillRejected,
    SkillTestFailed,
    TrajectoryError,
    UnsupportedType,
)
from skillbank.findings import Finding
from skillbank.learning import LearnEntry, LearnReport, ProcedureReport
from skillbank.ledger import Ledger
from skillbank.recognize import Plan, PlanResult, PlanStep
from skillbank.recording import Recorder
from skillbank.running import RunResult
from skillbank.skill import Case, Param, Signature, Skill, SkillDraft, TestedSkill, ValidatedSkill
from skillbank.toolspec import (
    canonical_schema,
    chat_tool,
    decode_arguments,
    mcp_tool,
    render_tools,
    responses_tool,
    strict_schema,
)
from skillbank.trajectory import (
    Outcome,
    Step,
    ToolSpec,
    Trajectory,
    load_trajectories,
    parse_record,
    scan_trajectories,
)
from skillbank.validate import check_source, validate
from skillbank.versioning import (
    HistoryEntry,
    SignatureChange,
    Version,
    parse_version,
    required_bump,
    signature_diff,
)

__version__ = "0.1.0"

__all__ = [
    "Case",
    "CompileError",
    "Config",
    "ConfigError",
    "DiskFull",
    "ExportError",
    "Finding",
    "GateUsageError",
    "HistoryEntry",
    "LLMReplyError",
    "LLMRequestError",
    "LearnEntry",
    "LearnReport",
    "Ledger",
    "LibraryError",
    "Outcome",
    "Param",
    "PermissionDenied",
    "Plan",
    "PlanResult",
    "PlanStep",
    "ProcedureReport",
    "Recorder",
    "RunResult",
    "Signature",
    "SignatureChange",
    "Skill",
    "SkillArgumentError",
    "SkillBank",
    "SkillCallFailed",
    "SkillCheckFailed",
    "SkillDraft",
    "SkillNotFound",
    "SkillRejected",
    "SkillTestFailed",
    "SkillbankError",
    "Step",
    "TestedSkill",
    "ToolSpec",
    "Trajectory",
    "TrajectoryError",
    "UnsupportedType",
    "ValidatedSkill",
    "Version",
    "canonical_schema",
    "chat_tool",
    "check_source",
    "compile_group",
    "compile_trajectory",
    "decode_arguments",
    "load_config",
    "load_trajectories",
    "mcp_tool",
    "parse_record",
    "parse_version",
    "render_tools",
    "required_bump",
    "responses_tool",
    "scan_trajectories",
    "signature_diff",
    "strict_schema",
    "validate",
]
