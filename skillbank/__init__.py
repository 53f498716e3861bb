"""skillbank: procedural memory for AI agents, kept as tested, reviewed, versioned code.

A successful trajectory (a task and the tool calls that solved it) is compiled into a
parameterised Python function, a *skill*; the skill is validated with libcst, replayed in a
RestrictedPython sandbox, committed to a git-tracked ``skills/`` folder, and run again on new
arguments instead of being re-derived by the model.

Names in ``__all__`` are the public API; anything else may change without notice.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
        UpstreamError,
        UpstreamToolError,
    )
    from skillbank.findings import Finding
    from skillbank.finetune import FinetuneReport, export_finetune, validate_examples
    from skillbank.learning import LearnEntry, LearnReport, ProcedureReport
    from skillbank.ledger import CallLedger, Ledger
    from skillbank.ledger_postgres import PostgresLedger
    from skillbank.recognize import Plan, PlanResult, PlanStep
    from skillbank.recording import Recorder
    from skillbank.running import RunResult
    from skillbank.skill import (
        Case,
        Param,
        Signature,
        Skill,
        SkillDraft,
        TestedSkill,
        ValidatedSkill,
    )
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

#: Where each public name is defined. Imported on first use (PEP 562), so that
#: ``import skillbank`` and the command line do not pay for parts they never touch (libcst,
#: numpy, hypothesis...): ``skillbank --help`` starts in a fraction of the time.
EXPORTS: dict[str, str] = {
    "Case": "skillbank.skill",
    "CompileError": "skillbank.errors",
    "Config": "skillbank.config",
    "ConfigError": "skillbank.errors",
    "DiskFull": "skillbank.errors",
    "ExportError": "skillbank.errors",
    "FinetuneReport": "skillbank.finetune",
    "Finding": "skillbank.findings",
    "GateUsageError": "skillbank.errors",
    "HistoryEntry": "skillbank.versioning",
    "LLMReplyError": "skillbank.errors",
    "LLMRequestError": "skillbank.errors",
    "LearnEntry": "skillbank.learning",
    "LearnReport": "skillbank.learning",
    "Ledger": "skillbank.ledger",
    "CallLedger": "skillbank.ledger",
    "PostgresLedger": "skillbank.ledger_postgres",
    "LibraryError": "skillbank.errors",
    "Outcome": "skillbank.trajectory",
    "Param": "skillbank.skill",
    "PermissionDenied": "skillbank.errors",
    "Plan": "skillbank.recognize",
    "PlanResult": "skillbank.recognize",
    "PlanStep": "skillbank.recognize",
    "ProcedureReport": "skillbank.learning",
    "Recorder": "skillbank.recording",
    "RunResult": "skillbank.running",
    "Signature": "skillbank.skill",
    "SignatureChange": "skillbank.versioning",
    "Skill": "skillbank.skill",
    "SkillArgumentError": "skillbank.errors",
    "SkillBank": "skillbank.bank",
    "SkillCallFailed": "skillbank.errors",
    "SkillCheckFailed": "skillbank.errors",
    "SkillDraft": "skillbank.skill",
    "SkillNotFound": "skillbank.errors",
    "SkillRejected": "skillbank.errors",
    "SkillTestFailed": "skillbank.errors",
    "SkillbankError": "skillbank.errors",
    "Step": "skillbank.trajectory",
    "TestedSkill": "skillbank.skill",
    "ToolSpec": "skillbank.trajectory",
    "Trajectory": "skillbank.trajectory",
    "TrajectoryError": "skillbank.errors",
    "UnsupportedType": "skillbank.errors",
    "UpstreamError": "skillbank.errors",
    "UpstreamToolError": "skillbank.errors",
    "ValidatedSkill": "skillbank.skill",
    "Version": "skillbank.versioning",
    "canonical_schema": "skillbank.toolspec",
    "chat_tool": "skillbank.toolspec",
    "check_source": "skillbank.validate",
    "compile_group": "skillbank.compiler",
    "compile_trajectory": "skillbank.compiler",
    "decode_arguments": "skillbank.toolspec",
    "export_finetune": "skillbank.finetune",
    "load_config": "skillbank.config",
    "load_trajectories": "skillbank.trajectory",
    "mcp_tool": "skillbank.toolspec",
    "parse_record": "skillbank.trajectory",
    "parse_version": "skillbank.versioning",
    "render_tools": "skillbank.toolspec",
    "required_bump": "skillbank.versioning",
    "responses_tool": "skillbank.toolspec",
    "scan_trajectories": "skillbank.trajectory",
    "signature_diff": "skillbank.versioning",
    "strict_schema": "skillbank.toolspec",
    "validate": "skillbank.validate",
    "validate_examples": "skillbank.finetune",
}


class _Package(types.ModuleType):
    """This package, where importing a submodule never hides a public name.

    Importing ``skillbank.validate`` binds the submodule as the package's attribute
    ``validate``, which is also the public function `validate`: the function stays.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and EXPORTS.get(name) == value.__name__:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    module = EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'skillbank' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # found once: later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *EXPORTS})


__version__ = "0.1.0"

__all__ = [
    "CallLedger",
    "Case",
    "CompileError",
    "Config",
    "ConfigError",
    "DiskFull",
    "ExportError",
    "Finding",
    "FinetuneReport",
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
    "PostgresLedger",
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
    "UpstreamError",
    "UpstreamToolError",
    "ValidatedSkill",
    "Version",
    "canonical_schema",
    "chat_tool",
    "check_source",
    "compile_group",
    "compile_trajectory",
    "decode_arguments",
    "export_finetune",
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
    "validate_examples",
]
