"""The gate: what CI runs before a skill change lands.

``skillbank gate [--base REF]`` checks the skills a change touches (every skill without a
base) the way a reviewer would want them checked, and fails when any check fails:

    validate    the libcst policy (rule ids SB...; see `skillbank.validate.RULES`)
    replay      every recorded case replays in the sandbox         (SBG101)
    properties  generated inputs, schema-valid tool doubles         (SBG102)
    determinism the same answers give the same calls and result     (SBG103)
    version     the version moved as the change requires            (SBG201-SBG203)
    requires    required skills exist, without cycles               (SBG301-SBG304)
    alias       a renamed skill's old id names a skill that loads   (SBG305)
    tools       the tools each skill calls still exist and accept
                the recorded arguments                              (SBG401-SBG402)

With a base, "the skills a change touches" are those whose files differ between the merge
base of REF and HEAD and the working tree (so uncommitted edits are checked too), plus every
skill that requires one of them, since a change can break its callers. Findings carry a path,
line and column, so they render as compiler errors, JUnit failures, SARIF results and
GitHub annotations (`skillbank.gate_output`).
"""

from __future__ import annotations

import importlib
import json
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sandbox.names import attribute_name
from skillbank.compose import closure, requirement_cycle
from skillbank.errors import GateUsageError, LibraryError
from skillbank.findings import caret
from skillbank.library import ALIAS_FILE, SkillLibrary, git
from skillbank.progress import track
from skillbank.skill import Skill
from skillbank.validate import RULES as VALIDATION_RULES
from skillbank.validate import check_source, normalize_source

if TYPE_CHECKING:
    from skillbank.bank import SkillBank

__all__ = [
    "CHECKS",
    "GATE_RULES",
    "CheckOutcome",
    "GateFinding",
    "GateReport",
    "GateUsageError",
    "changed_skills",
    "load_tool_specs",
    "normalise_specs",
    "run_gate",
    "tool_findings",
]

JSON = Any
Level = Literal["error", "warning"]
Status = Literal["passed", "failed", "skipped"]

#: The checks, in the order they run for each skill.
CHECKS = ("validate", "replay", "properties", "determinism", "version", "requires", "tools")

#: Rule id -> summary, for the gate's own findings (validation findings keep their SB ids).
GATE_RULES: dict[str, str] = {
    "SBG001": "the skill's folder cannot be read",
    "SBG002": "skill.py is not in normal form (a warning)",
    "SBG003": "the docstring's first line and SKILL.md's description disagree",
    "SBG101": "a recorded case no longer replays",
    "SBG102": "a property on generated inputs fails",
    "SBG103": "the skill is not deterministic",
    "SBG201": "the code changed but the version did not",
    "SBG202": "a breaking signature change needs a major version bump",
    "SBG203": "the version went backwards",
    "SBG301": "a required skill does not exist",
    "SBG302": "skills require each other in a cycle",
    "SBG303": "a required skill is deprecated",
    "SBG304": "a required skill is called by an old id (an alias of a renamed skill)",
    "SBG305": "an alias names no skill that loads",
    "SBG401": "a tool the skill calls no longer exists",
    "SBG402": "a recorded call does not fit the tool's current schema",
}

#: Every rule the gate can report: the validation policy's and its own.
ALL_RULES: dict[str, str] = {**VALIDATION_RULES, **GATE_RULES}


@dataclass(frozen=True)
class GateFinding:
    """One problem the gate found, at a place in a file."""

    #: Rule id (``SB...`` from validation or ``SBG...`` from the gate).
    rule: str
    #: "error" fails the gate; "warning" is reported only.
    level: Level
    #: The skill it concerns.
    skill_id: str
    #: The check that found it (one of `CHECKS`, or "load").
    check: str
    #: What is wrong and what to do.
    message: str
    #: File path relative to the repository root, e.g. ``skills/x/skill.py``.
    path: str
    #: 1-based line.
    line: int = 1
    #: 0-based column.
    col: int = 0

    def render(self, root: Path | None = None) -> str:
        """``path:line:col: RULE message`` plus, where the file can be read, the line and a
        caret."""
        head = f"{self.path}:{self.line}:{self.col}: {self.rule} [{self.level}] {self.message}"
        if root is None:
            return head
        try:
            lines = (root / self.path).read_text(encoding="utf-8").split("\n")
        except (OSError, UnicodeDecodeError):
            return head
        return caret(head, lines, self.line, self.col) if self.path.endswith(".py") else head

    def to_json(self) -> dict[str, JSON]:
        """The finding as JSON data."""
        return {
            "rule": self.rule,
            "level": self.level,
            "skill_id": self.skill_id,
            "check": self.check,
            "message": self.message,
            "path": self.path,
            "line": self.line,
            "col": self.col,
        }


@dataclass(frozen=True)
class CheckOutcome:
    """One check of one skill."""

    #: The skill.
    skill_id: str
    #: The check, one of `CHECKS` (or "load").
    check: str
    #: "passed", "failed" or "skipped".
    status: Status
    #: Seconds it took.
    duration_s: float = 0.0
    #: What it found (warnings may accompany a pass).
    findings: tuple[GateFinding, ...] = ()
    #: Why it was skipped, or what it covered (e.g. "6 case(s)").
    detail: str = ""

    def to_json(self) -> dict[str, JSON]:
        """The outcome as JSON data."""
        return {
            "skill_id": self.skill_id,
            "check": self.check,
            "status": self.status,
            "duration_s": round(self.duration_s, 4),
            "detail": self.detail,
            "findings": [f.to_json() for f in self.findings],
        }


@dataclass(frozen=True)
class GateReport:
    """Everything one gate run checked and found."""

    #: The bank's root folder.
    root: Path
    #: The base ref asked for (None: every skill was checked).
    base: str | None
    #: The commit the change is compared with (the merge base of ``base`` and HEAD).
    base_commit: str | None
    #: The skills checked, sorted.
    skills: tuple[str, ...]
    #: Skills present at the base and gone now.
    removed: tuple[str, ...]
    #: Every check's outcome, by skill then check order.
    outcomes: tuple[CheckOutcome, ...] = field(default_factory=tuple)
    #: The bank's folder relative to the top of its git repository ("" or "sub/"): CI
    #: annotations and SARIF name files from the top.
    prefix: str = ""

    @property
    def findings(self) -> list[GateFinding]:
        """Every finding, errors first, then by path and line."""
        found = [f for o in self.outcomes for f in o.findings]
        return sorted(found, key=lambda f: (f.level != "error", f.path, f.line, f.col, f.rule))

    @property
    def errors(self) -> list[GateFinding]:
        """The findings that fail the gate."""
        return [f for f in self.findings if f.level == "error"]

    @property
    def ok(self) -> bool:
        """True when no check failed."""
        return not any(o.status == "failed" for o in self.outcomes) and not self.errors

    def to_json(self) -> dict[str, JSON]:
        """The report as JSON data (``skillbank gate --json``)."""
        return {
            "ok": self.ok,
            "base": self.base,
            "base_commit": self.base_commit,
            "skills": list(self.skills),
            "removed": list(self.removed),
            "outcomes": [o.to_json() for o in self.outcomes],
            "findings": [f.to_json() for f in self.findings],
        }


# --- scope ------------------------------------------------------------------------------


def _resolve(root: Path, ref: str) -> str:
    proc = git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
    if proc.returncode != 0:
        raise GateUsageError(
            f"--base {ref!r} is not a commit in {root}; fetch it first (in GitHub Actions, "
            "check out with `fetch-depth: 0`) or name a branch, tag or sha that exists"
        )
    return proc.stdout.strip()


def changed_skills(root: Path, skills_rel: str, base: str) -> tuple[str, set[str]]:
    """(merge-base commit, ids of skills whose files differ from it, untracked files included).

    The comparison is with the working tree, so edits not yet committed count as changes.
    """
    target = _resolve(root, base)
    head = git(root, "rev-parse", "--verify", "--quiet", "HEAD^{commit}", check=False)
    commit = target
    if head.returncode == 0:
        mb = git(root, "merge-base", target, "HEAD", check=False)
        if mb.returncode != 0 or not mb.stdout.strip():
            raise GateUsageError(
                f"--base {base!r} and HEAD have no common ancestor (a shallow clone? in "
                "GitHub Actions check out with `fetch-depth: 0`), so the change cannot be told "
                "apart from the base"
            )
        commit = mb.stdout.strip()
    # --relative: paths relative to the bank's folder, which may sit inside a larger repo.
    names = git(
        root, "diff", "--name-only", "--no-renames", "--relative", commit, "--", skills_rel
    ).stdout
    untracked = git(root, "ls-files", "--others", "--exclude-standard", "--", skills_rel).stdout
    ids = set()
    prefix = Path(skills_rel).parts
    for line in (*names.splitlines(), *untracked.splitlines()):
        parts = Path(line).parts
        if len(parts) > len(prefix) + 1 and parts[: len(prefix)] == prefix:
            ids.add(parts[len(prefix)])
    return commit, ids


def _ids_for_paths(
    root: Path, skills_rel: str, paths: Iterable[str], known: Sequence[str]
) -> set[str]:
    """The skills holding ``paths`` (files or folders; the skills folder itself means all).

    Raises:
        GateUsageError: a path inside the skills folder that names no skill.
    """
    skills_dir = (root / skills_rel).resolve()
    ids: set[str] = set()
    for raw in paths:
        path = Path(raw)
        full = (path if path.is_absolute() else Path.cwd() / path).resolve()
        if full == skills_dir:
            ids |= set(known)
            continue
        try:
            rel = full.relative_to(skills_dir)
        except ValueError:
            continue  # not under the skills folder (pre-commit may pass other files)
        if len(rel.parts) == 1 and full.is_file():
            continue  # a file beside the skill folders, such as conftest.py
        if rel.parts[0] not in known:
            raise GateUsageError(
                f"{raw} is in no skill folder; known skills: {', '.join(known) or 'none'}"
            )
        ids.add(rel.parts[0])
    return ids


# --- tool specs -------------------------------------------------------------------------


def normalise_specs(data: JSON, where: str) -> dict[str, dict[str, JSON]]:
    """name -> parameters schema, from Chat Completions, Responses or MCP shaped specs."""
    items: Iterable[JSON]
    if isinstance(data, Mapping):
        items = list(data.values()) if all(isinstance(v, Mapping) for v in data.values()) else []
    elif isinstance(data, Sequence) and not isinstance(data, str):
        items = data
    else:
        items = []
    out: dict[str, dict[str, JSON]] = {}
    for spec in items:
        if not isinstance(spec, Mapping):
            continue
        inner = spec.get("function")
        fn: Mapping[str, JSON] = inner if isinstance(inner, Mapping) else spec
        name = fn.get("name")
        params = fn.get("parameters", fn.get("inputSchema", fn.get("input_schema")))
        if isinstance(name, str) and isinstance(params, Mapping):
            out[name] = dict(params)
    if not out:
        raise GateUsageError(
            f"{where}: found no tool definitions; give a list of tool specs (Chat Completions "
            "{'type': 'function', 'function': {...}}, Responses or MCP shape) or a mapping of "
            "name to spec"
        )
    return out


def load_tool_specs(ref: str, root: Path) -> dict[str, dict[str, JSON]]:
    """The current tool definitions, from ``MODULE:ATTR`` or a ``.json`` file.

    Returns tool name -> JSON Schema of its parameters.
    """
    if ref.endswith(".json") or "/" in ref:
        path = Path(ref) if Path(ref).is_absolute() else root / ref
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise GateUsageError(f"tool specs {path}: cannot read JSON: {exc}") from None
        return normalise_specs(data, str(path))
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise GateUsageError(f"tool specs {ref!r} must be MODULE:ATTR or a path to a .json file")
    for extra in (str(root), str(Path.cwd())):
        if extra not in sys.path:
            sys.path.insert(0, extra)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise GateUsageError(f"tool specs {ref!r}: cannot import {module_name!r}: {exc}") from None
    obj = getattr(module, attr, None)
    if obj is None:
        raise GateUsageError(f"tool specs {ref!r}: {module_name!r} has no attribute {attr!r}")
    if callable(obj) and not isinstance(obj, (Mapping, list)):
        obj = obj()
    return normalise_specs(obj, ref)


# --- the checks -------------------------------------------------------------------------


def _line_of(text: str, pattern: str) -> tuple[int, int]:
    match = re.search(pattern, text, re.MULTILINE)
    if not match:
        return 1, 0
    before = text[: match.start()]
    return before.count("\n") + 1, match.start() - (before.rfind("\n") + 1)


class _Run:
    """Collects outcomes for one gate run."""

    def __init__(self, root: Path, rel: str) -> None:
        self.root = root
        self.rel = rel
        self.outcomes: list[CheckOutcome] = []

    def path(self, sid: str, name: str) -> str:
        return f"{self.rel}/{sid}/{name}"

    def record(
        self,
        sid: str,
        check: str,
        started: float,
        findings: Sequence[GateFinding] = (),
        detail: str = "",
        skipped: str | None = None,
    ) -> CheckOutcome:
        if skipped is not None:
            status: Status = "skipped"
            detail = skipped
        else:
            status = "failed" if any(f.level == "error" for f in findings) else "passed"
        outcome = CheckOutcome(
            sid, check, status, time.monotonic() - started, tuple(findings), detail
        )
        self.outcomes.append(outcome)
        return outcome


def _load_findings(run: _Run, sid: str, error: LibraryError) -> list[GateFinding]:
    """Why a skill folder cannot be read; a broken ``skill.py`` is shown where it breaks."""
    py = run.root / run.path(sid, "skill.py")
    try:
        source = py.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        source = None
    if source is not None:
        found = [f for f in check_source(source, skill_id=sid) if f.rule == "SB001"]
        if found:
            return [
                GateFinding(
                    f.rule,
                    "error",
                    sid,
                    "load",
                    f.message,
                    run.path(sid, "skill.py"),
                    f.line,
                    f.col,
                )  # fmt: skip
                for f in found
            ]
    text = str(error)
    name = next((n for n in ("cases.jsonl", "tools.json", "skill.py") if n in text), "SKILL.md")
    return [GateFinding("SBG001", "error", sid, "load", text, run.path(sid, name))]


def _validate(run: _Run, skill: Skill) -> bool:
    started = time.monotonic()
    found = check_source(skill.source, tools=(*skill.tools, *skill.requires), skill_id=skill.id)
    findings = [
        GateFinding(
            f.rule,
            "error",
            skill.id,
            "validate",
            f.message,
            run.path(skill.id, "skill.py"),
            f.line,
            f.col,
        )  # fmt: skip
        for f in found
    ]
    errors = bool(findings)
    if not findings and normalize_source(skill.source) != skill.source:
        line = _first_difference(skill.source, normalize_source(skill.source))
        findings.append(
            GateFinding(
                "SBG002",
                "warning",
                skill.id,
                "validate",
                "skill.py is not in normal form (trailing spaces, tabs, blank lines or line "
                "endings); it still runs, but the next learn will rewrite it: re-learn, or "
                "apply skillbank.validate.normalize_source",
                run.path(skill.id, "skill.py"),
                line,
                0,
            )  # fmt: skip
        )
    stale = None if errors else _stale_description(skill)
    if stale is not None:  # fails the gate, but the code is sound: the other checks run
        line, col = _line_of(skill.source, re.escape(stale))
        findings.append(
            GateFinding(
                "SBG003",
                "error",
                skill.id,
                "validate",
                f"the docstring says {stale!r} but SKILL.md's description, which tools, MCP "
                f"and review show to models and reviewers, is {skill.description!r}; make the "
                "description start with the docstring's first line (or undo the edit)",
                run.path(skill.id, "skill.py"),
                line,
                col,
            )  # fmt: skip
        )
    run.record(skill.id, "validate", started, findings, f"{len(VALIDATION_RULES)} rule(s)")
    return not errors


def _stale_description(skill: Skill) -> str | None:
    """The docstring's first line when SKILL.md's description does not start with it.

    Every writer derives the description from that line (the compiler adds "(calls ...)"),
    so a hand edit of either one alone shows up here.
    """
    first = " ".join(skill.signature.docstring.split("\n", 1)[0].split())
    described = " ".join(skill.description.split())
    if described.rstrip(".").startswith(first.rstrip(".")):
        return None
    return first


def _first_difference(a: str, b: str) -> int:
    for n, (x, y) in enumerate(zip(a.split("\n"), b.split("\n"), strict=False), start=1):
        if x != y:
            return n
    return min(a.count("\n"), b.count("\n")) + 1


def _prove(
    run: _Run,
    bank: SkillBank,
    skill: Skill,
    library: Mapping[str, Skill],
    max_examples: int,
) -> None:
    from skillbank.proving import CaseResult, prove_skill, replay_case

    started = time.monotonic()
    cases: tuple[CaseResult, ...]
    if max_examples < 1:  # properties switched off: replay only
        report = None
        cases = tuple(
            replay_case(bank.sandbox, skill, c, bank.limits, library) for c in skill.cases
        )
    else:
        report = prove_skill(
            skill, bank.sandbox, limits=bank.limits, library=library, max_examples=max_examples
        )
        cases = report.cases
    cases_path = run.path(skill.id, "cases.jsonl")
    replay: list[GateFinding] = []
    for n, case in enumerate(cases, start=1):
        if not case.ok:
            replay.append(
                GateFinding(
                    "SBG101",
                    "error",
                    skill.id,
                    "replay",
                    f"case {case.trajectory_id!r} no longer replays: {case.failure}; fix the "
                    "code, or if the new behaviour is intended, re-learn from new trajectories",
                    cases_path,
                    n,
                    0,
                )  # fmt: skip
            )
    run.record(skill.id, "replay", started, replay, f"{len(cases)} case(s)")
    skill_path = run.path(skill.id, "skill.py")
    for check, rule in (("properties", "SBG102"), ("determinism", "SBG103")):
        if report is None:
            run.record(skill.id, check, time.monotonic(), skipped="prove_examples is 0")
            continue
        result = report.properties if check == "properties" else report.determinism
        findings = []
        if not result.ok:
            findings.append(
                GateFinding(
                    rule, "error", skill.id, check, result.message, skill_path, result.line or 1
                )
            )
        run.record(skill.id, check, time.monotonic(), findings, f"{result.examples} example(s)")


def _check_version(run: _Run, skill: Skill, old: Skill | None) -> None:
    from skillbank.versioning import required_bump, signature_change

    started = time.monotonic()
    if old is None:
        run.record(skill.id, "version", started, skipped="new skill")
        return
    md_path = run.path(skill.id, "SKILL.md")
    line, col = 1, 0
    try:
        md = (run.root / md_path).read_text(encoding="utf-8")
        line, col = _line_of(md, r"^\s*version:")
    except OSError:
        pass
    findings: list[GateFinding] = []
    new_v, old_v = skill.version, old.version
    need = required_bump(old.source, old.description, skill.source, skill.description)
    change = signature_change(old.source, skill.source)

    def add(rule: str, message: str) -> None:
        findings.append(GateFinding(rule, "error", skill.id, "version", message, md_path, line,
                                    col))  # fmt: skip

    if new_v < old_v:
        add("SBG203", f"version {new_v} is lower than {old_v} at the base; versions only go up")
    elif need == "major" and new_v.major <= old_v.major:
        add(
            "SBG202",
            f"the signature changed in a breaking way ({'; '.join(change.changes)}) but the "
            f"version went {old_v} -> {new_v}; set it to {old_v.major + 1}.0.0, or keep the old "
            "signature (add new parameters with defaults)",
        )
    elif need is not None and new_v == old_v:
        what = {"minor": "the code", "patch": "the description or docstring"}.get(need, "it")
        add(
            "SBG201",
            f"{what} changed but the version is still {old_v}; bump it ({need}) so callers and "
            "the ledger can tell the versions apart",
        )
    run.record(skill.id, "version", started, findings, f"{old_v} -> {new_v} ({need or 'none'})")


def _check_requires(
    run: _Run, skill: Skill, library: Mapping[str, Skill], cycle: list[str] | None
) -> None:
    started = time.monotonic()
    findings: list[GateFinding] = []
    md = run.path(skill.id, "SKILL.md")
    for dep in skill.requires:
        target = library.get(dep)
        if target is not None and target.id != dep:
            findings.append(
                GateFinding(
                    "SBG304",
                    "warning",
                    skill.id,
                    "requires",
                    f"requires {dep!r}, an alias of {target.id!r} (renamed); it keeps "
                    f"working, but call {target.id!r} by its new id",
                    md,
                    1,
                    0,
                )  # fmt: skip
            )
        elif target is None:
            findings.append(
                GateFinding(
                    "SBG301",
                    "error",
                    skill.id,
                    "requires",
                    f"requires skill {dep!r}, which does not exist; restore it, or change this "
                    "skill to stop calling it before removing it",
                    md,
                    1,
                    0,
                )  # fmt: skip
            )
        elif target.deprecated_by:
            findings.append(
                GateFinding(
                    "SBG303",
                    "warning",
                    skill.id,
                    "requires",
                    f"requires {dep!r}, deprecated in favour of {target.deprecated_by!r}; it "
                    "keeps working, but move to the replacement before it is removed",
                    md,
                    1,
                    0,
                )  # fmt: skip
            )
    if cycle and skill.id in cycle:
        findings.append(
            GateFinding(
                "SBG302",
                "error",
                skill.id,
                "requires",
                f"skills require each other in a cycle ({' -> '.join(cycle)}); break it",
                md,
                1,
                0,
            )  # fmt: skip
        )
    run.record(skill.id, "requires", started, findings, f"{len(skill.requires)} required")


def _check_aliases(run: _Run, lib: SkillLibrary, library: Mapping[str, Skill]) -> None:
    """Each alias folder (``alias.json``, a renamed skill's old id) must name a skill that
    loads, through any chain of aliases. All of them, whatever the change touched: removing
    or renaming a skill can leave an alias of it dangling, and the check runs no code."""
    folders = sorted(p.name for p in lib.dir.iterdir()) if lib.dir.is_dir() else []
    for alias in folders:
        if not (lib.dir / alias / ALIAS_FILE).is_file():
            continue
        started = time.monotonic()
        where = run.path(alias, ALIAS_FILE)
        if (lib.dir / alias / "SKILL.md").is_file():
            problem = (
                f"{alias!r} holds both a skill and an alias; delete {where} or the skill's files"
            )
        else:
            try:
                target = lib.resolve(alias)
                problem = (
                    ""
                    if target in library
                    else f"the alias {alias!r} names {target!r}, which is not a skill that "
                    f"loads; point {where} at the skill that replaced it, or delete it"
                )
            except LibraryError as exc:
                problem = str(exc)
        findings = (
            [GateFinding("SBG305", "error", alias, "alias", problem, where, 1, 0)]
            if problem
            else []
        )
        run.record(alias, "alias", started, findings, "alias")


def _check_tools(run: _Run, skill: Skill, current: Mapping[str, Mapping[str, JSON]] | None) -> None:
    started = time.monotonic()
    if current is None:
        run.record(skill.id, "tools", started, skipped="no tool specs configured (tool_specs)")
        return
    findings = tool_findings(skill, current, run.rel)
    run.record(skill.id, "tools", started, findings, f"{len(skill.tools)} tool(s)")


def tool_findings(
    skill: Skill, current: Mapping[str, Mapping[str, JSON]], skills_rel: str = "skills"
) -> list[GateFinding]:
    """Tools ``skill`` calls that are gone, or whose schema its recorded calls no longer fit.

    ``current`` maps tool name to the JSON Schema of its parameters (`load_tool_specs`).

    Raises:
        GateUsageError: a current schema is not valid JSON Schema.
    """
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped, unused-ignore]
    from jsonschema.exceptions import SchemaError  # type: ignore[import-untyped, unused-ignore]

    findings: list[GateFinding] = []
    py = f"{skills_rel}/{skill.id}/skill.py"
    for tool in skill.tools:
        line, col = _line_of(skill.source, rf"\btools\.{re.escape(attribute_name(tool))}\b")
        schema = current.get(tool)
        if schema is None:
            findings.append(
                GateFinding(
                    "SBG401",
                    "error",
                    skill.id,
                    "tools",
                    f"calls tool {tool!r}, which the current tool set does not have; known: "
                    f"{', '.join(sorted(current)) or 'none'}",
                    py,
                    line,
                    col,
                )  # fmt: skip
            )
            continue
        try:
            Draft202012Validator.check_schema(dict(schema))
        except SchemaError as exc:
            raise GateUsageError(
                f"the current schema of tool {tool!r} is not valid JSON Schema: {exc.message}"
            ) from None
        validator = Draft202012Validator(dict(schema))
        # The first recorded call that no longer fits is enough to say what broke.
        misfit = next(
            (
                (case, error)
                for case in skill.cases
                for call in case.calls
                if call.tool == tool
                for error in [next(iter(validator.iter_errors(dict(call.arguments))), None)]
                if error is not None
            ),
            None,
        )
        if misfit is not None:
            case, error = misfit
            where = "/".join(str(p) for p in error.absolute_path) or "arguments"
            findings.append(
                GateFinding(
                    "SBG402",
                    "error",
                    skill.id,
                    "tools",
                    f"tool {tool!r} changed: the call recorded in case {case.trajectory_id!r} "
                    f"no longer fits its schema ({where}: {error.message}); re-learn the skill "
                    "from runs against the new tool, or restore the tool's old parameters",
                    py,
                    line,
                    col,
                )  # fmt: skip
            )
    return findings


def run_gate(
    bank: SkillBank,
    *,
    base: str | None = None,
    paths: Sequence[str] = (),
    fast: bool = False,
    tool_specs: Mapping[str, Mapping[str, JSON]] | None = None,
    max_examples: int = 25,
    progress: Callable[[str], None] | None = None,
) -> GateReport:
    """Check the skills a change touches (all of them without ``base`` or ``paths``).

    Args:
        bank: The bank to check (its working tree is what is checked).
        base: A git ref; only skills changed since its merge base with HEAD (and the skills
            that require them) are checked, and version bumps are checked against it.
        paths: Files (as pre-commit passes them); only the skills holding them are checked.
        fast: Only the checks that run no code (validate, requires): for a pre-commit hook.
        tool_specs: The current tools (name -> parameters schema); None skips that check.
        max_examples: Generated examples per skill for the property check.
        progress: Called with each skill id before it is checked.

    Raises:
        GateUsageError: ``base`` is not a commit.
    """
    lib = bank.library
    root = bank.root
    run = _Run(root, lib.rel)
    head_ids = lib.ids()
    base_commit: str | None = None
    removed: tuple[str, ...] = ()
    if base is not None and paths:
        raise GateUsageError("give either --base or paths, not both")
    if base is not None:
        base_commit, changed = changed_skills(root, lib.rel, base)
        removed = tuple(sorted(i for i in changed if i not in head_ids))
    elif paths:
        changed = _ids_for_paths(root, lib.rel, paths, head_ids)
    else:
        changed = set(head_ids)
    library: dict[str, Skill] = {}
    broken: dict[str, LibraryError] = {}
    for sid in head_ids:
        try:
            library[sid] = lib.load(sid)
        except LibraryError as exc:
            broken[sid] = exc
    requires_map = {sid: s.requires for sid, s in library.items()}
    _check_aliases(run, lib, library)
    for alias, target in lib.aliases().items():
        if target in library:
            library.setdefault(alias, library[target])
    scope = {i for i in changed if i in head_ids}
    scope |= {sid for sid in library if closure(sid, requires_map) & changed}
    cycle = requirement_cycle(requires_map)
    for sid in track(sorted(scope), "gate"):
        if progress is not None:
            progress(sid)
        if sid in broken:
            run.record(sid, "load", time.monotonic(), _load_findings(run, sid, broken[sid]))
            continue
        skill = library[sid]
        valid = _validate(run, skill)
        if fast:
            _check_requires(run, skill, library, cycle)
            continue
        if valid:
            _prove(run, bank, skill, library, max_examples)
        else:
            for check in ("replay", "properties", "determinism"):
                run.record(sid, check, time.monotonic(), skipped="validation failed: not run")
        if base_commit is not None:
            _check_version(run, skill, lib.load_at(sid, base_commit))
        else:
            run.record(sid, "version", time.monotonic(), skipped="no --base to compare with")
        _check_requires(run, skill, library, cycle)
        _check_tools(run, skill, tool_specs)
    shown = git(root, "rev-parse", "--show-prefix", check=False)
    return GateReport(
        prefix=shown.stdout.strip() if shown.returncode == 0 else "",
        root=root,
        base=base,
        base_commit=base_commit,
        skills=tuple(sorted(scope)),
        removed=removed,
        outcomes=tuple(run.outcomes),
    )
