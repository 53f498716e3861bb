"""Upkeep of a skill library: refine from failures, merge duplicates, follow tool drift, prune.

Each function takes a `SkillBank`, checks every change the way learning does (validate with
the libcst policy, replay every recorded case in the sandbox) and writes it as one git commit
whose message says why:

- `refine`: failed runs of a known skill are contrasted with the skill's recorded successes.
  A tool-result field that separates them (``stock["available"] < quantity``,
  ``order["status"] == "shipped"``) becomes a guard that raises a declared ``ValueError``
  before the call that failed; the guarded skill must still replay every case and must raise
  on each failure's recorded responses. Minor version bump.
- `find_duplicates` / `merge_duplicates`: skills with the same normalised code (parameters and
  locals renamed, docstrings dropped) or the same recorded tool-call sequences; the one with
  more cases is kept (gaining the other's cases that replay on it) and the other is
  deprecated in its favour, so its callers keep working.
- `check_drift`: a tool whose parameters schema changed (sha256 of its canonical JSON) makes
  the skills using it re-prove (replay, and every recorded call checked against the new
  schema as `skillbank.gate` does); those that fail are demoted one stage, those that pass
  get the new ``tools.json`` (patch bump).
- `prune`: skills that keep failing (ledger) or are never used are removed in one commit,
  except those another skill requires.
"""

from __future__ import annotations

import ast
import hashlib
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sandbox import SkillError
from skillbank.compiler import pattern_key
from skillbank.compose import grant
from skillbank.errors import LibraryError, SkillNotFound
from skillbank.gate import normalise_specs, tool_findings
from skillbank.library import Branch, Restamp, StoredChange
from skillbank.lifecycle import Lifecycle
from skillbank.proving import explain, replay_case
from skillbank.skill import Case, Skill, SkillDraft, Stage, TestedSkill
from skillbank.trajectory import Step, ToolSpec, Trajectory, canonical_json
from skillbank.validate import normalize_source
from skillbank.versioning import bump

__all__ = [
    "DriftEntry",
    "DriftReport",
    "DuplicatePair",
    "PruneEntry",
    "PruneReport",
    "RefineEntry",
    "RefineReport",
    "check_drift",
    "find_duplicates",
    "merge_duplicates",
    "prune",
    "refine",
]

JSON = Any

#: One stage down, for a skill that no longer passes its checks.
_DEMOTE: dict[str, Stage] = {
    "autonomous": "associative",
    "associative": "cognitive",
    "cognitive": "cognitive",
}

_LEN = "<len>"


# --- refine -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RefineEntry:
    """What `refine` did for one skill (or one failure no skill matched)."""

    #: The skill refined (None when the failures matched no skill).
    skill_id: str | None
    #: "refined", "unchanged" (it already raises on these runs), "no separating field",
    #: "rejected" (the guarded skill failed its checks),
    #: "unmatched" (no skill has this call pattern) or "skipped" (not a failure).
    action: str
    #: The failure trajectories considered.
    trajectories: tuple[str, ...]
    #: The guard's condition as written in the code (``stock["available"] < quantity``).
    guard: str | None = None
    #: The version written.
    version: str | None = None
    #: Why nothing was written, for a reader.
    reason: str | None = None

    def to_json(self) -> dict[str, JSON]:
        """The entry as JSON data."""
        return {
            "skill_id": self.skill_id,
            "action": self.action,
            "trajectories": list(self.trajectories),
            "guard": self.guard,
            "version": self.version,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class RefineReport:
    """The outcome of one `refine` call."""

    #: One entry per skill the failures matched, plus one per unmatched or skipped run.
    entries: tuple[RefineEntry, ...]
    #: The commit holding the refined skills (None when nothing changed).
    commit: str | None = None

    @property
    def refined(self) -> list[str]:
        """Ids of the skills that got a guard."""
        return [e.skill_id for e in self.entries if e.action == "refined" and e.skill_id]

    def to_json(self) -> dict[str, JSON]:
        """The report as JSON data (the CLI's ``--json`` output)."""
        return {"commit": self.commit, "entries": [e.to_json() for e in self.entries]}


@dataclass(frozen=True)
class _Failure:
    """A failed run mapped onto a skill: its arguments, answered calls, and the failing call."""

    trajectory: Trajectory
    #: The skill's arguments, read back from the run's calls.
    args: dict[str, JSON]
    #: The successful calls before the failing one (answered from the recording).
    answered: tuple[Step, ...]
    #: The tool of the call that failed (or that the agent did not dare to make).
    tool: str


@dataclass(frozen=True)
class _Guard:
    condition: str
    why: str


def _is_failure(t: Trajectory) -> bool:
    return not t.outcome.success or bool(t.steps and t.steps[-1].error is not None)


def _case_tools(skill: Skill) -> list[list[str]]:
    return [[c.tool for c in case.calls] for case in skill.cases]


def _matches(skill: Skill, t: Trajectory) -> bool:
    if not skill.cases:
        return False
    tools = [s.tool for s in t.steps]
    if pattern_key(t.steps) == pattern_key(skill.cases[0].calls):
        return True
    return any(len(tools) <= len(seq) and seq[: len(tools)] == tools for seq in _case_tools(skill))


def _map_failure(skill: Skill, t: Trajectory) -> _Failure | str:
    """Where the run failed on the skill's pattern, and the skill's arguments for it."""
    steps = list(t.steps)
    failed_at = next((i for i, s in enumerate(steps) if s.error is not None), len(steps))
    longest = max(_case_tools(skill), key=len)
    if failed_at >= len(longest):
        return "it failed after the skill's last call, so no call can be guarded"
    tool = longest[failed_at]
    if failed_at < len(steps) and steps[failed_at].tool != tool:
        return f"its failing call {steps[failed_at].tool} is not the skill's call {tool}"
    args: dict[str, JSON] = {}
    for param in skill.signature.params:
        source = _param_source(skill, param.name)
        if source is not None and source[0] < len(steps):
            value = steps[source[0]].arguments.get(source[1], _MISSING)
            if value is not _MISSING:
                args[param.name] = value
                continue
        if not param.has_default:
            return f"cannot tell its value of the skill's argument {param.name!r} from its calls"
    return _Failure(t, args, tuple(steps[:failed_at]), tool)


_MISSING = object()


def _param_source(skill: Skill, name: str) -> tuple[int, str] | None:
    """The (call index, argument name) every recorded case passed parameter ``name`` to."""
    cases = [c for c in skill.cases if name in c.args]
    if not cases:
        return None
    first = cases[0]
    for i, call in enumerate(first.calls):
        for arg, value in sorted(call.arguments.items()):
            if canonical_json(value) != canonical_json(first.args[name]):
                continue
            if all(
                i < len(c.calls)
                and canonical_json(c.calls[i].arguments.get(arg)) == canonical_json(c.args[name])
                for c in cases
            ):
                return i, arg
    return None


def _fields(
    value: JSON, path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], JSON]]:
    """Every scalar inside a tool result, with its path (lists: their length and item 0)."""
    if isinstance(value, dict):
        for key in sorted(value):
            yield from _fields(value[key], (*path, key))
    elif isinstance(value, list):
        yield (*path, _LEN), len(value)
        if value:
            yield from _fields(value[0], (*path, 0))
    else:
        yield path, value


def _expr(var: str, path: tuple[str | int, ...]) -> str:
    text = var
    for part in path:
        if part == _LEN:
            text = f"len({text})"
        else:
            text += f"[{part!r}]" if isinstance(part, int) else f"[{json.dumps(part)}]"
    return text


def _result_vars(source: str) -> dict[str, str]:
    """Tool name -> the variable its result is assigned to, for tools called once at top level."""
    tree = ast.parse(source)
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_"))
    counts: dict[str, int] = {}
    for node in ast.walk(fn):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "tools"
        ):
            counts[node.func.attr] = counts.get(node.func.attr, 0) + 1
    out: dict[str, str] = {}
    for stmt in fn.body:
        if (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
            and isinstance(stmt.value, ast.Call)
            and isinstance(stmt.value.func, ast.Attribute)
            and isinstance(stmt.value.func.value, ast.Name)
            and stmt.value.func.value.id == "tools"
            and counts.get(stmt.value.func.attr) == 1
        ):
            out[stmt.value.func.attr] = stmt.targets[0].id
    return out


def _separating_guards(skill: Skill, failures: Sequence[_Failure]) -> list[_Guard]:
    """Conditions true on every failure and false on every recorded case, best first.

    Looks at the results of the calls before the failing one, the nearest call first; per
    field: a number below a numeric argument, a number below (above) every success, then a
    categorical value (a bool, or a string/number the successes repeat) seen only in failures.
    """
    variables = _result_vars(skill.source)
    k = min(len(f.answered) for f in failures)
    numeric = [p.name for p in skill.signature.params if p.annotation in ("int", "float")]
    guards: list[_Guard] = []
    for i in reversed(range(k)):
        tools = {f.answered[i].tool for f in failures}
        if len(tools) != 1:
            continue
        (tool,) = tools
        var = variables.get(tool)
        cases = [c for c in skill.cases if len(c.calls) > i and c.calls[i].tool == tool]
        if var is None or not cases:
            continue
        fail_fields = [dict(_fields(f.answered[i].result)) for f in failures]
        ok_fields = [dict(_fields(c.calls[i].result)) for c in cases]
        flowing = {
            canonical_json(v) for c in cases for call in c.calls for v in call.arguments.values()
        }
        paths = sorted(set.intersection(*(set(d) for d in fail_fields + ok_fields)), key=str)
        for path in paths:
            bad = [d[path] for d in fail_fields]
            good = [d[path] for d in ok_fields]
            expr = _expr(var, path)
            numbers = all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in bad + good
            )
            if numbers:
                for p in numeric:
                    if (
                        all(p in f.args for f in failures)
                        and all(b < f.args[p] for b, f in zip(bad, failures, strict=True))
                        and all(
                            p in c.args and g >= c.args[p] for g, c in zip(good, cases, strict=True)
                        )
                    ):
                        guards.append(_Guard(f"{expr} < {p}", f"{expr} is below {p}"))
                if max(bad) < min(good):
                    guards.append(
                        _Guard(f"{expr} <= {max(bad)!r}", f"{expr} is at most {max(bad)!r}")
                    )
                elif min(bad) > max(good):
                    guards.append(
                        _Guard(f"{expr} >= {min(bad)!r}", f"{expr} is at least {min(bad)!r}")
                    )
                continue
            scalars = all(isinstance(v, str | bool | int | float) or v is None for v in bad + good)
            seen_bad = {canonical_json(v) for v in bad}
            if not scalars or seen_bad & {canonical_json(v) for v in good}:
                continue
            categorical = all(isinstance(v, bool) for v in bad + good) or (
                len({canonical_json(v) for v in good}) < len(good) and not seen_bad & flowing
            )
            if not categorical:
                continue
            values = sorted({canonical_json(v): v for v in bad}.values(), key=canonical_json)
            if len(values) == 1:
                cond = f"{expr} == {values[0]!r}"
                if isinstance(values[0], bool):
                    cond = expr if values[0] else f"not {expr}"
                guards.append(_Guard(cond, f"{expr} is {values[0]!r}"))
            else:
                listed = ", ".join(repr(v) for v in values)
                guards.append(_Guard(f"{expr} in ({listed})", f"{expr} is one of {listed}"))
    return guards


def _guarded_source(source: str, tool: str, guard: _Guard, ids: Sequence[str]) -> str | None:
    """The source with ``if <guard>: raise ValueError(...)`` before the call of ``tool``."""
    tree = ast.parse(source)
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_"))
    body = fn.body
    doc = (
        body[0]
        if body
        and isinstance(body[0], ast.Expr)
        and isinstance(getattr(body[0], "value", None), ast.Constant)
        else None
    )
    target = None
    for stmt in body:
        if stmt is doc:
            continue
        if any(
            isinstance(n, ast.Attribute)
            and n.attr == tool
            and isinstance(n.value, ast.Name)
            and n.value.id == "tools"
            for n in ast.walk(stmt)
        ):
            target = stmt
            break
    if target is None or doc is None or doc.end_lineno is None:
        return None
    lines = source.split("\n")
    indent = " " * target.col_offset
    why = guard.why.replace('"', "'")
    message = f"{tool} would fail: {why} (as in the failed run(s) {', '.join(ids)})"
    guard_lines = [
        f"{indent}if {guard.condition}:",
        f"{indent}    raise ValueError(",
        f"{indent}        {json.dumps(message)}",
        f"{indent}    )",
    ]
    lines[target.lineno - 1 : target.lineno - 1] = guard_lines
    close = doc.end_lineno - 1
    entry = f"ValueError: when {guard.why}; {tool} would fail (refined from failed runs)."
    doc_indent = " " * doc.col_offset
    docstring = doc.value.value if isinstance(doc.value, ast.Constant) else ""
    if lines[close].strip() == '"""':
        if isinstance(docstring, str) and "Raises:" in docstring:
            lines[close:close] = [f"{doc_indent}    {entry}"]
        else:
            lines[close:close] = ["", f"{doc_indent}Raises:", f"{doc_indent}    {entry}"]
    else:
        at = lines[close].rfind('"""')
        if at < 0:
            return None
        lines[close] = (
            lines[close][:at]
            + f"\n\n{doc_indent}Raises:\n{doc_indent}    {entry}\n{doc_indent}"
            + lines[close][at:]
        )
    return normalize_source("\n".join(lines))


def _rejects(
    life: Lifecycle, draft: SkillDraft, failure: _Failure, library: Mapping[str, Skill]
) -> str | None:
    """None when the skill raises ValueError on the failure's recorded answers before its call."""
    answered = list(failure.answered)
    position = [0]
    problem: list[str] = []

    def double(name: str) -> Callable[..., JSON]:
        def call(**arguments: JSON) -> JSON:
            n = position[0]
            position[0] += 1
            if n >= len(answered):
                problem.append(f"it still made call {n + 1}, {name}(...)")
                raise RuntimeError("refine: the failing call was made")
            if answered[n].tool != name:
                problem.append(f"call {n + 1} was {name}, the run called {answered[n].tool}")
                raise RuntimeError("refine: the call differs from the recorded one")
            return answered[n].result

        return call

    doubles = {name: double(name) for name in draft.tools}
    granted = grant(draft.tools, draft.requires, doubles, library, life.sandbox(), life.limits)
    result = life.sandbox().run(draft.source, draft.id, dict(failure.args), granted, life.limits)
    if problem:
        return problem[0]
    if result.ok:
        return "it returned normally"
    err = result.error
    if not (isinstance(err, SkillError) and err.exc_type == "ValueError"):
        return f"it failed with {type(err).__name__}: {err}, not the declared ValueError"
    return None


def _check(life: Lifecycle, draft: SkillDraft, library: Mapping[str, Skill]) -> TestedSkill | str:
    checked = life.check(draft, library)
    return checked if isinstance(checked, TestedSkill) else (explain(checked) or "failed")


def _refined(
    skill: Skill, ids: tuple[str, ...], guard: str, tested: TestedSkill
) -> tuple[RefineEntry, StoredChange]:
    """The entry and the change of a refined skill: a minor bump, same stage."""
    version = bump(skill.version, "minor")
    entry = RefineEntry(skill.id, "refined", ids, guard, str(version))
    return entry, StoredChange(tested, version, skill.stage, "refined", skill.deprecated_by)


def _refine_one(
    life: Lifecycle, skill: Skill, failures: Sequence[_Failure], library: Mapping[str, Skill]
) -> tuple[RefineEntry, StoredChange | None]:
    ids = tuple(f.trajectory.id for f in failures)
    tools = {f.tool for f in failures}
    problems: list[str] = []
    current = skill.as_draft()
    if not any(_rejects(life, current, f, library) for f in failures):
        return RefineEntry(skill.id, "unchanged", ids, reason="it already raises ValueError "
                           "before the failing call on these runs"), None  # fmt: skip
    if len(tools) == 1:
        (tool,) = tools
        for guard in _separating_guards(skill, failures):
            source = _guarded_source(skill.source, tool, guard, ids)
            if source is None:
                continue
            checked = _check(life, skill.as_draft(source=source), library)
            if isinstance(checked, str):
                problems.append(f"guard {guard.condition}: {checked}")
                continue
            missed = [
                (f.trajectory.id, _rejects(life, checked.draft, f, library)) for f in failures
            ]
            bad = [f"{tid}: {why}" for tid, why in missed if why]
            if bad:
                problems.append(f"guard {guard.condition} did not reject {'; '.join(bad)}")
                continue
            return _refined(skill, ids, guard.condition, checked)
    repaired = _llm_repair(life, skill, failures, library)
    if isinstance(repaired, TestedSkill):
        return _refined(skill, ids, "(LLM repair)", repaired)
    if problems:
        reason = "; ".join(problems[:3])
        if repaired:
            reason += f"; {repaired}"
        return RefineEntry(skill.id, "rejected", ids, reason=reason), None
    reason = (
        "no separating field: no tool-result field tells these failures from the recorded successes"
    )
    if repaired:
        reason += f"; {repaired}"
    return RefineEntry(skill.id, "no separating field", ids, reason=reason), None


def _failed_because(failure: _Failure) -> str:
    steps = failure.trajectory.steps
    n = len(failure.answered)
    said = steps[n].error if n < len(steps) else failure.trajectory.outcome.detail
    return said or "the run failed"


def _llm_repair(
    life: Lifecycle, skill: Skill, failures: Sequence[_Failure], library: Mapping[str, Skill]
) -> TestedSkill | str | None:
    """Ask the configured LLM compiler for a guarded skill; None when there is none."""
    llm = life.llm()
    if llm is None:
        return None
    runs = [c.to_trajectory(skill.tool_specs) for c in skill.cases]
    found: list[TestedSkill] = []

    def check(draft: SkillDraft) -> str | None:
        checked = _check(life, draft, library)
        if isinstance(checked, str):
            return checked
        bad = [
            f"on the failed run {f.trajectory.id} (arguments {canonical_json(f.args)}) the "
            f"skill must raise ValueError before calling {f.tool}, because that call failed "
            f"({_failed_because(f)}); "
            f"but {why}"
            for f in failures
            for why in [_rejects(life, checked.draft, f, library)]
            if why
        ]
        if bad:
            return "; ".join(bad) + ". Add a guard that raises ValueError (declared under Raises:)."
        found.append(checked)
        return None

    result = llm.compile(skill.id, runs, check)
    if result.draft is None or not found:
        return f"the LLM compiler did not fix it: {result.error}"
    return found[-1]


def refine(
    life: Lifecycle,
    failures: Sequence[Trajectory],
    *,
    skill_id: str | None = None,
    branch: str | Branch | None = None,
) -> RefineReport:
    """Add guards learned from failed runs to the skills they are runs of; one commit.

    Each failure is matched to a skill by its call pattern (the pattern key, or its calls
    being a prefix of a recorded case's), or to ``skill_id`` when given. For each skill, the
    results of the calls before the one that failed are compared with the same results in the
    skill's recorded cases; the first field that separates them all becomes a guard raising
    ``ValueError`` before the failing call (declared under ``Raises:``). The guarded skill
    must pass validation, replay every recorded case, and raise on each failure's recorded
    responses instead of making the failing call. Without a separating field, a configured
    LLM compiler is asked to repair the skill (checked the same way). Each refined skill gets
    a minor version bump; the commit message names the failure trajectories. ``branch``
    says where the commit goes (`Lifecycle.target`).

    Raises:
        SkillNotFound: ``skill_id`` names no skill.
        LibraryError: the library cannot be written (nothing is changed).
    """
    skills = {s.id: s for s in life.library.load_all()}
    if skill_id is not None and skill_id not in skills:
        raise SkillNotFound(skill_id, sorted(skills))
    entries: list[RefineEntry] = []
    groups: dict[str, list[_Failure]] = {}
    for t in failures:
        if not _is_failure(t):
            entries.append(RefineEntry(None, "skipped", (t.id,), reason="the run succeeded"))
            continue
        candidates = (
            [skills[skill_id]]
            if skill_id
            else [s for s in skills.values() if not s.deprecated_by and _matches(s, t)]
        )
        mapped = [(s, _map_failure(s, t)) for s in candidates]
        usable = [(s, m) for s, m in mapped if isinstance(m, _Failure)]
        if not usable:
            why = "; ".join(f"{s.id}: {m}" for s, m in mapped if isinstance(m, str))
            entries.append(RefineEntry(None, "unmatched", (t.id,),
                                       reason=why or "no skill has this call pattern"))  # fmt: skip
            continue
        s, m = usable[0]
        groups.setdefault(s.id, []).append(m)
    changes: list[StoredChange] = []
    with life.library.lock():
        library = {s.id: s for s in life.library.load_all()}
        for sid in sorted(groups):
            skill = library[sid]
            entry, change = _refine_one(life, skill, groups[sid], library)
            entries.append(entry)
            if change is not None:
                changes.append(change)
        commit = None
        if changes:
            lines = [f"skillbank refine: guard {len(changes)} skill(s) against failed runs", ""]
            for e in entries:
                if e.action == "refined" and e.skill_id:
                    old = library[e.skill_id].version
                    lines.append(f"refined {e.skill_id} v{old} -> v{e.version}: raise ValueError "
                                 f"when {e.guard}")  # fmt: skip
                    lines += [f"- failure {tid}" for tid in e.trajectories]
            on = life.target(branch, "refine", [t.sha256 for t in failures])
            commit = life.library.store(changes, "\n".join(lines) + "\n", branch=on)
    return RefineReport(tuple(entries), commit)


# --- duplicates -------------------------------------------------------------------------


@dataclass(frozen=True)
class DuplicatePair:
    """Two skills that do the same thing."""

    #: The skill to keep (more recorded cases).
    keep: str
    #: The skill to deprecate in favour of ``keep``.
    drop: str
    #: Why they are duplicates: "same code" and/or "same tool-call sequences".
    reasons: tuple[str, ...]
    #: Share of recorded tool-call sequences in common (Jaccard, 0..1).
    overlap: float

    def to_json(self) -> dict[str, JSON]:
        """The pair as JSON data."""
        return {"keep": self.keep, "drop": self.drop, "reasons": list(self.reasons),
                "overlap": round(self.overlap, 3)}  # fmt: skip


class _Rename(ast.NodeTransformer):
    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def visit_Name(self, node: ast.Name) -> ast.Name:
        if node.id != "tools" and node.id in self.names:
            node.id = self.names[node.id]
        return node

    def visit_arg(self, node: ast.arg) -> ast.arg:
        node.arg = self.names.get(node.arg, node.arg)
        return node


def normalised_shape(source: str) -> str:
    """A hash of the code without docstrings, with function, parameters and locals renamed."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError):
        return hashlib.sha256(source.encode()).hexdigest()
    rename = _Rename()
    for fn in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]:
        if not fn.name.startswith("_"):
            fn.name = "skill"
        if (
            fn.body
            and isinstance(fn.body[0], ast.Expr)
            and isinstance(getattr(fn.body[0], "value", None), ast.Constant)
        ):
            fn.body = fn.body[1:] or [ast.Pass()]
        for a in fn.args.args + fn.args.kwonlyargs:
            rename.names.setdefault(a.arg, f"v{len(rename.names)}")
        for node in ast.walk(fn):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                rename.names.setdefault(node.id, f"v{len(rename.names)}")
    tree = rename.visit(tree)
    return hashlib.sha256(ast.dump(tree, annotate_fields=False).encode()).hexdigest()


def _sequences(skill: Skill) -> set[tuple[str, ...]]:
    return {tuple(c.tool for c in case.calls) for case in skill.cases}


def find_duplicates(life: Lifecycle, *, min_overlap: float = 0.5) -> list[DuplicatePair]:
    """Pairs of skills (not deprecated) with the same normalised code or call sequences.

    Two skills are duplicates when their code is the same once docstrings are dropped and the
    function, parameters and locals are renamed in order, or when at least ``min_overlap`` of
    their recorded tool-call sequences are shared (Jaccard) and they declare the same tools.
    """
    skills = [s for s in life.library.load_all() if not s.deprecated_by]
    shapes = {s.id: normalised_shape(s.source) for s in skills}
    pairs: list[DuplicatePair] = []
    for n, a in enumerate(skills):
        for b in skills[n + 1 :]:
            reasons = []
            if shapes[a.id] == shapes[b.id]:
                reasons.append("same code")
            sa, sb = _sequences(a), _sequences(b)
            overlap = len(sa & sb) / len(sa | sb) if sa | sb else 0.0
            if overlap >= min_overlap and a.tools == b.tools and a.requires == b.requires:
                reasons.append("same tool-call sequences")
            if not reasons:
                continue
            keep, drop = sorted((a, b), key=lambda s: (-len(s.cases), s.id))
            pairs.append(DuplicatePair(keep.id, drop.id, tuple(reasons), overlap))
    return pairs


def merge_duplicates(
    life: Lifecycle, pair: DuplicatePair, *, branch: str | Branch | None = None
) -> str:
    """Keep ``pair.keep`` (plus the other's cases); deprecate ``pair.drop``.

    Every recorded case of the dropped skill must replay on the kept one (then the kept skill
    does everything the other did), else nothing is merged.

    The dropped skill keeps running (with a deprecation warning) and so do its callers. Both
    commits (the cases moved, the deprecation) go on one branch (``branch``, see
    `Lifecycle.target`).

    Returns:
        The sha of the last commit made.

    Raises:
        SkillNotFound: either skill does not exist.
        LibraryError: the library cannot be written.
    """
    commit: str | None = None
    with life.library.lock():
        keep, drop = life.library.load(pair.keep), life.library.load(pair.drop)
        if drop.deprecated_by:
            return ""  # already merged (e.g. a third duplicate of the same skill)
        if keep.deprecated_by:
            raise LibraryError(
                f"{pair.keep} is itself deprecated in favour of {keep.deprecated_by}; merge "
                f"{pair.drop} into {keep.deprecated_by} instead"
            )
        library = {s.id: s for s in life.library.load_all()}
        on = life.target(branch, "dedup", [pair.keep, pair.drop])
        ours = [p.name for p in keep.signature.params]
        theirs = [p.name for p in drop.signature.params]
        rename = dict(zip(theirs, ours, strict=True)) if len(ours) == len(theirs) else {}
        known = {c.trajectory_sha256 for c in keep.cases}
        gained: list[Case] = []
        for case in drop.cases:
            if case.trajectory_sha256 in known:
                continue
            moved = replace(case, args={rename.get(k, k): v for k, v in case.args.items()})
            replayed = replay_case(life.sandbox(), keep, moved, life.limits, library)
            if not replayed.ok:
                # Then the kept skill does not do what the other did: not a duplicate.
                raise LibraryError(
                    f"{pair.drop} is not a duplicate of {pair.keep}: its case "
                    f"{case.trajectory_id!r} does not replay on {pair.keep} "
                    f"({replayed.failure}); nothing was merged"
                )
            gained.append(moved)
        if gained:
            cases = tuple(sorted((*keep.cases, *gained),
                                 key=lambda c: (c.trajectory_id, c.trajectory_sha256)))  # fmt: skip
            checked = _check(life, keep.as_draft(cases=cases), library)
            if isinstance(checked, TestedSkill):
                message = (
                    f"skillbank dedup: {pair.keep} takes {len(gained)} case(s) of {pair.drop}\n\n"
                    f"{pair.drop} duplicates {pair.keep} ({', '.join(pair.reasons)}); its cases "
                    "that replay on the kept skill are kept with it:\n"
                    + "".join(f"- {c.trajectory_id} sha256:{c.trajectory_sha256}\n" for c in gained)
                )
                commit = life.library.store(
                    [StoredChange(checked, keep.version, keep.stage, "merged",
                                  keep.deprecated_by)],
                    message,
                    branch=on,
                )  # fmt: skip
                on = on.after(commit)
    return life.deprecate(pair.drop, by=pair.keep, branch=on) or commit or ""


# --- drift ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftEntry:
    """What `check_drift` did for one skill using a changed tool."""

    #: The skill.
    skill_id: str
    #: The changed tools it uses.
    tools: tuple[str, ...]
    #: "updated" (passed; tools.json rewritten, patch bump) or "demoted" (failed).
    action: str
    #: The stage after (for "demoted", one lower unless already cognitive).
    stage: str
    #: The version after.
    version: str
    #: What failed, for a demoted skill.
    reason: str | None = None

    def to_json(self) -> dict[str, JSON]:
        """The entry as JSON data."""
        return {"skill_id": self.skill_id, "tools": list(self.tools), "action": self.action,
                "stage": self.stage, "version": self.version, "reason": self.reason}  # fmt: skip


@dataclass(frozen=True)
class DriftReport:
    """The outcome of `check_drift`."""

    #: One entry per skill that uses a changed tool.
    entries: tuple[DriftEntry, ...]
    #: The tools whose parameters schema changed (or that disappeared).
    changed_tools: tuple[str, ...]
    #: The commit (None when nothing changed).
    commit: str | None = None

    @property
    def demoted(self) -> list[str]:
        """Ids of the skills that failed against the new schemas."""
        return [e.skill_id for e in self.entries if e.action == "demoted"]

    def to_json(self) -> dict[str, JSON]:
        """The report as JSON data."""
        return {"commit": self.commit, "changed_tools": list(self.changed_tools),
                "entries": [e.to_json() for e in self.entries]}  # fmt: skip


def schema_hash(parameters: Mapping[str, JSON] | None) -> str:
    """The sha256 of a tool's parameters schema as canonical JSON."""
    return hashlib.sha256(canonical_json(dict(parameters or {})).encode()).hexdigest()


def _stored_parameters(skill: Skill, tool: str) -> Mapping[str, JSON]:
    """The parameters schema ``skill``'s ``tools.json`` holds for ``tool`` ({} when none)."""
    spec = skill.tool_specs.get(tool)
    return spec.parameters if spec is not None else {}


def _current_specs(tool_specs: Mapping[str, Mapping[str, JSON]]) -> dict[str, dict[str, JSON]]:
    """name -> parameters schema, from that already or from full tool definitions."""
    full = any(
        isinstance(v, Mapping) and ("function" in v or "inputSchema" in v or "name" in v)
        for v in tool_specs.values()
    )
    if full:
        return normalise_specs(dict(tool_specs), "tool specs")
    return {k: dict(v) for k, v in tool_specs.items()}


def check_drift(
    life: Lifecycle,
    tool_specs: Mapping[str, Mapping[str, JSON]],
    *,
    branch: str | Branch | None = None,
) -> DriftReport:
    """Re-prove the skills whose tools' parameters schemas changed; demote or update them.

    ``tool_specs`` maps tool name to its parameters schema (what
    `skillbank.gate.load_tool_specs` returns), or to full tool definitions. A tool is changed
    when the sha256 of its schema's canonical JSON differs from the one in a skill's
    ``tools.json`` (a tool missing from ``tool_specs`` is not checked). Each skill using a
    changed tool replays its cases and has every recorded call checked against the new schema
    (`skillbank.gate`'s tool check). A skill that fails drops one stage (autonomous →
    associative → cognitive); one that passes gets the new schema in ``tools.json`` and a
    patch bump. All of it is one commit, on ``branch`` (see `Lifecycle.target`).

    Raises:
        GateUsageError: a current schema is not valid JSON Schema.
        LibraryError: the library cannot be written.
    """
    current = _current_specs(tool_specs)
    entries: list[DriftEntry] = []
    changed_tools: set[str] = set()
    changes: list[Restamp] = []
    with life.library.lock():
        skills = life.library.load_all()
        library = {s.id: s for s in skills}
        for skill in skills:
            changed = tuple(
                t
                for t in skill.tools
                if t in current
                and schema_hash(_stored_parameters(skill, t)) != schema_hash(current[t])
            )
            if not changed:
                continue
            changed_tools.update(changed)
            found = tool_findings(skill, current, life.library.rel)
            problems = [f.message for f in found if f.level == "error"]
            for case in skill.cases:
                result = replay_case(life.sandbox(), skill, case, life.limits, library)
                if not result.ok:
                    problems.append(
                        f"case {case.trajectory_id!r} no longer replays: {result.failure}"
                    )
            if problems:
                stage = _DEMOTE.get(skill.stage, "cognitive")
                entries.append(DriftEntry(skill.id, changed, "demoted", stage, str(skill.version),
                                          "; ".join(problems)))  # fmt: skip
                if stage != skill.stage:
                    changes.append(Restamp(skill, skill.version, stage, skill.deprecated_by))
                continue
            specs = dict(skill.tool_specs)
            for t in changed:
                specs[t] = replace(specs.get(t) or ToolSpec(t), parameters=dict(current[t]))
            version = bump(skill.version, "patch")
            changes.append(Restamp(replace(skill, tool_specs=specs), version, skill.stage,
                                   skill.deprecated_by))  # fmt: skip
            entries.append(DriftEntry(skill.id, changed, "updated", skill.stage, str(version)))
        commit = None
        if changes:
            lines = [
                f"skillbank drift: tool schema changed ({', '.join(sorted(changed_tools))})",
                "",
            ]
            for e in entries:
                if e.action == "demoted":
                    lines.append(f"demoted {e.skill_id} to {e.stage}: {e.reason}")
                else:
                    lines.append(
                        f"updated {e.skill_id} v{e.version}: tools.json follows "
                        f"{', '.join(e.tools)}; cases replay and fit the new schema"
                    )
            on = life.target(branch, "drift", sorted(changed_tools))
            commit = life.library.restamp(changes, "\n".join(lines) + "\n", branch=on)
    return DriftReport(tuple(entries), tuple(sorted(changed_tools)), commit)


# --- prune ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PruneEntry:
    """One skill `prune` removed (or would remove, or had to keep)."""

    #: The skill.
    skill_id: str
    #: "removed", "would remove" (dry run) or "kept" (another skill requires it).
    action: str
    #: Why it was chosen: failing (with its numbers) or unused.
    reason: str

    def to_json(self) -> dict[str, JSON]:
        """The entry as JSON data."""
        return {"skill_id": self.skill_id, "action": self.action, "reason": self.reason}


@dataclass(frozen=True)
class PruneReport:
    """The outcome of `prune`."""

    #: One entry per skill chosen.
    entries: tuple[PruneEntry, ...]
    #: The commit removing them (None on a dry run or when nothing was removed).
    commit: str | None = None

    @property
    def removed(self) -> list[str]:
        """Ids removed (or that would be, on a dry run)."""
        return [e.skill_id for e in self.entries if e.action in ("removed", "would remove")]

    def to_json(self) -> dict[str, JSON]:
        """The report as JSON data."""
        return {"commit": self.commit, "entries": [e.to_json() for e in self.entries]}


def _first_committed(life: Lifecycle, skill_id: str) -> float | None:
    entries = life.library.history(skill_id)
    if not entries:
        return None
    from datetime import datetime

    return datetime.fromisoformat(entries[-1].date).timestamp()


def prune(
    life: Lifecycle,
    *,
    min_calls: int = 10,
    max_failure_rate: float = 0.5,
    unused_days: float = 90,
    dry_run: bool = False,
    now: float | None = None,
    branch: str | Branch | None = None,
) -> PruneReport:
    """Remove skills that keep failing or are never used, in one commit.

    Failing: at least ``min_calls`` ledger rows of its current version and a failure rate
    above ``max_failure_rate``. Unused: no ledger row in the last ``unused_days`` days, first
    committed longer ago than that, and a ledger that has been recording since before then
    (the ledger is local: on a fresh clone it knows nothing, so nothing counts as unused). A
    skill another skill requires, or that a deprecated alias points to, is never removed (it
    is listed as "kept"). ``dry_run`` lists without changing anything. The commit goes on
    ``branch`` (see `Lifecycle.target`).

    Raises:
        LibraryError: the library cannot be written (nothing is changed).
    """
    now = time.time() if now is None else now
    ledger = life.ledger()
    cutoff = now - unused_days * 86400
    entries: list[PruneEntry] = []
    commit = None
    with life.library.lock():
        skills = life.library.load_all()
        required: dict[str, list[str]] = {}
        for s in skills:
            for r in s.requires:
                required.setdefault(r, []).append(s.id)
        for s in skills:
            if s.deprecated_by:  # the alias points at its replacement: keep the replacement
                required.setdefault(s.deprecated_by, []).append(f"{s.id} (its deprecated alias)")
        all_rows = {s.id: ledger.outcomes(s.id) for s in skills}
        # The ledger is local and not committed: on a fresh clone it is empty. Only a ledger
        # that has been watching since before the cutoff can say that a skill went unused.
        observed_since = min((r.ts for rows in all_rows.values() for r in rows), default=None)
        watching = observed_since is not None and observed_since <= cutoff
        chosen: list[tuple[str, str]] = []
        for s in skills:
            # Calls of the current version only: a repaired skill starts with a clean record.
            rows = [r for r in all_rows[s.id] if r.version in (str(s.version), "")]  # "": unknown
            failures = sum(1 for r in rows if r.failed_skill)
            if len(rows) >= min_calls and failures / len(rows) > max_failure_rate:
                chosen.append((s.id, f"failing: {failures} of {len(rows)} call(s) of v{s.version} "
                                     f"failed (more than {max_failure_rate:.0%})"))  # fmt: skip
                continue
            recent = [r for r in all_rows[s.id] if r.ts >= cutoff]
            born = _first_committed(life, s.id)
            if watching and not recent and (born is None or born <= cutoff):
                last = max((r.ts for r in all_rows[s.id]), default=None)
                said = (
                    "never called"
                    if last is None
                    else f"last called {(now - last) / 86400:.0f} day(s) ago"
                )
                chosen.append((s.id, f"unused: {said} (no call in {unused_days:g} day(s))"))
        keep = {sid for sid, _ in chosen if sid in required}
        for sid, why in chosen:
            if sid in keep:
                callers = ", ".join(sorted(required.get(sid, [])))
                entries.append(PruneEntry(sid, "kept", f"{why}; required by {callers}, so kept"))
            else:
                entries.append(PruneEntry(sid, "would remove" if dry_run else "removed", why))
        gone = [e for e in entries if e.action == "removed"]
        if gone and not dry_run:
            lines = [f"skillbank prune: remove {len(gone)} skill(s)", ""]
            lines += [f"removed {e.skill_id}: {e.reason}" for e in gone]
            commit = life.library.remove(
                [e.skill_id for e in gone],
                "\n".join(lines) + "\n",
                branch=life.target(branch, "prune", [e.skill_id for e in gone]),
            )
    return PruneReport(tuple(entries), commit)
