"""The deterministic compiler: a successful trajectory becomes a straight-line skill.

Each tool call becomes ``tools.<name>(...)``; an argument copied from an earlier result becomes
an expression reading that result (`skillbank.compiler.dataflow`); every other literal becomes
a typed parameter named after the tool parameter it feeds; the function returns the last
result. Failed calls the agent recovered from are left out: they are not part of the procedure.

Same trajectory in, same bytes out.
"""

from __future__ import annotations

import keyword
from collections.abc import Mapping
from typing import Any

from skillbank.compiler.dataflow import find_origin, iter_paths
from skillbank.compiler.emit import (
    Call,
    FunctionPlan,
    ParamPlan,
    Ref,
    identifier,
    literal,
    render_function,
    task_template,
)
from skillbank.errors import CompileError
from skillbank.skill import Case, SkillDraft, ToolCallRecord
from skillbank.trajectory import Step, Trajectory, canonical_json

__all__ = ["compile_trajectory", "skill_id_for"]

JSON = Any

_SCHEMA_TYPES = {
    "string": "str",
    "integer": "int",
    "number": "float",
    "boolean": "bool",
    "array": "list",
    "object": "dict",
}


def _py_type(value: JSON) -> str:
    if value is None:
        return "None"
    for typ in (bool, int, float, str, list, dict):
        if isinstance(value, typ):
            return typ.__name__
    raise CompileError(f"{value!r} is not a JSON value")


def _schema_type(schema: Mapping[str, JSON], key: str, value: JSON) -> str:
    prop = schema.get("properties", {}).get(key, {}) if isinstance(schema, Mapping) else {}
    declared = prop.get("type") if isinstance(prop, Mapping) else None
    if isinstance(declared, list):
        declared = next((d for d in declared if d != "null"), None)
    annotation = _SCHEMA_TYPES.get(declared) if isinstance(declared, str) else None
    observed = _py_type(value)
    if annotation == "float" and observed == "int":
        return "float"
    if annotation is None or annotation != observed:
        return observed  # the recorded value is the ground truth when the schema disagrees
    return annotation


def _prop_description(schema: Mapping[str, JSON], key: str) -> str:
    prop = schema.get("properties", {}).get(key, {}) if isinstance(schema, Mapping) else {}
    desc = prop.get("description", "") if isinstance(prop, Mapping) else ""
    return str(desc).strip().rstrip(".")


def skill_id_for(tools: list[str]) -> str:
    """The default skill id for a sequence of tool names (consecutive repeats folded).

    The tool chain is the most stable name a single trajectory offers (task wording varies
    between runs of the same procedure). A one-call skill gets a ``_skill`` suffix so it never
    shadows the tool it wraps when both are offered to a model.
    """
    chain: list[str] = []
    for tool in tools:
        if not chain or chain[-1] != tool:
            chain.append(identifier(tool))
    if len(chain) == 1:
        name = f"{chain[0]}_skill"
    else:
        name = "_".join(chain)
        if len(name) > 56:
            name = f"{chain[0]}_to_{chain[-1]}"
    return identifier(name)[:64].rstrip("_")


def _noun(tool: str) -> str:
    words = identifier(tool).split("_")
    return "_".join(words[1:]) if len(words) > 1 else words[0]


def compile_trajectory(trajectory: Trajectory, *, name: str | None = None) -> SkillDraft:
    """Compile one successful trajectory into a straight-line skill.

    Args:
        trajectory: A trajectory whose outcome is a success.
        name: The skill id to use instead of the default from `skill_id_for`.

    Raises:
        CompileError: when the trajectory failed, made no successful tool call, or holds a
            value Python source cannot express.
    """
    where = f"trajectory {trajectory.id!r}" + (
        f" ({trajectory.source})" if trajectory.source else ""
    )
    if not trajectory.outcome.success:
        raise CompileError(f"{where} did not succeed; only successful trajectories become skills")
    steps: list[Step] = [s for s in trajectory.steps if s.error is None]
    if not steps:
        raise CompileError(f"{where} made no successful tool call, so there is nothing to learn")
    skill_id = name or skill_id_for([s.tool for s in steps])
    if len(skill_id) > 64:
        raise CompileError(f"skill id {skill_id!r} is longer than 64 characters")
    if not (skill_id[:1].isalpha() and skill_id.islower() and len(skill_id) <= 64):
        raise CompileError(f"skill id {skill_id!r} must match [a-z][a-z0-9_]{{0,63}}")

    taken: set[str] = {skill_id}

    params: dict[tuple[str, str], ParamPlan] = {}
    values: dict[str, JSON] = {}
    used_results: set[int] = set()
    notes: list[str] = []
    results = [s.result for s in steps]

    def build(value: JSON, step: int, keypath: tuple[str | int, ...]) -> JSON:
        tool = steps[step].tool
        origin = find_origin(value, results[:step], trajectory.task)
        if origin is not None:
            used_results.add(origin.step)
            ref = Ref(f"@{origin.step}", origin.path)  # named once the parameters are known
            where_arg = f"{tool}({'.'.join(map(str, keypath))})"
            note = f"{where_arg} <- {steps[origin.step].tool} result{ref.render()[len(ref.var) :]}"
            if origin.alternatives:
                alts = ", ".join(
                    f"{steps[s].tool}{Ref('', p).render()}" for s, p in origin.alternatives[:3]
                )
                note += f" (also found at {alts}; the nearest, shortest path was chosen)"
            notes.append(note)
            return ref
        if value is None:
            return None
        if isinstance(value, (dict, list)) and value:
            inner = [
                p
                for p, sub in iter_paths(value)
                if p and find_origin(sub, results[:step], trajectory.task) is not None
            ]
            if inner:
                items = value.items() if isinstance(value, dict) else enumerate(value)
                built = {k: build(v, step, (*keypath, k)) for k, v in items}
                return built if isinstance(value, dict) else list(built.values())
        base = next((k for k in reversed(keypath) if isinstance(k, str)), "value")
        key = (base, canonical_json(value))
        if key not in params:
            spec = trajectory.tool(tool)
            schema = spec.parameters if spec else {}
            top = len(keypath) == 1
            annotation = _schema_type(schema, base, value) if top else _py_type(value)
            pname = _param_name(base, tool, taken)
            taken.add(pname)
            desc = _prop_description(schema, base) if top else ""
            shown = literal(value)
            if len(shown) > 60:
                shown = shown[:57] + "..."
            arg = ".".join(map(str, keypath))
            lead = f"{desc}; passed" if desc else "Passed"
            doc = f"{lead} to `{tool}` as `{arg}` (e.g. {shown})."
            params[key] = ParamPlan(pname, annotation, doc)
            values[pname] = value
        return Ref(params[key].name)

    calls_src: list[tuple[str, tuple[tuple[str, JSON], ...]]] = []
    try:
        for i, step in enumerate(steps):
            kwargs = tuple((str(k), build(v, i, (str(k),))) for k, v in step.arguments.items())
            calls_src.append((step.tool, kwargs))
        for _, kwargs in calls_src:
            for _, expr in kwargs:
                if not isinstance(expr, Ref):
                    _check_literals(expr)
    except TypeError as exc:
        raise CompileError(f"{where}: {exc}") from None
    except RecursionError:
        raise CompileError(f"{where}: an argument nests too deeply to write as code") from None

    # Result variables are named after their tool's noun (find_customer -> customer), never
    # taking a name a parameter already has.
    result_vars: dict[str, str] = {}
    for i in sorted(used_results):
        noun = identifier(_noun(steps[i].tool))
        var = identifier(f"{steps[i].tool}_result" if noun.endswith("_") else noun, taken)
        taken.add(var)
        result_vars[f"@{i}"] = var
    calls = tuple(
        Call(tool, _resolve(kwargs, result_vars), result_vars.get(f"@{i}"))
        for i, (tool, kwargs) in enumerate(calls_src)
    )
    for call in calls:
        if (
            not call.tool.isidentifier()
            or keyword.iskeyword(call.tool)
            or call.tool.startswith("_")
        ):
            raise CompileError(
                f"{where}: tool name {call.tool!r} cannot be called as tools.<name>(...) "
                "(it must be an identifier, not a Python keyword, and not start with '_'); "
                "rename the tool"
            )
    param_list = tuple(params.values())
    chain = ", then ".join(f"`{s.tool}`" for s in steps)
    summary = task_template(trajectory.task, [(p.name, values[p.name]) for p in param_list])
    summary = " ".join(summary.split()) or f"Call {chain}"
    if not summary.endswith((".", "!", "?")):
        summary += "."
    plan = FunctionPlan(
        name=skill_id,
        params=param_list,
        returns=_py_type(steps[-1].result),
        summary=summary,
        details=(f"Calls {chain}.",),
        calls=calls,
        returns_doc=f"The result of `{steps[-1].tool}`.",
    )
    source = render_function(plan)
    tools = tuple(sorted({s.tool for s in steps}))
    case = Case(
        trajectory_id=trajectory.id,
        trajectory_sha256=trajectory.sha256,
        task=trajectory.task,
        args={p.name: values[p.name] for p in param_list},
        calls=tuple(ToolCallRecord(s.tool, dict(s.arguments), s.result) for s in steps),
        result=steps[-1].result,
    )
    declared = {spec.name: spec for spec in trajectory.tools}
    specs = {t: declared[t].to_openai() for t in tools if t in declared}
    called = ", ".join(dict.fromkeys(s.tool for s in steps))
    description = f"{summary.rstrip('.')} (calls {called})."
    return SkillDraft(
        id=skill_id,
        source=source,
        description=description,
        tools=tools,
        cases=(case,),
        tool_specs=specs,
        notes=tuple(dict.fromkeys(notes)),
    )


def _param_name(base: str, tool: str, taken: set[str]) -> str:
    # A second parameter feeding a same-named tool argument is named after the tool's verb
    # (update_email's email -> update_email) before falling back to a number.
    name = identifier(base)
    if name not in taken:
        return name
    verb = identifier(tool).split("_")[0]
    if verb != name:
        candidate = identifier(f"{verb}_{base}")
        if candidate not in taken:
            return candidate
    return identifier(base, taken)


def _resolve(expr: JSON, names: Mapping[str, str]) -> JSON:
    if isinstance(expr, Ref):
        return Ref(names.get(expr.var, expr.var), expr.path)
    if isinstance(expr, tuple):
        return tuple((k, _resolve(v, names)) for k, v in expr)
    if isinstance(expr, dict):
        return {k: _resolve(v, names) for k, v in expr.items()}
    if isinstance(expr, list):
        return [_resolve(v, names) for v in expr]
    return expr


def _check_literals(expr: JSON) -> None:
    # Raise TypeError if ``expr`` holds a value with no Python literal (e.g. NaN).
    if isinstance(expr, Ref):
        return
    if isinstance(expr, dict):
        for v in expr.values():
            _check_literals(v)
    elif isinstance(expr, list):
        for v in expr:
            _check_literals(v)
    else:
        literal(expr)
