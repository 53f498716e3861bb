"""Generalisation: several trajectories of one procedure become one skill.

Trajectories are grouped by their *pattern*: the sequence of tools called, with repeated
blocks folded (``A B B B C`` and ``A B C`` share the pattern ``A (B)+ C``) and the argument
names of each call. Each group is anti-unified into one program:

- an argument whose value every run copied from the same place in an earlier result (same
  step, same JSON path) becomes data flow from there, except that a path through a list
  position or a data key (`skillbank.compiler.dataflow.bound_parts`) is structure only when
  two runs with different values there agree on it, and a short value one run happens to
  find costs less as a parameter (description length); otherwise it is the caller's;
- a value that varies between runs becomes a typed parameter; one that never varies becomes a
  parameter whose default is that value, unless the users typed it and nothing else they
  typed varied (every run was about one customer); a single run has nothing to compare, so
  everything it typed is a plain parameter;
- reads whose results nothing reads any more, and reads only some runs made, are dropped
  (their calls stay in the cases; replay passes over them);
- the skill is named for its commands and how it finds its entity (`skill_id_for`), and its
  docstring is a plain sentence (`skillbank.compiler.emit.plain_sentence`);
- a query repeated over a list's elements in order from the first, until the element a later
  call acts on, becomes a search (`_Builder.search`): the loop stops at the first element
  whose result passes the simplest test that every run's last read passes and no earlier
  read does (a field equal to a value or an input, an input inside a field);
- a block repeated a varying number of times becomes a loop: over a list in an earlier result
  when each iteration took the matching element of that list and the runs walked the whole
  list, else over a list parameter (a list of dicts when several arguments vary together);
- if the skill ends in a loop it returns the list of the loop's last results;
- runs that read a value by different queries at one position (the customer found by email
  in some, by name and zip in others; `_alternatives`) read it by an ``if``/``elif`` chain
  (`_Builder.alternative`) chosen by which of the reads' inputs the caller gives, each an
  optional parameter (``None``: not given), with a declared ``ValueError`` when none is.

A value a run's user wrote in the task text counts as that run's input, never as data flow
(see `skillbank.compiler.dataflow`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sandbox.names import attribute_clashes
from skillbank.compiler.dataflow import (
    MISSING,
    Path,
    instance_bound,
    iter_paths,
    mentioned_in,
    same_value,
    trivial,
    value_at,
)
from skillbank.compiler.effects import classify_tools
from skillbank.compiler.emit import (
    Alt,
    Call,
    Cond,
    FunctionPlan,
    If,
    Loop,
    ParamPlan,
    Pick,
    Ref,
    Until,
    identifier,
    literal,
    plain_sentence,
    render_function,
    subscripts,
)
from skillbank.errors import CompileError
from skillbank.json_types import ANNOTATIONS, json_type
from skillbank.skill import Case, SkillDraft
from skillbank.trajectory import Step, Trajectory, canonical_json

__all__ = [
    "Pattern",
    "compile_group",
    "is_subpattern",
    "pattern_key",
    "pattern_of",
    "pattern_tokens",
    "skill_id_for",
]

JSON = Any
#: A pattern: blocks of tool names; a block in a loop position repeats one or more times.
Pattern = tuple[tuple[str, ...], ...]
#: One folded block of a run, with the argument names of its calls (`pattern_tokens`).
PatternToken = tuple[tuple[str, ...], tuple[str, ...]]

_MAX_BLOCK = 3


# --- patterns ---------------------------------------------------------------------------


def _fold(tools: Sequence[str]) -> list[tuple[tuple[str, ...], int]]:
    """Fold repeats: the shortest block (1 to 3 calls) repeating at each position wins."""
    out: list[tuple[tuple[str, ...], int]] = []
    i = 0
    while i < len(tools):
        folded = False
        for size in range(1, min(_MAX_BLOCK, (len(tools) - i) // 2) + 1):
            block = tuple(tools[i : i + size])
            count = 1
            while tuple(tools[i + count * size : i + (count + 1) * size]) == block:
                count += 1
            if count > 1:
                out.append((block, count))
                i += count * size
                folded = True
                break
        if not folded:
            out.append(((tools[i],), 1))
            i += 1
    return out


def pattern_of(tools: Sequence[str]) -> Pattern:
    """The folded block structure of a tool sequence (repeat counts dropped)."""
    return tuple(block for block, _ in _fold(tools))


def pattern_key(steps: Sequence[Step]) -> str:
    """A group key: the folded pattern plus each call's argument names."""
    pattern = pattern_of([s.tool for s in steps])
    names: list[str] = []
    position = 0
    for block, count in _fold([s.tool for s in steps]):
        for i, tool in enumerate(block):
            keys = ",".join(sorted(steps[position + i].arguments))
            names.append(f"{tool}({keys})")
        position += len(block) * count
    return canonical_json([list(b) for b in pattern]) + "|" + ";".join(names)


def pattern_tokens(steps: Sequence[Step]) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """The folded blocks of a run, each with the argument names of its calls."""
    out: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
    position = 0
    for block, count in _fold([s.tool for s in steps]):
        names = tuple(",".join(sorted(steps[position + i].arguments)) for i in range(len(block)))
        out.append((block, names))
        position += len(block) * count
    return out


def is_subpattern(small: Sequence[Any], big: Sequence[Any]) -> bool:
    """True when the tokens of ``small`` appear in ``big`` in order (a subsequence)."""
    it = iter(big)
    return all(any(token == other for other in it) for token in small)


def _place(own: Sequence[Any], master: Sequence[Any]) -> list[int] | None:
    """Where each of a run's tokens sits in the master's (in order), or None."""
    placed: list[int] = []
    at = 0
    for token in own:
        while at < len(master) and master[at] != token:
            at += 1
        if at == len(master):
            return None
        placed.append(at)
        at += 1
    return placed


def _segment(steps: Sequence[Step], pattern: Pattern) -> list[list[list[Step]]] | None:
    # Match the run against the pattern with each block repeating 1+ times (greedy).
    alphabet: dict[str, str] = {}
    for block in pattern:
        for tool in block:
            alphabet.setdefault(tool, chr(0xE000 + len(alphabet)))
    if any(s.tool not in alphabet for s in steps):
        return None
    text = "".join(alphabet[s.tool] for s in steps)
    regex = "".join(f"((?:{''.join(alphabet[t] for t in block)})+)" for block in pattern)
    match = re.fullmatch(regex, text)
    if match is None:
        return None
    segments: list[list[list[Step]]] = []
    for k, block in enumerate(pattern):
        start, end = match.span(k + 1)
        chunk = list(steps[start:end])
        segments.append([chunk[j : j + len(block)] for j in range(0, len(chunk), len(block))])
    return segments


def skill_id_for(
    tools: Sequence[str], queries: Collection[str] = (), inputs: Sequence[str] = ()
) -> str:
    """The default skill id: what the procedure does, and how it finds what it acts on.

    A procedure is named for its commands (repeats folded; ``queries`` are left out), or for
    its last call when it only reads, then ``_by_`` the inputs its queries take to find what
    it acts on (``cancel_order_by_email``; none when the caller names it directly). Task
    wording varies between runs; the commands and inputs do not. A name that would equal a
    tool it wraps gets ``_skill``, so a skill never shadows a tool offered beside it. Commands
    of one namespace say it once (``git_create_branch``, ``git_commit`` make
    ``git_create_branch_commit``).
    """
    folded: list[str] = []
    for tool in tools:
        if not folded or folded[-1] != tool:
            folded.append(tool)
    commands = [t for t in folded if t not in queries]
    chain: list[str] = []
    for tool in commands or folded[-1:]:
        name = identifier(tool)
        if name not in chain:
            chain.append(name)
    # Tools of one server often share a namespace (git_add, git_commit): say it once.
    shared = _shared_prefix(chain) if len(chain) > 1 else ""
    if shared:
        chain = [chain[0], *(c[len(shared) :] for c in chain[1:])]
    name = "_".join(chain)
    if len(chain) > 1 and len(name) > 56:
        name = f"{chain[0]}_to_{chain[-1]}"
    if inputs:
        name += "_by_" + "_and_".join(identifier(i) for i in inputs[:2])
    if name in {identifier(t) for t in tools}:
        name += "_skill"
    return identifier(name)[:64].rstrip("_")


def _shared_prefix(names: Sequence[str]) -> str:
    """The words every name starts with (``git_`` of ``git_add``, ``git_commit``), or "",
    leaving each name at least one word of its own."""
    words = [n.split("_") for n in names]
    shared: list[str] = []
    for column in zip(*(w[:-1] for w in words), strict=False):
        if len(set(column)) != 1:
            break
        shared.append(column[0])
    return "".join(f"{w}_" for w in shared)


# --- the group model ----------------------------------------------------------------------


@dataclass
class _Run:
    trajectory: Trajectory
    steps: list[Step]
    segments: list[list[list[Step]]]
    _index: dict[int, dict[tuple[str, str], list[Path]]] = field(default_factory=dict)

    def plain(self, token: int, i: int) -> Step:
        return self.segments[token][0][i]

    def paths_of(self, slot: int, result: JSON, value: JSON) -> list[Path]:
        """Every path in ``result`` holding ``value`` (type-exact), shortest first."""
        index = self._index.get(slot)
        if index is None:
            index = {}
            for path, sub in iter_paths(result):
                index.setdefault((type(sub).__name__, canonical_json(sub)), []).append(path)
            for paths in index.values():
                paths.sort(key=len)  # stable: document order within a length
            self._index[slot] = index
        return index.get((type(value).__name__, canonical_json(value)), [])


def _tokens(value: JSON) -> int:
    """About how many tokens it takes to write ``value`` down (at least one)."""
    return max(1, -(-len(canonical_json(value)) // 4))


def _py_type(value: JSON) -> str:
    kind = json_type(value)
    if kind is None:
        raise CompileError(f"{value!r} is not a JSON value")
    return ANNOTATIONS[kind]


def _annotation(values: Sequence[JSON], schema_prop: Mapping[str, JSON] | None) -> str:
    observed = {_py_type(v) for v in values}
    if observed == {"list"}:
        inner = {_py_type(x) for v in values for x in v}
        return f"list[{inner.pop()}]" if len(inner) == 1 and "None" not in inner else "list"
    declared = schema_prop.get("type") if isinstance(schema_prop, Mapping) else None
    if isinstance(declared, list):
        declared = next((d for d in declared if d != "null"), None)
    # A declared null says nothing of the parameter's type.
    annotation = ANNOTATIONS.get(declared) if isinstance(declared, str) else None
    annotation = None if annotation == "None" else annotation
    if observed <= {"int", "float"} and (annotation == "float" or observed == {"int", "float"}):
        return "float"
    if len(observed) == 1:
        (only,) = observed
        return only if annotation is None or annotation != only else annotation
    if annotation is not None and all(
        _py_type(v) == annotation or (annotation == "float" and _py_type(v) == "int")
        for v in values
    ):
        return annotation
    return " | ".join(sorted(observed))


def _schema_prop(t: Trajectory, tool: str, key: str) -> Mapping[str, JSON] | None:
    spec = t.tool(tool)
    props = spec.parameters.get("properties", {}) if spec else {}
    prop = props.get(key) if isinstance(props, Mapping) else None
    return prop if isinstance(prop, Mapping) else None


def _same_shape(values: Sequence[JSON]) -> bool:
    first = values[0]
    if isinstance(first, dict):
        return all(isinstance(v, dict) and list(v) == list(first) for v in values)
    if isinstance(first, list):
        return all(isinstance(v, list) and len(v) == len(first) for v in values)
    return False


def _noun(tool: str) -> str:
    words = identifier(tool).split("_")
    return "_".join(words[1:]) if len(words) > 1 else words[0]


class _Builder:
    """Anti-unifies the runs of one group into a FunctionPlan and its cases."""

    def __init__(
        self,
        runs: list[_Run],
        pattern: Pattern,
        skill_id: str,
        queries: frozenset[str],
        alternatives: Sequence[Sequence[Sequence[int]]] = (),
    ) -> None:
        self.runs = runs
        self.queries = queries
        #: Result variable of each call outside loops and branches -> (block, index in it).
        self.position: dict[str, tuple[int, int]] = {}
        #: (block, index) of the queries `prune` dropped.
        self.pruned: set[tuple[int, int]] = set()
        #: Result variable of each such call -> the notes made while building its arguments.
        self.noted: dict[str, range] = {}
        self.pattern = pattern
        self.skill_id = skill_id
        counts = [[len(r.segments[k]) for r in runs] for k in range(len(pattern))]
        #: Blocks repeated a varying number of times (never absent).
        self.loops = {k for k, c in enumerate(counts) if min(c) >= 1 and max(c) > 1}
        #: Loops that are searches (`search`): they stop at the first element that passes.
        self.searches: set[int] = set()
        #: Blocks some runs left out (made once by the others): conditional.
        self.optional = {k for k, c in enumerate(counts) if min(c) == 0}
        for k in self.optional:
            if max(counts[k]) > 1 and not all(tool in queries for tool in pattern[k]):
                raise CompileError(
                    f"the block {'/'.join(pattern[k])} is left out by some runs and repeated "
                    "by others; compile those runs separately"
                )
        if len(self.optional) == len(pattern):
            raise CompileError("no block is common to all runs; compile them separately")
        #: Alternative reads of one value (`alternative`), by their first block: per
        #: alternative, its blocks.
        self.alternatives = {choices[0][0]: [list(c) for c in choices] for choices in alternatives}
        for choices in alternatives:
            blocks = [k for c in choices for k in c]

            def made(run: _Run, choice: Sequence[int]) -> bool:
                return all(len(run.segments[k]) == 1 for k in choice)

            if any(k in self.loops for k in blocks) or any(
                sum(made(run, c) for c in choices) != 1
                or sum(len(run.segments[k]) for k in blocks)
                != len(next((c for c in choices if made(run, c)), ()))
                for run in runs
            ):
                raise CompileError(
                    f"the reads {' / '.join(_choice_name(pattern, c) for c in choices)} are "
                    "not one choice per run; compile those runs separately"
                )
        #: The parameters that choose an alternative: optional, None when not given.
        self.choosers: set[str] = set()
        self.choosing = False
        #: The runs the code being built applies to (inside a conditional: those that made it).
        self.active: list[int] = list(range(len(runs)))
        self.param_active: dict[str, list[JSON]] = {}
        self.taken: set[str] = {skill_id}
        #: (base name, canonical per-run values) -> parameter name
        self.param_keys: dict[tuple[str, str], str] = {}
        self.params: dict[
            str, tuple[str, list[JSON], str, str]
        ] = {}  # name -> (ann, vals, tool, arg)
        self.param_docs: dict[str, str] = {}
        self.used: set[str] = set()  # placeholder vars read by later calls
        self.notes: list[str] = []
        self.single = len(runs) == 1
        self.first_inputs: list[str] = []
        #: The place `origins` last found a value but did not read it from (for the notes).
        self.declined: tuple[int, Path] | None = None

    # -- parameters --

    def param(self, base: str, values: list[JSON], tool: str, arg: str, top: bool) -> Ref:
        # ``values`` are the active runs' values; runs outside a conditional block that uses
        # the parameter get the first active value as a placeholder (their code never reads it).
        key = (base, canonical_json([[r, v] for r, v in zip(self.active, values, strict=True)]))
        name = self.param_keys.get(key)
        if name is None and len(self.active) < len(self.runs) and not self.choosing:
            # Inside a conditional block: reuse a parameter that held these very values in
            # the runs that made the block (``sku`` checked, then ``sku`` restocked).
            name = next(
                (
                    n
                    for (b, _), n in self.param_keys.items()
                    if b == base
                    and [self.params[n][1][r] for r in self.active] == list(values)
                    and len(self.param_active.get(n, ())) == len(self.runs)
                ),
                None,
            )
        if name is None:
            name = identifier(base)
            if name in self.taken:
                verb = identifier(tool).split("_")[0]
                candidate = identifier(f"{verb}_{base}")
                name = candidate if candidate not in self.taken else identifier(base, self.taken)
            self.taken.add(name)
            self.param_keys[key] = name
            prop = _schema_prop(self.runs[0].trajectory, tool, base) if top else None
            annotation = _annotation(values, prop)
            desc = str(prop.get("description", "")).strip().rstrip(".") if prop else ""
            shown = literal(values[0])
            if len(shown) > 60:
                shown = shown[:57] + "..."
            lead = f"{desc}; passed" if desc else "Passed"
            self.param_docs[name] = f"{lead} to `{tool}` as `{arg}` (e.g. {shown})."
            by_run = dict(zip(self.active, values, strict=True))
            # A run that took another alternative did not give this input at all.
            missing = None if self.choosing else values[0]
            full = [by_run.get(r, missing) for r in range(len(self.runs))]
            if self.choosing:
                self.choosers.add(name)
            self.params[name] = (annotation, full, tool, arg)
            self.param_active[name] = list(values)
        return Ref(name)

    # -- origins --

    def origins(
        self, values: list[JSON], earlier: list[int], results: list[list[JSON]]
    ) -> tuple[int, Path] | tuple[int, Path, Path, JSON, Path] | None:
        """The one place every run copied its value from, if there is one.

        Either (slot, path), the same path in every run, or a `pick`: the first element of a
        list whose key field holds the same value, wherever it stood.
        """
        active = [self.runs[r] for r in self.active]
        for run, value in zip(active, values, strict=True):
            if trivial(value) or mentioned_in(value, run.trajectory.task):
                return None
        common: list[tuple[int, Path]] | None = None
        for r, run, value in zip(self.active, active, values, strict=True):
            found = [
                (slot, path)
                for slot in reversed(earlier)
                for path in run.paths_of(slot, results[r][slot], value)
            ]
            if common is None:
                common = found
            else:
                keep = set(found)
                common = [c for c in common if c in keep]
            if not common:
                break
        self.declined = None
        r0 = self.active[0]
        distinct = {canonical_json(v) for v in values}
        # A list position or a data key is structure only when runs with different values
        # underneath agree on it; otherwise it names the one element a run happened to use.
        structural = [
            c
            for c in common or ()
            if len(distinct) > 1 or not instance_bound(results[r0][c[0]], c[1])
        ]
        if not structural:
            picked = self.pick(values, earlier, results)
            if picked is None and common:
                self.declined = common[0]
            return picked
        slot, path = structural[0]
        # Description length: a path is stated once for every run; a parameter states each
        # run's value (a value no run varied, once). The shorter description of the runs
        # wins, so a short value that one run happens to find in a result stays the caller's.
        stated = values if len(distinct) > 1 else values[:1]
        if len(path) + 1 >= 1 + sum(_tokens(v) for v in stated):
            self.declined = (slot, path)
            return None
        return slot, path

    def pick(
        self, values: list[JSON], earlier: list[int], results: list[list[JSON]]
    ) -> tuple[int, Path, Path, JSON, Path] | None:
        """A list element every run selected by the same key value, at differing positions.

        Returns (slot, list path, key path, key value, path inside the element), or None.
        """
        r0 = self.active[0]
        first = self.runs[r0]
        for slot in reversed(earlier):
            for path in first.paths_of(slot, results[r0][slot], values[0]):
                for cut, part in enumerate(path):
                    if not isinstance(part, int) or isinstance(part, bool):
                        continue
                    list_path, rest = path[:cut], path[cut + 1 :]
                    element = value_at(results[r0][slot], path[: cut + 1])
                    if instance_bound(results[r0][slot], list_path) or instance_bound(
                        element, rest
                    ):
                        continue
                    for key, key_value in iter_paths(element):
                        if not key or trivial(key_value) or isinstance(key_value, (dict, list)):
                            continue
                        if instance_bound(element, key):
                            continue
                        if self._picks(values, slot, list_path, key, key_value, rest, results):
                            return slot, list_path, key, key_value, rest
        return None

    def _picks(
        self,
        values: list[JSON],
        slot: int,
        list_path: Path,
        key: Path,
        key_value: JSON,
        rest: Path,
        results: list[list[JSON]],
    ) -> bool:
        positions = set()
        for r, value in zip(self.active, values, strict=True):
            items = value_at(results[r][slot], list_path)
            if not isinstance(items, list):
                return False
            chosen = [
                i for i, item in enumerate(items) if same_value(value_at(item, key), key_value)
            ]
            if not chosen or not same_value(value_at(items[chosen[0]], rest), value):
                return False
            positions.add(chosen[0])
        return len(positions) > 1  # one fixed position is a plain path, found before

    def expr(
        self,
        values: list[JSON],
        tool: str,
        keypath: tuple[str | int, ...],
        earlier: list[int],
        results: list[list[JSON]],
        names: Mapping[int, str],
    ) -> JSON:
        origin = self.origins(values, earlier, results)
        arg = ".".join(map(str, keypath))
        if origin is not None:
            slot = origin[0]
            self.used.add(names[slot])
            if len(origin) == 2:
                ref = Ref(names[slot], origin[1])
            else:
                _, list_path, key, key_value, rest = origin
                ref = Pick(names[slot], list_path, key, key_value, rest, self.slot_tool[slot])
            if isinstance(ref, Pick):
                where = ref.describe()
            else:
                where = f"{self.slot_tool[slot]} result{ref.render()[len(ref.var) :]}"
            if len(self.active) == 1:
                where += " (from one run)"
            self.notes.append(f"{tool}({arg}) <- {where}")
            return ref
        if self.declined is not None:
            slot, path = self.declined
            where = f"{self.slot_tool[slot]} result{subscripts(path)}"
            basis = "one run" if len(self.active) == 1 else "runs that all used one value"
            self.notes.append(
                f"{tool}({arg}) is the caller's: it also appears at {where}, but {basis} "
                "cannot show it is read from there"
            )
            self.declined = None
        if all(v is None for v in values):
            return None
        first = values[0]
        if isinstance(first, (dict, list)) and first and _same_shape(values):
            inner = any(
                self.origins([value_at(v, p) for v in values], earlier, results) is not None
                for p, _ in iter_paths(first)
                if p
            )
            if inner:
                if isinstance(first, dict):
                    return {
                        k: self.expr(
                            [v[k] for v in values], tool, (*keypath, k), earlier, results, names
                        )  # fmt: skip
                        for k in first
                    }
                return [
                    self.expr(
                        [v[i] for v in values], tool, (*keypath, i), earlier, results, names
                    )  # fmt: skip
                    for i in range(len(first))
                ]
        base = next((k for k in reversed(keypath) if isinstance(k, str)), "value")
        return self.param(base, values, tool, arg, len(keypath) == 1)

    def arg_order(self, tool: str, arguments: Mapping[str, JSON]) -> list[str]:
        """Keyword order: the tool schema's property order, then by name.

        Stored cases keep arguments with sorted keys, so the recorded order cannot be relied
        on; this order is the same however the arguments were written down.
        """
        spec = next((t.tool(tool) for t in (r.trajectory for r in self.runs) if t.tool(tool)), None)
        props = spec.parameters.get("properties", {}) if spec else {}
        rank = {name: n for n, name in enumerate(props)} if isinstance(props, Mapping) else {}
        return sorted(arguments, key=lambda k: (rank.get(k, len(rank)), k))

    # -- the program --

    def build(self) -> tuple[FunctionPlan, list[Case]]:
        runs = self.runs
        statements: list[Call | Loop | If | Alt] = []
        self.slot_tool: dict[int, str] = {}
        names: dict[int, str] = {}  # slot -> placeholder variable
        results: list[list[JSON]] = [[] for _ in runs]
        earlier: list[int] = []
        slot = 0
        merged_into_previous: set[int] = set()
        for k, block in enumerate(self.pattern):
            if k in self.loops:
                found = self.search(k, block, earlier, results, names, slot)
                if found is not None:  # later calls read the result it stopped at
                    statements.append(found)
                    earlier.append(slot)
                else:
                    statements.append(self.loop(k, block, earlier, results, names))
                slot += 1  # the loop's results take a slot, so later slots stay aligned
                continue
            if any(k in c for choices in self.alternatives.values() for c in choices):
                if k in self.alternatives:
                    choice, slot = self.alternative(
                        self.alternatives[k], slot, earlier, results, names
                    )
                    statements.append(choice)
                    earlier.append(slot - 1)
                continue
            if k in self.optional:
                if k in merged_into_previous:
                    continue
                # Adjacent blocks made by the same runs form one conditional, so their calls
                # can read each other's results.
                ks = [k]
                while ks[-1] + 1 in self.optional and self._made_by(ks[-1] + 1) == self._made_by(k):
                    ks.append(ks[-1] + 1)
                merged_into_previous.update(ks[1:])
                if all(tool in self.queries for kk in ks for tool in self.pattern[kk]):
                    # Reads only some runs made: nothing later can read them (the other runs
                    # have no such result), and a read changes nothing, so they are not part
                    # of the procedure (an agent looking twice before it acted).
                    for kk in ks:
                        for i, _ in enumerate(self.pattern[kk]):
                            self.pruned.add((kk, i))
                            for r, run in enumerate(runs):
                                made = run.segments[kk]
                                results[r].append(made[-1][i].result if made else MISSING)
                            slot += 1
                    continue
                stmt, slot = self.conditional(ks, slot, earlier, results, names)
                statements.append(stmt)
                continue
            for i, tool in enumerate(block):
                steps = [run.plain(k, i) for run in runs]
                noted = len(self.notes)
                kwargs = tuple(
                    (
                        key,
                        self.expr(
                            [s.arguments[key] for s in steps], tool, (key,), earlier, results, names
                        ),
                    )  # fmt: skip
                    for key in self.arg_order(tool, steps[0].arguments)
                )
                names[slot] = f"@{slot}"
                self.slot_tool[slot] = tool
                for r, s in enumerate(steps):
                    results[r].append(s.result)
                statements.append(Call(tool, kwargs, names[slot]))
                self.position[names[slot]] = (k, i)
                self.noted[names[slot]] = range(noted, len(self.notes))
                earlier.append(slot)
                slot += 1
        return self.finish(statements)

    def _made_by(self, k: int) -> list[int]:
        return [r for r, run in enumerate(self.runs) if run.segments[k]]

    def conditional(
        self,
        ks: list[int],
        slot: int,
        earlier: list[int],
        results: list[list[JSON]],
        names: dict[int, str],
    ) -> tuple[If, int]:
        """Blocks only some runs made: ``if <test>:`` around their calls."""
        present = self._made_by(ks[0])
        absent = [r for r in range(len(self.runs)) if r not in present]
        tools_in = [tool for k in ks for tool in self.pattern[k]]
        test = self.condition(present, absent, earlier, results, names)
        if test is None:
            flag = self.param(f"do_{tools_in[0]}", [r in present for r in range(len(self.runs))],
                              tools_in[0], "(whether to call it)", False)  # fmt: skip
            self.param_docs[flag.var] = (
                f"Whether to also call `{'`, `'.join(tools_in)}` (some runs did, some did not)."
            )
            test = Cond(flag)
        self.active = present
        inner = list(earlier)  # the block's calls may read each other's results
        calls: list[Call] = []
        try:
            for k in ks:
                for i, tool in enumerate(self.pattern[k]):
                    steps = {r: self.runs[r].segments[k][0][i] for r in present}
                    kwargs = self._kwargs(tool, steps, present, inner, results, names)
                    calls.append(self._bind(slot, tool, steps, kwargs, names, results))
                    inner.append(slot)
                    slot += 1
        finally:
            self.active = list(range(len(self.runs)))
        return If(test, tuple(calls)), slot

    def _kwargs(
        self,
        tool: str,
        steps: Mapping[int, Step],
        present: list[int],
        earlier: list[int],
        results: list[list[JSON]],
        names: dict[int, str],
    ) -> tuple[tuple[str, JSON], ...]:
        """The arguments of a call only the runs ``present`` made (``steps``: each one's)."""
        return tuple(
            (
                key,
                self.expr(
                    [steps[r].arguments.get(key) for r in present],
                    tool,
                    (key,),
                    earlier,
                    results,
                    names,
                ),
            )  # fmt: skip
            for key in self.arg_order(tool, steps[present[0]].arguments)
        )

    def _bind(
        self,
        slot: int,
        tool: str,
        steps: Mapping[int, Step],
        kwargs: tuple[tuple[str, JSON], ...],
        names: dict[int, str],
        results: list[list[JSON]],
    ) -> Call:
        """The call of a block only the runs in ``steps`` made, its result in ``slot`` (the
        other runs have none there)."""
        names[slot] = f"@{slot}"
        self.slot_tool[slot] = tool
        for r in range(len(self.runs)):
            results[r].append(steps[r].result if r in steps else MISSING)
        return Call(tool, kwargs, names[slot])

    def alternative(
        self,
        choices: list[list[int]],
        slot: int,
        earlier: list[int],
        results: list[list[JSON]],
        names: dict[int, str],
    ) -> tuple[Alt, int]:
        """Reads of one value by different queries in different runs (the customer found by
        email in some, by name and zip in others, or by looking up their id first): each
        becomes a branch taken when the caller gives the inputs it needs, and every branch's
        last call binds one variable; a branch's calls may read the ones before them.

        The inputs of each alternative become optional parameters (None when not given);
        one alternative's inputs may not hold another's, or the first would always win.
        """
        given: list[tuple[str, ...]] = []
        seen: list[set[str]] = []
        calls: list[Call] = []
        finals: list[tuple[list[int], Call, int]] = []
        described = " / ".join(_choice_name(self.pattern, c) for c in choices)
        try:
            for choice in choices:
                present = self._made_by(choice[0])
                self.active, self.choosing = present, True
                before = set(self.choosers)
                inner = list(earlier)
                mine_calls: list[Call] = []
                for n, k in enumerate(choice):
                    (tool,) = self.pattern[k]
                    steps = {r: self.runs[r].segments[k][0][0] for r in present}
                    kwargs = self._kwargs(tool, steps, present, inner, results, names)
                    if n < len(choice) - 1:
                        # A call on the way: its own variable, which the next calls may read.
                        mine_calls.append(self._bind(slot, tool, steps, kwargs, names, results))
                        inner.append(slot)
                        slot += 1
                    else:
                        mine_calls.append(Call(tool, kwargs, None))
                        finals.append((present, mine_calls[-1], k))
                mine = tuple(n for n in self.choosers - before if _uses_param(mine_calls, n))
                chosen = tuple(sorted(mine, key=lambda n: list(self.params).index(n)))
                # What the caller is asked for: the inputs' tool argument names (two reads
                # by email are one way to find the customer, whatever the tools).
                asked = {self.params[n][3] for n in chosen}
                if not chosen or any(asked <= wanted or wanted <= asked for wanted in seen):
                    raise CompileError(
                        f"the reads {described} cannot be told apart by the inputs the caller "
                        "gives; compile them separately"
                    )
                given.append(chosen)
                seen.append(asked)
                calls += mine_calls
        finally:
            self.active, self.choosing = list(range(len(self.runs))), False
        # Every alternative's last call binds the one variable what follows reads.
        names[slot] = f"@{slot}"
        self.slot_tool[slot] = " or ".join(self.pattern[choice[-1]][0] for choice in choices)
        bound = {id(call) for _, call, _ in finals}
        calls = [replace(c, var=names[slot]) if id(c) in bound else c for c in calls]
        for r, run in enumerate(self.runs):
            (made,) = [run.segments[k][0][0] for present, _, k in finals if r in present]
            results[r].append(made.result)
        sizes = tuple(len(c) for c in choices)
        return Alt(tuple(given), tuple(calls), sizes), slot + 1

    def condition(
        self,
        present: list[int],
        absent: list[int],
        earlier: list[int],
        results: list[list[JSON]],
        names: Mapping[int, str],
    ) -> Cond | None:
        """A field of an earlier result that holds one value in the runs that made the block
        and another in those that did not (the divergence the block depends on).

        One run that made the block proves nothing (any field that differs would do), so at
        least two are needed. Fields on which the runs that skipped the block also agree (a
        clean two-way split) are preferred.
        """
        if len(present) < 2:
            return None
        r0 = present[0]
        loose: Cond | None = None
        for slot in reversed(earlier):
            for path, value in iter_paths(results[r0][slot]):
                if not path or isinstance(value, (dict, list)) or value is None:
                    continue
                if instance_bound(results[r0][slot], path):
                    continue  # "the first order's status" is one run's data, not a rule
                if any(mentioned_in(value, self.runs[r].trajectory.task) for r in present):
                    continue  # an echo of what the user asked for, not a reason to branch
                if not all(same_value(value_at(results[r][slot], path), value) for r in present):
                    continue
                others = [value_at(results[r][slot], path) for r in absent]
                if any(same_value(other, value) for other in others):
                    continue
                ref = Ref(names[slot], path)
                if value is True:
                    cond = Cond(ref)
                elif value is False and all(other is True for other in others):
                    cond = Cond(ref, "falsy")
                else:
                    cond = Cond(ref, "eq", value)
                if len({canonical_json(o) for o in others}) == 1:
                    self.used.add(names[slot])
                    return cond
                loose = loose or cond
        if loose is not None:
            self.used.add(loose.ref.var)
        return loose

    def loop(
        self,
        k: int,
        block: tuple[str, ...],
        earlier: list[int],
        results: list[list[JSON]],
        names: dict[int, str],
        walk: bool = True,
    ) -> Loop:
        runs = self.runs
        iterations = [run.segments[k] for run in runs]
        over = self.loop_source(iterations, earlier, results) if walk else None
        body: list[Call] = []
        item = identifier("item", self.taken)
        if over is not None:
            src_slot, list_path, item_paths = over
            self.used.add(names[src_slot])
            source_ref = Ref(names[src_slot], list_path)
            singular = _singular(list_path, self.slot_tool[src_slot])
            item = identifier(singular, self.taken)
        self.taken.add(item)
        varying: dict[tuple[int, str], list[list[JSON]]] = {}
        for i, tool in enumerate(block):
            kwargs: list[tuple[str, JSON]] = []
            for key in self.arg_order(tool, iterations[0][0][i].arguments):
                per_run = [[it[i].arguments.get(key) for it in its] for its in iterations]
                if over is not None and (i, key) in item_paths:
                    kwargs.append((key, Ref(item, item_paths[(i, key)])))
                    continue
                local = self.iteration_origin(iterations, i, key)
                if local is not None:
                    j, path = local
                    kwargs.append((key, Ref(f"@loop{k}.{j}", path)))
                    continue
                if all(len({canonical_json(v) for v in vs}) == 1 for vs in per_run):
                    # The same within each run: a scalar, generalised across runs as usual.
                    kwargs.append((key, self.expr([vs[0] for vs in per_run], tool, (key,),
                                                  earlier, results, names)))  # fmt: skip
                    continue
                varying[(i, key)] = per_run
                kwargs.append((key, ("@varying", i, key)))
            body.append(Call(tool, tuple(kwargs), f"@loop{k}.{i}"))
        if over is not None and varying:
            # Walking an earlier list does not explain every argument that changes per
            # iteration: loop over a list parameter holding them all instead.
            return self.loop(k, block, earlier, results, names, walk=False)
        list_param: str | None = None
        if over is None:
            if not varying:
                # The same calls, a varying number of times: repeat them `times` times.
                ref = self.param("times", [len(its) for its in iterations], block[0],
                                 "(repetitions)", False)  # fmt: skip
                self.param_docs[ref.var] = (
                    f"How many times to repeat the calls (e.g. {len(iterations[0])})."
                )
                for r, its in enumerate(iterations):
                    results[r].append([it[-1].result for it in its])
                return Loop(item=identifier("repetition", self.taken), over=f"range({ref.var})",
                            body=tuple(body))  # fmt: skip
            if len(varying) == 1:
                ((i, key), per_run) = next(iter(varying.items()))
                base = f"{key}s" if not key.endswith("s") else f"{key}_list"
                ref = self.param(base, [list(vs) for vs in per_run], block[i], key, False)
                list_param = ref.var
                item = identifier(key, self.taken)
                self.taken.add(item)
                body = [
                    Call(
                        c.tool,
                        tuple(
                            (kk, Ref(item) if v == ("@varying", i, key) else v)
                            for kk, v in c.kwargs
                        ),
                        c.var,
                    )  # fmt: skip
                    for c in body
                ]
            else:
                # One column per varying argument; an argument name two calls share is
                # qualified by its tool so the columns stay apart.
                names_used = [key for (_, key) in varying]
                column = {
                    (i, key): key if names_used.count(key) == 1 else f"{block[i]}_{key}"
                    for (i, key) in varying
                }
                keys = [column[ik] for ik in varying]
                rows = [
                    [
                        {column[(i, key)]: varying[(i, key)][r][j] for (i, key) in varying}
                        for j in range(len(iterations[r]))
                    ]
                    for r in range(len(runs))
                ]
                ref = self.param("items", rows, block[0], "+".join(keys), False)
                list_param = ref.var
                self.param_docs[ref.var] = (
                    "One entry per repetition, with the keys "
                    + ", ".join(f"`{key}`" for key in keys)
                    + f" (e.g. {literal(rows[0][0])[:60]})."
                )
                body = [
                    Call(
                        c.tool,
                        tuple(
                            (
                                kk,
                                Ref(item, (column[(v[1], v[2])],))
                                if isinstance(v, tuple) and v[:1] == ("@varying",)
                                else v,
                            )
                            for kk, v in c.kwargs
                        ),
                        c.var,
                    )  # fmt: skip
                    for c in body
                ]
            source_ref = Ref(list_param)
        for r, its in enumerate(iterations):
            results[r].append([it[-1].result for it in its])
        return Loop(item=item, over=source_ref, body=tuple(body))

    def search(
        self,
        k: int,
        block: tuple[str, ...],
        earlier: list[int],
        results: list[list[JSON]],
        names: dict[int, str],
        slot: int,
    ) -> Loop | None:
        """A search, or None: the runs read the elements of an earlier list one by one, in
        order from the first, and stopped at the first whose result passes a test
        (`until`); what follows reads the result it stopped at.

        Only a block of one query taking one argument, never the last block (the answer).
        """
        if len(block) != 1 or block[0] not in self.queries or k == len(self.pattern) - 1:
            return None
        if len(self.active) != len(self.runs):
            return None
        tool = block[0]
        iterations = [run.segments[k] for run in self.runs]
        if any(len(it[0].arguments) != 1 for its in iterations for it in its):
            return None
        (key,) = iterations[0][0][0].arguments
        over = self.search_source(iterations, key, earlier, results)
        if over is None:
            return None
        src_slot, list_path, sub = over
        found = [its[-1][0].result for its in iterations]
        passed = [[it[0].result for it in its[:-1]] for its in iterations]
        where = f"the {self.slot_tool[src_slot]} result{subscripts(list_path)}"
        until = self.until(k, found, passed)
        if until is None:
            return None
        noun = identifier(_noun(tool))
        until = replace(
            until,
            missing=f"no entry of {where} gives a {tool} result where {until.render(noun)}",
        )
        self.searches.add(k)
        self.used.add(names[src_slot])
        item = identifier(_singular(list_path, self.slot_tool[src_slot]) + "_entry", self.taken)
        self.taken.add(item)
        names[slot] = f"@{slot}"
        self.used.add(names[slot])  # the test reads it
        self.slot_tool[slot] = tool
        for r in range(len(self.runs)):
            results[r].append(found[r])
        self.notes.append(
            f"{tool}({key}) <- each entry of {where}, until {until.render(_noun(tool))}"
        )
        call = Call(tool, ((key, Ref(item, sub)),), names[slot])
        return Loop(item=item, over=Ref(names[src_slot], list_path), body=(call,), until=until)

    def search_source(
        self,
        iterations: list[list[list[Step]]],
        key: str,
        earlier: list[int],
        results: list[list[JSON]],
    ) -> tuple[int, Path, Path] | None:
        """(slot, list path, path in each element): the list every run read from its first
        element on, one element per iteration, in order."""
        first = iterations[0][0][0].arguments[key]
        if trivial(first):
            return None
        for slot in reversed(earlier):
            for path in self.runs[0].paths_of(slot, results[0][slot], first):
                cut = next((n for n, part in enumerate(path) if type(part) is int), None)
                if cut is None or path[cut] != 0:
                    continue
                list_path, sub = path[:cut], path[cut + 1 :]
                if all(
                    self._reads_prefix(its, key, results[r][slot], list_path, sub)
                    for r, its in enumerate(iterations)
                ):
                    return slot, list_path, sub
        return None

    @staticmethod
    def _reads_prefix(
        its: list[list[Step]], key: str, result: JSON, list_path: Path, sub: Path
    ) -> bool:
        items = value_at(result, list_path)
        if (
            not isinstance(items, list)
            or len(items) < len(its)
            or instance_bound(result, list_path)
        ):
            return False
        return all(
            same_value(value_at(items[j], sub), it[0].arguments.get(key))
            for j, it in enumerate(its)
        )

    def until(self, k: int, found: list[JSON], passed: list[list[JSON]]) -> Until | None:
        """The simplest test every run's stopping result passes and no result it read
        before passes: a field equal to one value, or to an input (a parameter, or a value
        the user typed that a later call takes too), or an input inside a field (for a field
        of the elements of a list: some element's). Constants first, in document order; a
        constant only when the runs stopped at different elements. Only when none holds, a
        field equal to a value the tasks name and no call takes (`_asked`), if exactly one
        such field holds."""
        inputs: list[tuple[list[JSON], Callable[[], Ref]]] = [
            (values, functools.partial(Ref, name))
            for name, (_, values, _, _) in self.params.items()
            if len(values) == len(self.runs)
        ]
        inputs += self._later_inputs(k)
        tests: list[tuple[Until, list[JSON] | None, Callable[[], Ref] | None]] = []
        typed: list[tuple[Until, list[JSON], Callable[[], Ref]]] = []
        distinct = len({canonical_json(f) for f in found}) > 1
        for path, leaf in iter_paths(found[0]):
            if not path or leaf is None or isinstance(leaf, (dict, list)):
                continue
            cut = next((n for n, part in enumerate(path) if type(part) is int), None)
            outer, inner = (path, None) if cut is None else (path[:cut], path[cut + 1 :])
            if instance_bound(found[0], outer) or any(type(p) is int for p in inner or ()):
                continue
            # A value is the procedure's own only when runs about different elements agree
            # on it (one run's "order O-2" is that run's choice, not a rule).
            if distinct:
                tests.append((Until(outer, inner, "eq", leaf, ""), None, None))
            for values, make in inputs:
                if not isinstance(values[0], type(leaf)):
                    continue
                if same_value(values[0], leaf):
                    tests.append((Until(outer, inner, "eq", None, ""), values, make))
                elif isinstance(leaf, str) and len(values[0]) >= 3 and values[0] in leaf:
                    tests.append((Until(outer, inner, "in", None, ""), values, make))
            asked = self._asked(k, found, outer, inner)
            if asked is not None:
                typed.append((Until(outer, inner, "eq", None, ""), asked[0], asked[1]))

        def holds(test: Until, given: list[JSON] | None) -> bool:
            return all(
                _passes(test, given[r] if given else test.value, found[r])
                and not any(_passes(test, given[r] if given else test.value, p) for p in before)
                for r, before in enumerate(passed)
            )

        for test, given, maker in tests:
            if holds(test, given):
                return replace(test, value=maker()) if maker is not None else test
        # Last, a value only the task names: when nothing a call takes explains the runs, and
        # only one such field does (two would be a guess between them).
        fits = [(test, maker) for test, given, maker in typed if holds(test, given)]
        if len(fits) == 1:
            test, maker = fits[0]
            return replace(test, value=maker())
        return None

    def _asked(
        self, k: int, found: list[JSON], outer: Path, inner: Path | None
    ) -> tuple[list[JSON], Callable[[], Ref]] | None:
        """A value the users typed that no call takes but the element each run stopped at
        holds (``Cancel the shipped order of ...``: the order whose status is "shipped"),
        with how to make it a parameter; None unless every run's task names exactly one
        value at that field of its stopping element and the runs asked for different ones
        (one value throughout is the procedure's own constant, or one run's choice)."""
        values: list[JSON] = []
        for run, result in zip(self.runs, found, strict=True):
            at = value_at(result, outer)
            if inner is None:
                fields = [at]
            else:
                fields = [value_at(e, inner) for e in at] if isinstance(at, list) else []
            named = {
                canonical_json(f): f
                for f in fields
                if isinstance(f, str | int)
                and not isinstance(f, bool)
                and not trivial(f)
                and mentioned_in(f, run.trajectory.task)
            }
            if len(named) != 1:
                return None
            values.append(next(iter(named.values())))
        if len({canonical_json(v) for v in values}) < 2:
            return None
        key = next((p for p in reversed(inner or outer) if isinstance(p, str)), "value")
        tool = self.pattern[k][0]

        def make() -> Ref:
            ref = self.param(key, values, tool, f"(test of {tool})", False)
            self.param_docs[ref.var] = (
                f"The `{key}` of the `{tool}` result to stop at (e.g. {literal(values[0])})."
            )
            return ref

        return values, make

    def _later_inputs(self, k: int) -> list[tuple[list[JSON], Callable[[], Ref]]]:
        """Values the users typed that a later call (outside loops and branches) takes, per
        run, each with how to make it a parameter."""
        later = [
            kk for kk in range(k + 1, len(self.pattern)) if kk not in self.loops | self.optional
        ]
        found: list[tuple[list[JSON], Callable[[], Ref]]] = []
        for kk in later:
            for i, tool in enumerate(self.pattern[kk]):
                steps = [run.plain(kk, i) for run in self.runs]
                for key in steps[0].arguments:
                    values = [s.arguments.get(key) for s in steps]
                    if all(
                        isinstance(v, str | int) and mentioned_in(v, run.trajectory.task)
                        for v, run in zip(values, self.runs, strict=True)
                    ):
                        make = functools.partial(self.param, key, values, tool, key, True)
                        found.append((values, make))
        return found

    def loop_source(
        self, iterations: list[list[list[Step]]], earlier: list[int], results: list[list[JSON]]
    ) -> tuple[int, Path, dict[tuple[int, str], Path]] | None:
        """A list in an earlier result whose elements the iterations walked, in order, all."""
        first_run = self.runs[0]
        first_steps = iterations[0][0]
        for step in first_steps:
            for value in step.arguments.values():
                if trivial(value) or mentioned_in(value, first_run.trajectory.task):
                    continue
                for slot in reversed(earlier):
                    for path in first_run.paths_of(slot, results[0][slot], value):
                        for cut, part in enumerate(path):
                            if part != 0 or not isinstance(part, int) or isinstance(part, bool):
                                continue
                            list_path = path[:cut]
                            found = self._walks(iterations, slot, list_path, results)
                            if found is not None:
                                return slot, list_path, found
        return None

    def _walks(
        self,
        iterations: list[list[list[Step]]],
        slot: int,
        list_path: Path,
        results: list[list[JSON]],
    ) -> dict[tuple[int, str], Path] | None:
        item_paths: dict[tuple[int, str], Path] | None = None
        for r, its in enumerate(iterations):
            items = value_at(results[r][slot], list_path)
            if not isinstance(items, list) or len(items) != len(its):
                return None
            mapping: dict[tuple[int, str], Path] = {}
            for i, step in enumerate(its[0]):
                for key in step.arguments:
                    for sub, _ in iter_paths(items[0]):
                        if all(
                            same_value(value_at(items[j], sub), its[j][i].arguments.get(key))
                            and not trivial(its[j][i].arguments.get(key))
                            for j in range(len(its))
                        ):
                            mapping[(i, key)] = sub
                            break
            if not mapping:
                return None
            item_paths = (
                mapping
                if item_paths is None
                else {k: v for k, v in item_paths.items() if mapping.get(k) == v}
            )
            if not item_paths:
                return None
        return item_paths

    def iteration_origin(
        self, iterations: list[list[list[Step]]], i: int, key: str
    ) -> tuple[int, Path] | None:
        common: list[tuple[int, Path]] | None = None
        for r, its in enumerate(iterations):
            task = self.runs[r].trajectory.task
            for it in its:
                value = it[i].arguments.get(key)
                if trivial(value) or mentioned_in(value, task):
                    return None
                found = [
                    (j, path)
                    for j in range(i - 1, -1, -1)
                    for path, sub in iter_paths(it[j].result)
                    if same_value(sub, value)
                ]
                common = found if common is None else [c for c in common if c in set(found)]
                if not common:
                    return None
        return common[0] if common else None

    def prune(self, statements: list[Call | Loop | If | Alt]) -> list[Call | Loop | If | Alt]:
        """Drop the queries whose results nothing reads, and the parameters only they took.

        Slicing keeps a query a command argument was copied from; when generalising decides
        that argument is the caller's after all (one run cannot show a list position is
        structure), the query feeds nothing and goes too. The last call stays: it is the
        answer.
        """
        # An answer that may not run keeps the call before it, whose result is the fallback.
        last = -2 if isinstance(statements[-1], If) and len(statements) > 1 else -1
        kept: list[Call | Loop | If | Alt] = statements[last:]
        for stmt in reversed(statements[:last]):
            if (
                isinstance(stmt, Call)
                and stmt.tool in self.queries
                and stmt.var in self.position
                and not _reads(kept, stmt.var)
            ):
                self.pruned.add(self.position[stmt.var])
                gone = set(self.noted[stmt.var])
                self.notes = [n for j, n in enumerate(self.notes) if j not in gone]
                continue
            kept.insert(0, stmt)
        if self.pruned:
            for name in [n for n in self.params if not _uses_param(kept, n)]:
                del self.params[name]
        return kept

    def finish(self, statements: list[Call | Loop | If | Alt]) -> tuple[FunctionPlan, list[Case]]:
        runs = self.runs
        statements = self.prune(statements)
        if isinstance(statements[-1], Alt):
            raise CompileError("the runs end with different reads; compile them separately")
        for stmt in statements:
            if isinstance(stmt, Alt) and not _reads(statements, stmt.var):
                # The reads found the value at different places: not one value found two ways.
                raise CompileError(
                    f"nothing reads what {' or '.join(b[-1].tool for b in stmt.branches)} found in "
                    "every run; compile those runs separately"
                )
        if isinstance(statements[-1], If):
            before = statements[-2] if len(statements) > 1 else None
            if not isinstance(before, Call) or before.var is None:
                raise CompileError(
                    "the runs end differently after a repeated or conditional block; "
                    "compile them separately"
                )
            self.used.add(before.var)  # returned when the final block does not run
        # Name result variables after their tool's noun, never taking a parameter's name.
        rename: dict[str, str] = {}
        for stmt in statements:
            if isinstance(stmt, Alt):
                # One variable for every alternative, named for what they all find.
                var = identifier(_common_noun([b[-1].tool for b in stmt.branches]), self.taken)
                self.taken.add(var)
                rename[stmt.var or ""] = var
                for branch in stmt.branches:
                    for call in branch[:-1]:  # calls on the way, read by the next ones
                        noun = identifier(_noun(call.tool))
                        base = f"{call.tool}_result" if noun.endswith("_") else noun
                        inner = identifier(base, self.taken)
                        self.taken.add(inner)
                        rename[call.var or ""] = inner
                continue
            calls = stmt.body if isinstance(stmt, (Loop, If)) else (stmt,)
            for call in calls:
                if call.var in self.used or (call.var or "").startswith("@loop"):
                    noun = identifier(_noun(call.tool))
                    base = f"{call.tool}_result" if noun.endswith("_") else noun
                    if call.var in self.used or _reads(statements, call.var):
                        var = identifier(base, self.taken)
                        self.taken.add(var)
                        rename[call.var or ""] = var
        statements = [_rename(s, rename) for s in statements]
        if isinstance(statements[-1], If):
            before = statements[-2]
            assert isinstance(before, Call)
            statements[-1] = replace(statements[-1], fallback=before.var)
        if isinstance(statements[-1], Loop):
            collect = identifier("results", self.taken)
            self.taken.add(collect)
            last = statements[-1]
            statements[-1] = Loop(last.item, last.over, last.body, collect)
        # Parameters: required ones first (in order of first use), then those with defaults.
        ordered = list(self.params)
        plans: list[ParamPlan] = []
        defaults: list[ParamPlan] = []
        # Values the users typed that stayed the same in every run are the procedure's own
        # ("cancel my *pending* order") only if the runs were about different things: when
        # nothing typed varies, every run was about one entity (one customer's name and zip)
        # and none of its values may become a default.
        typed = {
            name
            for name in ordered
            if any(
                mentioned_in(v, r.trajectory.task)
                for v, r in zip(self.params[name][1], runs, strict=True)
            )
        }
        about_one = not any(
            len({canonical_json(v) for v in self.param_active.get(name, self.params[name][1])}) > 1
            for name in typed
        )
        for name in ordered:
            annotation, values, _, _ = self.params[name]
            if name in self.choosers:
                # An alternative's input: the caller gives it, or another alternative's.
                optional = f"{annotation} | None"
                defaults.append(ParamPlan(name, optional, self.param_docs[name], "None"))
                continue
            seen = self.param_active.get(name, values)
            constant = len(seen) > 1 and len({canonical_json(v) for v in seen}) == 1
            constant = constant and not (about_one and name in typed)
            values = seen
            if constant and not isinstance(values[0], (list, dict)):
                defaults.append(
                    ParamPlan(name, annotation, self.param_docs[name], literal(values[0]))
                )
            else:
                plans.append(ParamPlan(name, annotation, self.param_docs[name]))
        params = tuple(plans + defaults)
        # How the procedure finds what it acts on: the required inputs its queries take
        # before the answer, in the order they are first read (none: the caller names it).
        finders = [s for s in statements[:-1] if isinstance(s, Call) and s.tool in self.queries]
        order = [p.name for p in plans]
        found_by = [n for s in finders for n in order if _uses_param([s], n)]
        self.first_inputs = list(dict.fromkeys(found_by))
        representative = min(runs, key=lambda r: (r.trajectory.id, r.trajectory.sha256))
        index = runs.index(representative)
        # A default is the procedure's own value: the sentence keeps its word.
        fixed = {
            canonical_json(self.params[p.name][1][index])
            for p in defaults
            if p.name not in self.choosers
        }
        chosen = [
            (p.name, self.params[p.name][1][index])
            for p in defaults
            if p.name in self.choosers and self.params[p.name][1][index] is not None
        ]
        template = plain_sentence(
            representative.trajectory.task,
            [(p.name, self.params[p.name][1][index]) for p in plans] + chosen,
            [
                (key, value)
                for step in representative.steps
                for key, value in step.arguments.items()
                if canonical_json(value) not in fixed
            ],
        )
        parts: list[str] = []
        for k, whole in enumerate(self.pattern):
            block = tuple(t for i, t in enumerate(whole) if (k, i) not in self.pruned)
            if not block:
                continue
            if k in self.alternatives:
                parts.append(
                    " or ".join(
                        " then ".join(f"`{self.pattern[a][0]}`" for a in choice)
                        for choice in self.alternatives[k]
                    )
                )
            elif any(k in c for choices in self.alternatives.values() for c in choices):
                continue
            elif k in self.searches:
                parts.append(" and ".join(f"`{t}`" for t in block) + " on each item until one fits")
            elif k in self.loops:
                parts.append(" and ".join(f"`{t}`" for t in block) + " for each item")
            elif k in self.optional:
                parts.append(" and ".join(f"`{t}`" for t in block) + " when the condition holds")
            else:
                parts += [f"`{t}`" for t in block]
        chain = ", then ".join(parts)
        summary = " ".join(template.split()) or f"Call {chain}"
        if not summary.endswith((".", "!", "?")):
            summary += "."
        last_loop = isinstance(statements[-1], Loop)
        final = statements[-1]
        last_tool = final.body[-1].tool if isinstance(final, (Loop, If, Alt)) else final.tool
        returns_values = [_final(run, self.pattern, self.loops) for run in runs]
        plan = FunctionPlan(
            name=self.skill_id,
            params=params,
            returns="list" if last_loop else _annotation(returns_values, None),
            summary=summary,
            details=(f"Calls {chain}.",),
            calls=tuple(statements),
            returns_doc=(
                f"The results of `{last_tool}`, one per repetition."
                if last_loop
                else f"The result of `{last_tool}`."
            ),
        )
        cases = [
            Case(
                trajectory_id=run.trajectory.id,
                trajectory_sha256=run.trajectory.sha256,
                task=run.trajectory.task,
                args={
                    p.name: self.params[p.name][1][r]
                    for p in params
                    if not (p.name in self.choosers and self.params[p.name][1][r] is None)
                },
                calls=tuple(s.as_case_call() for s in run.steps),
                result=returns_values[r],
            )
            for r, run in enumerate(runs)
        ]
        return plan, cases


def _passes(test: Until, value: JSON, result: JSON) -> bool:
    """Whether ``result`` passes ``test`` with ``value`` for the test's value."""
    at = value_at(result, test.path)
    if test.inner is None:
        fields = [at]
    else:
        fields = [value_at(e, test.inner) for e in at] if isinstance(at, list) else []
    for field_value in fields:
        if test.op == "eq" and same_value(field_value, value):
            return True
        if test.op == "in" and isinstance(field_value, str) and isinstance(value, str):
            if value in field_value:
                return True
    return False


def _singular(list_path: Path, tool: str) -> str:
    last = next((p for p in reversed(list_path) if isinstance(p, str)), _noun(tool))
    word = identifier(last)
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return f"{word}_item"


def _final(run: _Run, pattern: Pattern, loops: set[int]) -> JSON:
    # What the skill returns for this run: the last block the run made.
    last = max(k for k in range(len(pattern)) if run.segments[k])
    if last in loops:
        return [it[-1].result for it in run.segments[last]]
    return run.segments[last][0][-1].result


def _common_noun(tools: Sequence[str]) -> str:
    """What several tools that find one thing find: the words their nouns share before any
    ``by`` (``find_customer_by_email``, ``find_customer_by_name_zip``: ``customer``)."""
    nouns = [identifier(_noun(t)).split("_") for t in tools]
    nouns = [n[: n.index("by")] if "by" in n else n for n in nouns]
    shared: list[str] = []
    for words in zip(*nouns, strict=False):
        if len(set(words)) > 1:
            break
        shared.append(words[0])
    return "_".join(shared) or "found"


def _reads(statements: Sequence[Call | Loop | If | Alt], var: str | None) -> bool:
    if var is None:
        return False
    for stmt in statements:
        exprs: list[JSON] = []
        if isinstance(stmt, Alt):
            exprs += [v for call in stmt.body for _, v in call.kwargs]
        elif isinstance(stmt, (Loop, If)):
            exprs.append(stmt.over if isinstance(stmt, Loop) else stmt.test.ref)
            for call in stmt.body:
                exprs += [v for _, v in call.kwargs]
        else:
            exprs += [v for _, v in stmt.kwargs]
        if any(_mentions(e, var) for e in exprs):
            return True
    return False


def _uses_param(statements: Sequence[Call | Loop | If | Alt], name: str) -> bool:
    """True when a parameter is read by ``statements`` (``range(times)`` included)."""
    return _reads(statements, name) or any(
        isinstance(s, Loop) and isinstance(s.over, str) and s.over == f"range({name})"
        for s in statements
    )


def _mentions(expr: JSON, var: str) -> bool:
    if isinstance(expr, Ref):
        return expr.var == var
    if isinstance(expr, dict):
        return any(_mentions(v, var) for v in expr.values())
    if isinstance(expr, list):
        return any(_mentions(v, var) for v in expr)
    return False


def _rename_expr(expr: JSON, names: Mapping[str, str]) -> JSON:
    if isinstance(expr, Ref):
        return replace(expr, var=names.get(expr.var, expr.var))
    if isinstance(expr, dict):
        return {k: _rename_expr(v, names) for k, v in expr.items()}
    if isinstance(expr, list):
        return [_rename_expr(v, names) for v in expr]
    return expr


def _rename_call(call: Call, names: Mapping[str, str]) -> Call:
    var = names.get(call.var or "")
    return Call(call.tool, tuple((k, _rename_expr(v, names)) for k, v in call.kwargs), var)


def _rename(stmt: Call | Loop | If | Alt, names: Mapping[str, str]) -> Call | Loop | If | Alt:
    if isinstance(stmt, Alt):
        return Alt(stmt.given, tuple(_rename_call(c, names) for c in stmt.body), stmt.sizes)
    if isinstance(stmt, If):
        test = replace(stmt.test, ref=_rename_expr(stmt.test.ref, names))
        return If(test, tuple(_rename_call(c, names) for c in stmt.body), stmt.fallback)
    if isinstance(stmt, Loop):
        return Loop(
            stmt.item,
            _rename_expr(stmt.over, names),
            tuple(_rename_call(c, names) for c in stmt.body),
            stmt.collect,
            stmt.until,
        )
    return _rename_call(stmt, names)


# --- entry point ---------------------------------------------------------------------------


def _choice_name(pattern: Pattern, choice: Sequence[int]) -> str:
    """An alternative's reads, for messages: ``lookup_customer_id > get_customer``."""
    return " > ".join(pattern[k][0] for k in choice)


def _alternatives(
    master: Sequence[PatternToken],
    others: Sequence[Sequence[PatternToken]],
    queries: Collection[str],
) -> tuple[list[PatternToken], list[list[list[int]]]]:
    """The master's tokens with the alternative reads of other runs beside its own, and
    where each set of alternatives sits (per set, per alternative, its blocks' positions).

    A run that does not follow the master (`_place`) read a value another way when it
    differs from the master only in one stretch of reads between what both share before and
    after, one call of a query per block: the customer found by email here, by name and zip
    there, or there by looking up their id by name and zip, then reading them. Stretches of
    several runs that overlap in the master are widened to one, so each run's way is one
    alternative of it; an alternative's calls may read each other's results. A way that is
    another with reads left out (a subsequence) is not another way, and such a set is left
    for `compile_group` to refuse, as is any other difference.

    The alternatives of a set are in a canonical order (fewest calls, then tool names), so the
    order of the runs does not matter.
    """

    def one_read(token: PatternToken) -> bool:
        return len(token[0]) == 1 and token[0][0] in queries

    # Where each differing run leaves the master: (shared before, shared after).
    spans: list[tuple[Sequence[PatternToken], int, int]] = []
    for own in others:
        if _place(own, master) is not None:
            continue
        before = 0
        while before < min(len(own), len(master)) and own[before] == master[before]:
            before += 1
        after = 0
        while (
            after < min(len(own), len(master)) - before
            and own[len(own) - 1 - after] == master[len(master) - 1 - after]
        ):
            after += 1
        if before < len(own) - after and before < len(master) - after:
            spans.append((own, before, after))
    # Overlapping stretches of the master become one.
    regions: list[list[int]] = []
    for a, b in sorted((before, len(master) - after) for _, before, after in spans):
        if regions and a < regions[-1][1]:
            regions[-1][1] = max(regions[-1][1], b)
        else:
            regions.append([a, b])
    sets_at: dict[int, tuple[int, list[tuple[PatternToken, ...]]]] = {}
    for a, b in regions:
        choices = [tuple(master[a:b])]
        for own, before, after in spans:
            if a <= before and len(master) - after <= b:
                way = tuple(own[a : len(own) - (len(master) - b)])
                if way not in choices:
                    choices.append(way)
        if all(one_read(t) for way in choices for t in way) and not any(
            x is not y and is_subpattern(x, y) for x in choices for y in choices
        ):
            sets_at[a] = (b, choices)
    merged: list[PatternToken] = []
    sets: list[list[list[int]]] = []
    i = 0
    while i < len(master):
        if i in sets_at:
            end, choices = sets_at[i]
            positions = []
            for way in sorted(choices, key=lambda c: (len(c), c)):
                positions.append(list(range(len(merged), len(merged) + len(way))))
                merged += way
            sets.append(positions)
            i = end
            continue
        merged.append(master[i])
        i += 1
    return merged, sets


def compile_group(
    trajectories: Sequence[Trajectory],
    *,
    name: str | None = None,
    queries: Collection[str] | None = None,
) -> SkillDraft:
    """Anti-unify trajectories of one procedure into one skill.

    The trajectories are taken in a canonical order (id, then hash), so the result does not
    depend on the order given.

    Raises:
        CompileError: a trajectory failed or made no successful call, the trajectories do not
            share one pattern, or a value has no Python literal.
    """
    if not trajectories:
        raise CompileError("nothing to compile: no trajectories were given")
    runs: list[_Run] = []
    # The same run twice (same content hash, whatever its id) is one run: anti-unifying a
    # trajectory with itself gives back its own straight-line skill.
    unique = {
        t.sha256: t for t in sorted(trajectories, key=lambda t: (t.id, t.sha256), reverse=True)
    }
    ordered = sorted(unique.values(), key=lambda t: (t.id, t.sha256))
    checked: list[tuple[Trajectory, list[Step]]] = []
    for t in ordered:
        where = f"trajectory {t.id!r}" + (f" ({t.source})" if t.source else "")
        if not t.outcome.success:
            raise CompileError(
                f"{where} did not succeed; only successful trajectories become skills"
            )
        steps = [s for s in t.steps if s.error is None]
        if not steps:
            raise CompileError(
                f"{where} made no successful tool call, so there is nothing to learn"
            )
        checked.append((t, steps))
    # Every tool is called by an identifier (`sandbox.names`); two tools of one procedure
    # that map to the same one could not be told apart inside the skill.
    clashes = attribute_clashes(s.tool for _, steps in checked for s in steps)
    if clashes:
        attribute, names = clashes[0]
        raise CompileError(
            f"tools {', '.join(repr(n) for n in names)} would all be called as "
            f"tools.{attribute}(...) in one skill; rename one of the tools so their names "
            "differ in letters or digits, not only in punctuation"
        )
    declared = {spec.name: spec for t, _ in checked for spec in t.tools}
    # The run with the most blocks is the master; every other run must follow it, possibly
    # leaving blocks out (those become conditional).
    master_t, master_steps = max(
        checked, key=lambda ts: (len(pattern_tokens(ts[1])), -ordered.index(ts[0]))
    )
    master = pattern_tokens(master_steps)
    if queries is None:
        every = {s.tool for _, steps in checked for s in steps}
        queries = {e.tool for e in classify_tools(every, declared).values() if e.effect == "query"}
    master, alternatives = _alternatives(master, [pattern_tokens(s) for _, s in checked], queries)
    pattern: Pattern = tuple(block for block, _ in master)
    for t, steps in checked:
        where = f"trajectory {t.id!r}" + (f" ({t.source})" if t.source else "")
        own = pattern_tokens(steps)
        own_pattern = tuple(block for block, _ in own)
        own_segments = _segment(steps, own_pattern)
        placed = _place(own, master)
        if own_segments is None or placed is None:
            raise CompileError(
                f"{where} does not follow the same procedure as {master_t.id!r} "
                "(different calls or arguments); compile them separately"
            )
        segments: list[list[list[Step]]] = [[] for _ in master]
        for mine, at in enumerate(placed):
            segments[at] = own_segments[mine]
        runs.append(_Run(t, steps, segments))
    if name is not None and not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", name):
        raise CompileError(f"skill id {name!r} must match [a-z][a-z0-9_]{{0,63}}")
    skill_id = name or ""  # the default is chosen once the plan is known
    builder = _Builder(runs, pattern, skill_id, frozenset(queries), alternatives)
    try:
        plan, cases = builder.build()
        if name is None:
            kept = [
                tool
                for k, block in enumerate(pattern)
                for i, tool in enumerate(block)
                if (k, i) not in builder.pruned
            ]
            skill_id = skill_id_for(kept, frozenset(queries), builder.first_inputs)
            if skill_id in builder.taken:
                skill_id = identifier(f"{skill_id}_skill", builder.taken)
            plan = replace(plan, name=skill_id)
        source = render_function(plan)
    except TypeError as exc:
        raise CompileError(f"trajectory {ordered[0].id!r}: {exc}") from None
    except RecursionError:
        raise CompileError(
            f"trajectory {ordered[0].id!r}: an argument nests too deeply to write as code"
        ) from None
    calling = [
        tool
        for k, block in enumerate(pattern)
        for i, tool in enumerate(block)
        if (k, i) not in builder.pruned
    ]
    tools = tuple(sorted(set(calling)))
    specs = {t: declared[t] for t in tools if t in declared}
    called = ", ".join(dict.fromkeys(calling))
    description = f"{plan.summary.rstrip('.')} (calls {called})."
    return SkillDraft(
        id=skill_id,
        source=source,
        description=description,
        tools=tools,
        cases=tuple(cases),
        tool_specs=specs,
        notes=tuple(dict.fromkeys(builder.notes)),
    )
