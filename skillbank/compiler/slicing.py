"""Slicing: the part of a run that is the procedure, and the key that names the procedure.

A run is a transcript: besides what it did, it holds every read the agent made while it
looked around. The procedure is what the run *changed* (its commands, in order) and where
each command argument came from. So a run is cut down to a backward slice before it is
grouped or generalised:

- **Sinks.** Every command is kept (`skillbank.compiler.effects`). A run with no command is a
  read-only procedure whose answer is its last result, so its last call is the sink.
- **Dependencies.** An argument value copied from an earlier result (the first result that
  held it, leaving out results of calls that were *given* the value, which only echo it: an
  order listing repeating the customer id it was asked for; a value the user typed in the task
  is input, never data flow) makes that earlier call a dependency.
  Nested arguments count at every leaf.
- **Gates.** A read of the very thing a later kept command acts on (it shares a non-trivial
  argument value with that command: ``check_stock(sku)`` before ``restock(sku)``) stays
  too: its result may be what decided whether the command ran, which generalisation turns
  into a branch. A read after the last command that uses its value only checks what was
  done, and goes; so does a second look with the same tool at what a kept read already
  covers (listing a customer's orders after listing their delivered ones).
- **The slice** is the sinks, the gates and everything they depend on, transitively, in
  the run's order, except that the reads between two commands are put in one canonical
  order (dependencies first, then by tool name and arguments): reads change nothing, so the
  order an agent happened to make them in is not part of the procedure. Every other call is
  a query nothing used, and is dropped.

The **skeleton** of a sliced run names its procedure: the commands (repeats folded, as
`skillbank.compiler.generalize.pattern_of` folds them), each with its argument names and,
per argument, where the value came from: the user (``input``) or the tool whose result held
it. Two runs that changed the same things from the same kinds of sources share a skeleton,
whatever else they read; a read-only run's skeleton is its sink's. Values never enter the
skeleton, so renaming the entities a run is about never changes it. With ``any_query`` the
key says only that an argument came from *a* query, not which: runs that found the customer
by email and runs that found them by name and zip share it, and grouping joins them as
alternative reads of one procedure.

Pure and deterministic: no sandbox, no I/O; the same run gives the same slice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from skillbank.compiler.dataflow import find_origin, iter_paths, trivial, value_at
from skillbank.compiler.effects import ToolEffect
from skillbank.compiler.generalize import pattern_of
from skillbank.trajectory import Step, Trajectory, canonical_json

__all__ = ["Slice", "skeleton_key", "slice_run"]


@dataclass(frozen=True)
class Slice:
    """A run cut down to its procedure."""

    #: The calls kept, in the run's order but for reads between commands (`_canonical_order`).
    steps: tuple[Step, ...]
    #: Their positions among the run's successful calls, in the slice's order (reads between
    #: two commands in a canonical order, `_canonical_order`).
    kept: tuple[int, ...]
    #: Positions of the queries nothing used (dropped).
    dropped: tuple[int, ...]
    #: For each kept call, per argument name: the position of the call whose result the
    #: value came from, or None for the user's input (for a nested argument: the first leaf
    #: that came from a result).
    sources: tuple[Mapping[str, int | None], ...]


def _leaves(value: object) -> list[object]:
    leaves = [sub for _, sub in iter_paths(value) if not isinstance(sub, dict | list)]
    return leaves or [value]


#: A value as `_handed` keeps it: its type's name and its canonical JSON (type-exact, as
#: `skillbank.compiler.dataflow.same_value` compares).
_Key = tuple[str, str]


def _key(value: object) -> _Key:
    return type(value).__name__, canonical_json(value)


def _handed(step: Step) -> frozenset[_Key]:
    """Every value a call was given: its arguments and everything inside them."""
    return frozenset(_key(sub) for _, sub in iter_paths(dict(step.arguments)))


def _candidates(
    value: object, steps: Sequence[Step], handed: Sequence[frozenset[_Key]], task: str
) -> list[int]:
    """The earlier calls ``value`` may have come from, earliest first; [] for the user's input.

    A result that echoes an argument (an order listing repeating the customer id it was asked
    about, a re-read of the same order) did not produce the value. And a value is learned
    once: where the run first *used* it, it came from a result before that use or from the
    user. So a later result that holds it too (a wider listing the agent looked at
    afterwards, a record that happens to carry the same status) is never its source, and a
    value the agent used before any result showed it stays input at every later use.
    """
    if trivial(value):
        return []
    key = _key(value)
    first_use = next((i for i, given in enumerate(handed[: len(steps)]) if key in given), None)
    known = steps[:first_use] if first_use is not None else steps
    results = [None if key in given else s.result for s, given in zip(known, handed, strict=False)]
    origin = find_origin(value, results, task)
    if origin is None:
        return []
    return sorted({origin.step, *(step for step, _ in origin.alternatives)})


def _leaf_candidates(
    value: object, steps: Sequence[Step], handed: Sequence[frozenset[_Key]], task: str
) -> list[list[int]]:
    """`_candidates` of an argument value, then of each of its leaves (for a nested one)."""
    found = [_candidates(value, steps, handed, task)]
    if isinstance(value, dict | list):
        found += [_candidates(leaf, steps, handed, task) for leaf in _leaves(value)]
    return found


def _choose(candidates: Sequence[int], anchors: set[int]) -> int | None:
    """One source among ``candidates``: a call another argument of the same call surely came
    from (the item that gave the sku gave the quantity too), else the earliest."""
    if not candidates:
        return None
    return next((c for c in candidates if c in anchors), candidates[0])


def _call_sources(
    step: Step, steps: Sequence[Step], handed: Sequence[frozenset[_Key]], task: str
) -> dict[str, list[int | None]]:
    """Per argument of ``step``, the source of the value and of each leaf (`_choose`)."""
    found = {
        name: _leaf_candidates(value, steps, handed, task)
        for name, value in sorted(step.arguments.items())
    }
    # Values only one earlier result holds anchor the choice for the others.
    anchors = {c[0] for per in found.values() for c in per if len(c) == 1}
    return {name: [_choose(c, anchors) for c in per] for name, per in found.items()}


def slice_run(trajectory: Trajectory, effects: Mapping[str, ToolEffect]) -> Slice:
    """The backward slice of a run's successful calls (see the module docstring).

    ``effects`` classifies the tools (a tool missing from it is a command, the safe side).
    """
    steps = [s for s in trajectory.steps if s.error is None]
    if not steps:
        return Slice((), (), (), ())
    handed = [_handed(s) for s in steps]
    chosen = [
        _call_sources(step, steps[:j], handed, trajectory.task) for j, step in enumerate(steps)
    ]
    depends = [
        {source for per in call.values() for source in per if source is not None} for call in chosen
    ]

    def is_command(i: int) -> bool:
        effect = effects.get(steps[i].tool)
        return effect is None or effect.effect == "command"

    sinks = [i for i in range(len(steps)) if is_command(i)] or [len(steps) - 1]
    values = [
        {canonical_json(v) for v in _leaves(dict(s.arguments)) if not trivial(v)} for s in steps
    ]
    keep: set[int] = set()
    todo = list(sinks)
    while todo:
        while todo:
            i = todo.pop()
            if i not in keep:
                keep.add(i)
                todo += depends[i]
        todo = [
            i
            for i in range(len(steps))
            if i not in keep
            and any(c > i and is_command(c) and values[i] & values[c] for c in keep)
            # a second look at what a kept read of the same tool already covers adds nothing
            and not any(steps[k].tool == steps[i].tool and values[i] <= values[k] for k in keep)
        ]
    searches = _inspected(steps, keep, depends, is_command)
    for search in searches:
        keep.update(search)
        # The candidates keep their order: it is the order the search walks the list in.
        for before, after in zip(search, search[1:], strict=False):
            depends[after] = depends[after] | {before}
    kept = _canonical_order(
        sorted(keep),
        lambda i: is_command(i) or i in sinks,
        lambda i: (steps[i].tool, canonical_json(dict(steps[i].arguments))),
        depends,
    )
    # An argument's source: the whole value's, else its first leaf's that came from a result.
    sources = tuple(
        {name: next((x for x in per if x is not None), None) for name, per in chosen[i].items()}
        for i in kept
    )
    return Slice(
        steps=tuple(steps[i] for i in kept),
        kept=kept,
        dropped=tuple(i for i in range(len(steps)) if i not in keep),
        sources=sources,
    )


def _inspected(
    steps: Sequence[Step],
    keep: set[int],
    depends: Sequence[set[int]],
    is_command: Callable[[int], bool],
) -> list[list[int]]:
    """The searches among the kept reads: the candidates each looked at, then the one kept.

    A kept read that took element ``k`` of a list in an earlier kept result
    (``get_order(order_id=orders[2]["order_id"])``), made right after reads of the same tool
    on elements ``0 .. k-1`` of that list, in order, found its element by inspecting them
    one by one: those reads are the search, and stay (generalisation learns what made the
    last one the right one).
    """
    found: list[list[int]] = []
    for i in sorted(keep):
        if is_command(i) or len(steps[i].arguments) != 1:
            continue
        ((key, value),) = steps[i].arguments.items()
        for s in sorted(depends[i]):
            for path, sub in iter_paths(steps[s].result):
                cut = next((n for n, part in enumerate(path) if type(part) is int), None)
                if cut is None or path[cut] == 0 or sub != value or type(sub) is not type(value):
                    continue
                items = value_at(steps[s].result, path[:cut])
                rest = path[cut + 1 :]
                wanted = [value_at(item, rest) for item in items[: path[cut]]]
                # The reads just before this one, in list order, of the elements before it.
                before = list(range(i - len(wanted), i))
                if (
                    before
                    and before[0] > s
                    and all(
                        steps[b].tool == steps[i].tool
                        and list(steps[b].arguments) == [key]
                        and canonical_json(steps[b].arguments[key]) == canonical_json(w)
                        for b, w in zip(before, wanted, strict=True)
                    )
                ):
                    found.append([*before, i])
                break
    return found


def _canonical_order(
    kept: Sequence[int],
    fixed: Callable[[int], bool],
    key: Callable[[int], tuple[str, str]],
    depends: Sequence[set[int]],
) -> tuple[int, ...]:
    """The kept calls with the reads between two commands in one canonical order.

    A read changes nothing, so which of two independent reads an agent made first is not part
    of the procedure: between commands (and the answer), reads are put in dependency order,
    ties broken by tool name and arguments. A read never moves past a command, whose effect
    it may have seen.
    """
    out: list[int] = []
    segment: list[int] = []

    def flush() -> None:
        placed: set[int] = set()
        waiting = list(segment)
        while waiting:
            ready = [i for i in waiting if not (depends[i] & set(waiting)) - placed]
            nxt = min(ready or waiting, key=key)
            out.append(nxt)
            placed.add(nxt)
            waiting.remove(nxt)
        segment.clear()

    for i in kept:
        if fixed(i):
            flush()
            out.append(i)
        else:
            segment.append(i)
    flush()
    return tuple(out)


def skeleton_key(cut: Slice, effects: Mapping[str, ToolEffect], *, any_query: bool = False) -> str:
    """The procedure a sliced run performs: its commands (repeats folded), each argument's
    source kind; a read-only run's sink stands in for its commands.

    With ``any_query``, an argument read from a query's result says only that (``query``),
    not which query: runs that found the customer by email and runs that found them by name
    and zip then share the key, as alternatives of one procedure. A command stays named.
    """
    if not cut.steps:
        return ""
    commands = [
        n
        for n, step in enumerate(cut.steps)
        if (effect := effects.get(step.tool)) is None or effect.effect == "command"
    ] or [len(cut.steps) - 1]
    positions = {position: n for n, position in enumerate(cut.kept)}
    described = []
    for n in commands:
        step = cut.steps[n]
        args = []
        for name, source in sorted(cut.sources[n].items()):
            origin = "input" if source is None else cut.steps[positions[source]].tool
            if any_query and origin in effects and effects[origin].effect == "query":
                origin = "<query>"
            args.append(f"{name}<-{origin}")
        described.append(f"{step.tool}({','.join(args)})")
    # Fold repeats of whole described calls, as the compiler folds repeated blocks.
    folded = pattern_of(described)
    return canonical_json([list(block) for block in folded])
