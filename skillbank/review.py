"""The review report: the Markdown body of a pull request that adds or changes skills.

``skillbank review --base REF`` compares the skills in the working tree with those at the
merge base of REF and HEAD and writes, for each added, changed or removed skill: its summary,
the signature diff (breaking or not), the code diff, the tools it reads and writes, the gate's
check results, the trajectories it came from, the stage change, and risk flags a reviewer
should look at first.
"""

from __future__ import annotations

import ast
import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from skillbank.errors import LibraryError
from skillbank.gate import CHECKS, GateReport, changed_skills, run_gate
from skillbank.skill import Skill

if TYPE_CHECKING:
    from skillbank.bank import SkillBank

__all__ = [
    "BODY_LIMIT",
    "READ_VERBS",
    "SkillReview",
    "review",
    "tool_effects",
]

JSON = Any

#: Leading words of tool names that read without changing anything.
READ_VERBS = frozenset(
    {
        "check", "count", "describe", "fetch", "find", "get", "inspect", "list", "lookup",
        "query", "read", "search", "show", "status", "view", "validate", "estimate", "preview",
    }
)  # fmt: skip

_MARK = {"passed": "✅ passed", "failed": "❌ failed", "skipped": "➖ skipped"}


def tool_effects(skill: Skill) -> dict[str, str]:
    """Tool name -> "reads" or "writes".

    A tool definition's own hint wins (MCP ``annotations.readOnlyHint`` or
    ``x-read-only``); otherwise the verb the name starts with decides (``get_``, ``list_``,
    ``find_``... read; anything else is assumed to write, the safe guess for a reviewer).
    """
    out = {}
    for tool in skill.tools:
        spec = skill.tool_specs.get(tool)
        extra = spec.extra if spec is not None else {}
        hints = extra.get("annotations", {})
        hint = hints.get("readOnlyHint") if isinstance(hints, Mapping) else None
        if hint is None:
            hint = extra.get("x-read-only")
        if isinstance(hint, bool):
            out[tool] = "reads" if hint else "writes"
        else:
            out[tool] = "reads" if tool.split("_", 1)[0].lower() in READ_VERBS else "writes"
    return out


@dataclass(frozen=True)
class SkillReview:
    """What changed in one skill, for the report."""

    #: The skill id.
    skill_id: str
    #: "added", "changed", "removed" or "unreadable" (its folder cannot be read).
    action: str
    #: The skill at the base (None when added).
    old: Skill | None
    #: The skill now (None when removed).
    new: Skill | None
    #: Risk flags, one sentence each.
    risks: tuple[str, ...]


def _diff(old: str, new: str, name: str) -> str:
    lines = difflib.unified_diff(
        old.splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile=f"a/{name}",
        tofile=f"b/{name}",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def _cases_text(skill: Skill) -> str:
    return "".join(
        json.dumps(c.to_json(), sort_keys=True, ensure_ascii=False) + "\n" for c in skill.cases
    )


def _fence(text: str, lang: str) -> str:
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}{lang}\n{text.rstrip()}\n{fence}"


def _hand_edited(skill: Skill) -> bool:
    """True when the code differs from what the compiler derives from the recorded cases."""
    from skillbank.compiler import compile_group
    from skillbank.errors import CompileError
    from skillbank.validate import code_shape

    if skill.requires or not skill.cases:
        return False
    try:
        runs = [c.to_trajectory(skill.tool_specs) for c in skill.cases]
        draft = compile_group(runs, name=skill.id)
    except (CompileError, RecursionError, ValueError):
        return True
    return code_shape(draft.source) != code_shape(skill.source)


def _loops(source: str) -> bool:
    """True when the code has a loop (parsed, never run)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError):
        return False
    return any(isinstance(n, (ast.For, ast.While, ast.comprehension)) for n in ast.walk(tree))


def _risks(
    sid: str, old: Skill | None, new: Skill | None, base_tools: set[str], breaking: bool
) -> tuple[str, ...]:
    if new is None:
        return ("removed: callers that still require it fail the gate",)
    flags = []
    writes = sorted(t for t, e in tool_effects(new).items() if e == "writes")
    if writes:
        flags.append(f"changes state: calls {', '.join(f'`{t}`' for t in writes)}")
    fresh = sorted(set(new.tools) - base_tools)
    if fresh:
        flags.append(f"calls tool(s) no skill used before: {', '.join(f'`{t}`' for t in fresh)}")
    if old is not None:
        added_tools = sorted(set(new.tools) - set(old.tools))
        if added_tools:
            names = ", ".join(f"`{t}`" for t in added_tools)
            flags.append(f"now calls tool(s) it did not call before: {names}")
        before = {(c.trajectory_id, c.trajectory_sha256): c.to_json() for c in old.cases}
        after = {(c.trajectory_id, c.trajectory_sha256): c.to_json() for c in new.cases}
        rewritten = sorted(k[0] for k in before if k in after and before[k] != after[k])
        dropped = sorted(k[0] for k in before if k not in after)
        if rewritten or dropped:
            parts = [f"rewritten: {', '.join(rewritten)}"] if rewritten else []
            parts += [f"removed: {', '.join(dropped)}"] if dropped else []
            flags.append(
                f"recorded evidence changed, not only added ({'; '.join(parts)}); "
                "see the cases diff"
            )
    if breaking:
        flags.append("breaking signature change: callers and agents must be updated")
    if len(new.cases) < 2:
        flags.append(f"learned from {len(new.cases)} run(s): little evidence it generalises")
    if _loops(new.source):
        flags.append("has a loop: the number of tool calls grows with the data")
    if _hand_edited(new):
        flags.append(
            "edited by hand (or by the LLM): the code differs from what the compiler derives "
            "from its cases; read it closely"
        )
    if new.deprecated_by:
        flags.append(f"deprecated in favour of `{new.deprecated_by}`")
    if old is not None and old.stage != new.stage:
        order = ("cognitive", "associative", "autonomous")
        if order.index(new.stage) > order.index(old.stage):
            flags.append(f"promoted {old.stage} -> {new.stage}: it will be trusted more")
    return tuple(flags)


def _section(
    item: SkillReview, gate: GateReport, signature_change: Sequence[str], breaking: bool
) -> list[str]:
    old, new = item.old, item.new
    shown = new or old
    assert shown is not None
    lines = [f"### `{item.skill_id}` ({item.action})", ""]
    lines.append(f"> {shown.description}")
    lines.append("")
    version = f"{old.version} → {new.version}" if old and new else str(shown.version)
    stage = f"{old.stage} → {new.stage}" if old and new and old.stage != new.stage else shown.stage
    lines += [f"- **Version:** {version}", f"- **Stage:** {stage}"]
    if new is not None:
        lines.append(f"- **Cases:** {len(new.cases)} recorded run(s)")
    if item.risks:
        lines += ["", "**Risk flags**", ""] + [f"- ⚠️ {r}" for r in item.risks]
    lines += ["", "**Signature**", ""]
    if old and new and old.signature.render() != new.signature.render():
        kind = "breaking" if breaking else "compatible"
        lines.append(_fence(f"- {old.signature.render()}\n+ {new.signature.render()}", "diff"))
        lines.append("")
        lines.append(f"{kind.capitalize()} change:")
        lines += [f"- {c}" for c in signature_change]
    else:
        lines.append(_fence(shown.signature.render(), "python"))
        if old and new:
            lines.append("")
            lines.append("Unchanged.")
    if new is not None:
        effects = tool_effects(new)
        reads = [f"`{t}`" for t, e in effects.items() if e == "reads"]
        writes = [f"`{t}`" for t, e in effects.items() if e == "writes"]
        lines += ["", "**Tools**", ""]
        lines.append(f"- reads: {', '.join(reads) or 'none'}")
        lines.append(f"- writes: {', '.join(writes) or 'none'}")
        if new.requires:
            lines.append(f"- skills it calls: {', '.join(f'`{r}`' for r in new.requires)}")
        outcomes = [o for o in gate.outcomes if o.skill_id == item.skill_id]
        if outcomes:
            lines += ["", "**Checks**", "", "| check | result | detail |", "| --- | --- | --- |"]
            for check in (*CHECKS, "load"):
                for o in outcomes:
                    if o.check == check:
                        detail = o.detail.replace("|", "\\|")
                        lines.append(f"| {check} | {_MARK[o.status]} | {detail} |")
            failing = [f for o in outcomes for f in o.findings]
            if failing:
                lines += ["", _fence("\n".join(f.render(gate.root) for f in failing), "text")]
        old_cases = {(c.trajectory_id, c.trajectory_sha256) for c in old.cases} if old else set()
        lines += ["", "**Learned from**", ""]
        for case in new.cases:
            tag = "" if (case.trajectory_id, case.trajectory_sha256) in old_cases else " (new)"
            task = " ".join(case.task.split())
            lines.append(
                f"- `{case.trajectory_id}` sha256 `{case.trajectory_sha256[:12]}`{tag}: {task}"
            )
    if old is not None and new is not None and old.source != new.source:
        lines += ["", "<details><summary>Code diff</summary>", ""]
        lines.append(_fence(_diff(old.source, new.source, f"{item.skill_id}/skill.py"), "diff"))
        lines += ["", "</details>"]
    if old is not None and new is not None and _cases_text(old) != _cases_text(new):
        old_text, new_text = _cases_text(old), _cases_text(new)
        kept = set(old_text.splitlines())
        if not kept <= set(new_text.splitlines()):  # more than new cases appended
            lines += ["", "<details><summary>Cases diff (recorded evidence changed)</summary>"]
            lines += ["", _fence(_diff(old_text, new_text, f"{item.skill_id}/cases.jsonl"),
                                 "diff"), "", "</details>"]  # fmt: skip
    elif new is not None and old is None:
        lines += ["", "<details><summary>Code</summary>", ""]
        lines.append(_fence(new.source, "python"))
        lines += ["", "</details>"]
    return lines + [""]


#: Characters a pull request's body may hold on GitHub.
BODY_LIMIT = 65_536
#: Room kept for the note naming the sections left out.
_OMITTED_ROOM = 4_000


def review(
    bank: SkillBank,
    base: str,
    *,
    tool_specs: Mapping[str, Mapping[str, JSON]] | None = None,
    max_examples: int = 25,
    limit: int | None = BODY_LIMIT,
) -> tuple[str, GateReport]:
    """The Markdown body of a pull request for the skill changes since ``base``, and the gate
    report it includes (so a caller can also fail on it).

    The body stays under ``limit`` characters (GitHub refuses a longer pull-request body):
    the summary table lists every skill, and the per-skill sections that do not fit are left
    out, named, with the command that prints them all (``limit=None``: everything)."""
    from skillbank.versioning import signature_change

    lib = bank.library
    base_commit, changed = changed_skills(bank.root, lib.rel, base)
    gate = run_gate(bank, base=base, tool_specs=tool_specs, max_examples=max_examples)
    head_ids = set(lib.ids())
    base_tools: set[str] = set()
    for sid in lib.ids_at(base_commit):
        at_base = lib.load_at(sid, base_commit)
        if at_base is not None:
            base_tools |= set(at_base.tools)
    items: list[tuple[SkillReview, Sequence[str], bool]] = []
    requirers = {s.id: s.requires for s in lib.load_all()}
    for sid in sorted(changed):
        old = lib.load_at(sid, base_commit)
        try:
            new = lib.load(sid) if sid in head_ids else None
        except LibraryError:
            new = None  # cannot be read: the gate's load check says why
        if old is None and new is None:
            continue
        action = "added" if old is None else "removed" if new is None else "changed"
        change = signature_change(old.source, new.source) if old and new else None
        callers = sorted(c for c, req in requirers.items() if sid in req)
        breaking = bool(change and change.breaking) or (new is None and bool(callers))
        risks = _risks(sid, old, new, base_tools, breaking)
        if new is None and sid in head_ids:
            action, risks = "unreadable", ("its folder cannot be read; see the load finding",)
        items.append(
            (SkillReview(sid, action, old, new, risks), change.changes if change else (), breaking)
        )
    short = base_commit[:12]
    lines = ["## Skill changes", ""]
    if not items:
        lines.append(f"No skill changed since `{base}` (`{short}`).")
        return "\n".join(lines) + "\n", gate
    counts = {
        a: sum(1 for i, _, _ in items if i.action == a)
        for a in ("added", "changed", "removed", "unreadable")
    }
    summary = ", ".join(f"{n} {a}" for a, n in counts.items() if n)
    verdict = (
        "✅ all checks passed" if gate.ok else f"❌ {len(gate.errors)} finding(s) fail the gate"
    )
    lines.append(f"Compared with `{base}` (merge base `{short}`): {summary}. Gate: {verdict}.")
    lines += [
        "",
        "| skill | change | version | breaking | risk flags |",
        "| --- | --- | --- | --- | --- |",
    ]
    for item, _, breaking in items:
        version = (
            f"{item.old.version} → {item.new.version}"
            if item.old and item.new
            else str((item.new or item.old).version)  # type: ignore[union-attr]
        )
        lines.append(
            f"| `{item.skill_id}` | {item.action} | {version} | {'yes' if breaking else 'no'} "
            f"| {len(item.risks)} |"
        )
    dependents = sorted(set(gate.skills) - {i.skill_id for i, _, _ in items})
    if dependents:
        lines += ["", f"Also checked, because they call a changed skill: "
                  f"{', '.join(f'`{d}`' for d in dependents)}."]  # fmt: skip
        broken = [f for f in gate.findings if f.skill_id in dependents]
        if broken:
            lines += ["", "**Callers that fail because of this change:**", ""]
            lines.append(_fence("\n".join(f.render(gate.root) for f in broken), "text"))
    lines.append("")
    footer = "_Written by `skillbank review`; re-run it after new commits._"
    used = sum(len(line) + 1 for line in lines) + len(footer) + _OMITTED_ROOM
    left_out: list[str] = []
    for item, sentences, breaking in items:
        section = _section(item, gate, sentences, breaking)
        size = sum(len(line) + 1 for line in section)
        if limit is not None and (left_out or used + size > limit):
            left_out.append(item.skill_id)
            continue
        lines += section
        used += size
    if left_out:
        lines += [
            f"**{len(left_out)} skill section(s) left out** to keep this body under "
            f"{limit:,} characters (a pull request's limit): "
            + ", ".join(f"`{sid}`" for sid in left_out[:50])
            + (f" and {len(left_out) - 50} more" if len(left_out) > 50 else "")
            + f". `skillbank review --base {base} --full -o review.md` writes every section; "
            "attach it to the pull request.",
            "",
        ]
    lines.append(footer)
    return "\n".join(lines) + "\n", gate
