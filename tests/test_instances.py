"""Instance independence: a skill is the procedure, not the entities its runs were about.

Properties over the bundled shop's recorded runs (real procedures, several runs each):

- adding a read that nothing uses to a run never changes the skill's code (slicing, then
  generalising, as `skillbank.learning` does);
- renaming the entities the runs are about (every id and email, consistently, in the task
  text and in every call) never changes the code, only the examples in its docstring.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from skillbank.compiler import compile_group
from skillbank.compiler.effects import classify_tools
from skillbank.compiler.slicing import slice_run
from skillbank.trajectory import Step, Trajectory, load_trajectories

SHOP = Path(__file__).resolve().parents[1] / "skillbank/examples/trajectories/shop.jsonl"
_RUNS = load_trajectories(SHOP)
PROCEDURES: dict[str, list[Trajectory]] = defaultdict(list)
for _t in _RUNS:
    PROCEDURES[_t.id.rsplit("-", 1)[0]].append(_t)
NAMES = sorted(PROCEDURES)


def learn(runs: list[Trajectory]) -> Any:
    """What `skillbank.learning` does with one procedure's runs: slice each, generalise."""
    specs = {spec.name: spec for t in runs for spec in t.tools}
    effects = classify_tools({s.tool for t in runs for s in t.steps}, specs)
    return compile_group([replace(t, steps=slice_run(t, effects).steps) for t in runs])


def code_of(source: str) -> str:
    """The function without its docstring (which quotes one run's values as examples)."""
    head, _, rest = source.partition('"""')
    _, _, body = rest.partition('"""')
    return head + body


@st.composite
def groups(draw: st.DrawFn) -> list[Trajectory]:
    runs = PROCEDURES[draw(st.sampled_from(NAMES))]
    picked = draw(st.lists(st.sampled_from(runs), min_size=1, max_size=4, unique_by=id))
    return sorted(picked, key=lambda t: t.id)


@settings(max_examples=40, deadline=None)
@given(groups(), st.data())
def test_adding_a_read_nothing_uses_never_changes_the_skill(
    runs: list[Trajectory], data: st.DataObject
) -> None:
    before = learn(runs)
    n = data.draw(st.integers(0, len(runs) - 1))
    target = runs[n]
    at = data.draw(st.integers(0, len(target.steps) - 1))  # never after the answer
    token = data.draw(st.integers(10**6, 10**7))
    noise = Step("get_weather", {"city": f"Z{token}"}, {"forecast": f"sunny-{token}", "t": 21.5})
    steps = (*target.steps[:at], noise, *target.steps[at:])
    noisy = [*runs[:n], replace(target, steps=steps), *runs[n + 1 :]]
    after = learn(noisy)
    assert after.source == before.source
    assert after.tools == before.tools


_ENTITY = re.compile(r"[\w.+-]*\d[\w.+-]*(?:@[\w.-]+)?|[\w.+-]+@[\w.-]+")


def renamed(value: Any, mapping: dict[str, str]) -> Any:
    if isinstance(value, str):
        return mapping.get(value, value)
    if isinstance(value, list):
        return [renamed(v, mapping) for v in value]
    if isinstance(value, dict):
        return {k: renamed(v, mapping) for k, v in value.items()}
    return value


def entities(runs: list[Trajectory]) -> set[str]:
    """Every string value that names an entity: an id (has a digit) or an email."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, str) and _ENTITY.fullmatch(value) and len(value) >= 3:
            found.add(value)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)

    for t in runs:
        for s in t.steps:
            walk(s.arguments)
            walk(s.result)
    return found


@settings(max_examples=40, deadline=None)
@given(groups(), st.permutations("0123456789"), st.sampled_from(["q", "zz", "x-"]))
def test_renaming_the_entities_never_changes_the_code(
    runs: list[Trajectory], digits: list[str], prefix: str
) -> None:
    table = str.maketrans("0123456789", "".join(digits))
    names = entities(runs)
    mapping = {v: prefix + v.translate(table) for v in names}
    pattern = re.compile("|".join(re.escape(v) for v in sorted(names, key=len, reverse=True)))

    def rename_run(t: Trajectory) -> Trajectory:
        task = pattern.sub(lambda m: mapping[m.group(0)], t.task) if names else t.task
        steps = tuple(
            replace(s, arguments=renamed(s.arguments, mapping), result=renamed(s.result, mapping))
            for s in t.steps
        )
        return replace(t, task=task, steps=steps)

    before = learn(runs)
    after = learn([rename_run(t) for t in runs])
    assert code_of(after.source) == code_of(before.source)
    assert after.id == before.id
