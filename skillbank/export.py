"""Export: skills written out in formats other tools read.

``export_agent_skills`` writes each skill as an `Agent Skills <https://agentskills.io>`_ folder,
the layout the ``skills-ref`` validator checks::

    OUT/<name>/SKILL.md                  front matter (name, description, compatibility,
                                         metadata) and a page: what it does, when to use it,
                                         signature, arguments, how to run the script, tools
    OUT/<name>/scripts/<skill_id>.py     the skill as a runnable script (plain Python)
    OUT/<name>/references/tools.json     the definitions of the tools it calls
    OUT/<name>/references/cases.jsonl    its recorded cases

``<name>`` is the skill id with hyphens for underscores (Agent Skills names are lowercase
letters, digits and single hyphens, and must equal the folder's name); the script keeps the
id, which is a Python identifier, so the script can also be imported.

The sandbox does not travel with an export. In a bank a skill runs under RestrictedPython in
a worker that can reach only the tools it declares; the exported script is plain Python and
can do whatever the host tools handed to it can do. Both SKILL.md and the script say so.

Writing is deterministic (the same skills give the same bytes, so a re-export changes
nothing) and careful: a folder that exists already is replaced only when it holds an earlier
export of the same skill and nothing else; anything else is refused before a file is written.
"""

from __future__ import annotations

import ast
import json
import shlex
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from sandbox.names import attribute_map
from skillbank.errors import ExportError
from skillbank.library import atomic_write, skill_files
from skillbank.skill import Skill, docstring_args

__all__ = [
    "EXPORT_FORMAT",
    "ExportError",
    "agent_skill_files",
    "agent_skill_name",
    "export_agent_skills",
]

JSON = Any

#: The ``metadata`` value that marks a folder as written by this export (and its layout).
EXPORT_FORMAT = "skillbank agent-skills 1"

#: Agent Skills limits (the ``skills-ref`` validator's): name, description, compatibility.
_MAX_NAME = 64
_MAX_DESCRIPTION = 1024
_MAX_COMPATIBILITY = 500

_COMPATIBILITY = (
    "Python 3.11 or newer, standard library only. The script needs host implementations of "
    "the tools it calls (see SKILL.md, 'Tools it needs'). It runs as plain Python: "
    "skillbank's sandbox does not come with it."
)

_NO_SANDBOX = (
    "**No sandbox.** skillbank learned and tested this skill, and in a skillbank bank it runs "
    "in a RestrictedPython sandbox that can reach only the tools it declares. That sandbox "
    "does not travel with this export: `{script}` runs as plain Python, with whatever the "
    "host tools you give it can do. Review it as code before you run it."
)


def agent_skill_name(skill_id: str) -> str:
    """A skill's Agent Skills name: ``list_orders_by_email`` -> ``find-customer-list-orders``.

    Runs of underscores become one hyphen, and leading or trailing ones are dropped, since
    names may not hold ``--`` or start or end with a hyphen.

    Raises:
        ExportError: the id gives no valid name (empty, or not lowercase letters and digits).
    """
    name = "-".join(part for part in skill_id.split("_") if part)
    if (
        not name
        or len(name) > _MAX_NAME
        or not all(c.isascii() and (c.islower() or c.isdigit() or c == "-") for c in name)
    ):
        raise ExportError(
            f"skill id {skill_id!r} gives no valid Agent Skills name ({name!r}): names are 1-64 "
            "lowercase letters, digits and single hyphens"
        )
    return name


def agent_skill_files(
    skill: Skill, dependencies: Mapping[str, Skill] | None = None
) -> dict[str, str]:
    """The exact text of each file of one skill's Agent Skills folder, by relative path.

    Pure: the same skill gives the same text. ``dependencies`` maps skill id to skill for the
    skills this one requires (`Skill.requires`, and theirs); their code goes into the script.

    Raises:
        ExportError: a required skill is missing from ``dependencies``, or two embedded skills
            define the same top-level name differently.
    """
    name = agent_skill_name(skill.id)
    embedded = _required_skills(skill, dependencies or {})
    script_path = f"scripts/{skill.id}.py"
    stored = skill_files(
        skill, version=skill.version, stage=skill.stage, deprecated_by=skill.deprecated_by
    )
    return {
        "SKILL.md": _skill_md(skill, name, script_path, embedded),
        script_path: _script(skill, embedded),
        "references/tools.json": stored["tools.json"],
        "references/cases.jsonl": stored["cases.jsonl"],
    }


def export_agent_skills(
    skills: Iterable[Skill], out: Path, *, dependencies: Iterable[Skill] = ()
) -> list[Path]:
    """Write each skill as an Agent Skills folder under ``out``; return the folders, in order.

    ``out`` is created when missing. A skill that requires other skills gets their code in its
    script; they are looked up among ``skills`` and ``dependencies`` (pass the whole library
    there to export a few skills that call others). Folders of ``out`` that are not written
    are left alone. Every target is checked before anything is written, so a refusal leaves
    ``out`` as it was.

    Raises:
        ExportError: ``out`` or a target folder holds something other than an earlier export
            of the same skill, two ids give the same name, or a required skill is missing.
    """
    chosen = list(skills)
    known = {s.id: s for s in dependencies} | {s.id: s for s in chosen}
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a folder; choose another output folder")
    plans: list[tuple[Path, dict[str, str]]] = []
    owner: dict[str, str] = {}
    for skill in chosen:
        name = agent_skill_name(skill.id)
        if name in owner and owner[name] != skill.id:
            raise ExportError(
                f"skills {owner[name]!r} and {skill.id!r} both export as {name!r}; export them "
                "to different folders"
            )
        if name in owner:
            continue
        owner[name] = skill.id
        folder = out / name
        files = agent_skill_files(skill, known)
        _check_replaceable(folder, skill.id, files)
        plans.append((folder, files))
    for folder, files in plans:
        for rel, text in files.items():
            _write_if_changed(
                folder / rel, text.encode("utf-8"), executable=rel.startswith("scripts/")
            )
    return [folder for folder, _ in plans]


# --------------------------------------------------------------------------- SKILL.md


def _one_line(text: str) -> str:
    # skills-ref splits SKILL.md on the first two "---", wherever they are.
    text = " ".join(text.split())
    while "---" in text:
        text = text.replace("---", "- -")
    return text


def _description(skill: Skill) -> str:
    text = _one_line(skill.description) or f"Runs the procedure {skill.id}."
    tasks = sorted({_one_line(t) for t in skill.tasks if t.strip()})[:2]
    if tasks:
        text += " Use it for tasks like: " + "; ".join(f'"{t}"' for t in tasks) + "."
    if len(text) > _MAX_DESCRIPTION:
        text = text[: _MAX_DESCRIPTION - 3].rstrip() + "..."
    return text


def _skill_md(skill: Skill, name: str, script_path: str, embedded: Sequence[Skill]) -> str:
    metadata = {
        "skillbank-export": EXPORT_FORMAT,
        "skillbank-id": skill.id,
        "skillbank-version": str(skill.version),
        "skillbank-stage": skill.stage,
        "skillbank-content-hash": f"sha256:{skill.content_hash}",
        "entry": script_path,
        "tools": " ".join(_host_tools(skill, embedded)),
    }
    if skill.requires:
        metadata["skillbank-requires"] = " ".join(skill.requires)
    if skill.deprecated_by:
        metadata["skillbank-deprecated-by"] = skill.deprecated_by
    front = {
        "name": name,
        "description": _description(skill),
        "compatibility": _COMPATIBILITY[:_MAX_COMPATIBILITY],
        "metadata": {k: _one_line(v) for k, v in metadata.items()},
    }
    head = yaml.safe_dump(front, sort_keys=False, allow_unicode=True, width=4096)
    script_name = Path(script_path).name
    cases = sorted(skill.cases, key=lambda c: (c.trajectory_id, c.trajectory_sha256))
    body = [f"# {name}", "", _one_line(skill.description), ""]
    body += ["> " + _NO_SANDBOX.format(script=script_path), ""]
    if skill.deprecated_by:
        body += [
            f"**Deprecated** in its bank: `{skill.deprecated_by}` replaces it "
            f"(exported as `{agent_skill_name(skill.deprecated_by)}`).",
            "",
        ]
    body += ["## When to use it", "", "For tasks like these (the ones it was learned from):", ""]
    body += [f"- {' '.join(c.task.split())}" for c in cases[:10]]
    if len(cases) > 10:
        body.append(f"- ... and {len(cases) - 10} more in `references/cases.jsonl`")
    if not cases:
        body.append("- (no recorded task)")
    body += ["", "## Signature", "", "```python", skill.signature.render(), "```", ""]
    body += ["## Arguments", ""]
    if skill.signature.params:
        described = docstring_args(skill.signature.docstring)
        body += ["| name | type | default | description |", "| --- | --- | --- | --- |"]
        for p in skill.signature.params:
            default = f"`{p.default}`" if p.has_default else "required"
            text = " ".join(described.get(p.name, "").split()).replace("|", "\\|")
            body.append(f"| `{p.name}` | `{p.annotation}` | {default} | {text} |")
    else:
        body.append("None.")
    example = json.dumps(dict(cases[0].args), sort_keys=True, ensure_ascii=False) if cases else "{}"
    body += [
        "",
        "## How to run it",
        "",
        "Give the arguments as one JSON object, on the command line or on standard input, and",
        "the host tools as `--tools MODULE:ATTR`: a mapping of tool name to function, or a",
        "function that returns one (the current folder is importable). The script prints the",
        "result as JSON, or the error on standard error with exit status 1.",
        "",
        "```sh",
        f"python {script_path} --tools MODULE:ATTR {shlex.quote(example)}",
        f"echo {shlex.quote(example)} | python {script_path} --tools MODULE:ATTR",
        "```",
        "",
        f"From Python: `{script_name[:-3]}._run(arguments, tools)` with the same mapping.",
        "The example arguments are those of its first recorded case; `references/cases.jsonl`",
        "holds every recorded case (arguments, each tool call and its result, the result).",
        "",
        "## Tools it needs",
        "",
    ]
    specs = {name: spec for s in (*embedded, skill) for name, spec in s.tool_specs.items()}
    for tool in _host_tools(skill, embedded):
        spec = specs.get(tool)
        desc = " ".join(spec.description.split()) if spec is not None else ""
        body.append(f"- `{tool}`" + (f": {desc}" if desc else ""))
    if not _host_tools(skill, embedded):
        body.append("None.")
    body += ["", "Their definitions (JSON Schema arguments) are in `references/tools.json`."]
    if embedded:
        body += [
            "",
            "The skills it calls are part of the script: "
            + ", ".join(f"`{s.id}`" for s in embedded)
            + ".",
        ]
    body += [
        "",
        "## Provenance",
        "",
        f"skillbank skill `{skill.id}`, version {skill.version}, stage {skill.stage}, "
        f"learned from {len(cases)} recorded case(s); code sha256 `{skill.content_hash}`.",
    ]
    return f"---\n{head}---\n\n" + "\n".join(body) + "\n"


# --------------------------------------------------------------------------- the script


def _required_skills(skill: Skill, known: Mapping[str, Skill]) -> list[Skill]:
    """The skills ``skill`` requires, transitively, in an order where each comes after its own."""
    order: list[Skill] = []
    seen: set[str] = {skill.id}

    def visit(s: Skill) -> None:
        for rid in s.requires:
            if rid in seen:
                continue
            seen.add(rid)
            if rid not in known:
                raise ExportError(
                    f"skill {s.id!r} requires skill {rid!r}, which was not given; export it "
                    "too, or pass the library as dependencies"
                )
            visit(known[rid])
            order.append(known[rid])

    visit(skill)
    return order


def _host_tools(skill: Skill, embedded: Sequence[Skill]) -> list[str]:
    inside = {s.id for s in embedded}
    return sorted({t for s in (*embedded, skill) for t in s.tools} - inside)


def _without_future_imports(source: str) -> tuple[str, list[str]]:
    """The source without ``from __future__`` lines (only legal at a file's top), and them."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    drop: set[int] = set()
    futures: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            futures.append(ast.unparse(node))
            end = node.end_lineno or node.lineno
            drop.update(range(node.lineno - 1, end))
    kept = "".join(line for n, line in enumerate(lines) if n not in drop)
    return kept.strip("\n") + "\n", futures


def _top_level_names(source: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for node in ast.parse(source).body:
        names: list[str] = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names = [node.name]
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
        for name in names:
            out[name] = ast.unparse(node)
    return out


def _script(skill: Skill, embedded: Sequence[Skill]) -> str:
    futures: list[str] = []
    parts: list[str] = []
    defined: dict[str, tuple[str, str]] = {}
    for s in (*embedded, skill):
        code, fut = _without_future_imports(s.source)
        futures += [f for f in fut if f not in futures]
        for name, text in _top_level_names(code).items():
            if name in defined and defined[name][1] != text:
                raise ExportError(
                    f"skills {defined[name][0]!r} and {s.id!r} both define {name!r} "
                    "differently, so they cannot share one script"
                )
            defined[name] = (s.id, text)
        parts.append(f"# --- skill {s.id}, version {s.version}\n\n\n{code}")
    tools = _host_tools(skill, embedded)
    doc = _script_doc(skill, tools)
    header = "\n".join(futures) + "\n\n" if futures else ""
    return (
        "#!/usr/bin/env python3\n"
        + doc
        + "\n"
        + header
        + _PRELUDE.format(
            skill_id=json.dumps(skill.id),
            host_tools=_tuple_literal(tools),
            attributes=repr(
                {a: real for a, real in sorted(attribute_map(tools).items()) if a != real}
            ),
            skills="{" + ", ".join(f"{s.id!r}: {s.id}" for s in embedded) + "}",
        )
        + "\n\n\n"
        + "\n\n".join(parts)
        + "\n\n"
        + _MAIN.format(skill_id=skill.id)
    )


def _tuple_literal(items: Sequence[str]) -> str:
    inner = ", ".join(json.dumps(i) for i in items)
    return f"({inner},)" if len(items) == 1 else f"({inner})"


def _script_doc(skill: Skill, tools: Sequence[str]) -> str:
    summary = _one_line(skill.description).replace('"""', "'''").replace("\\", "\\\\")
    needed = ", ".join(tools) + "." if tools else "none."
    lines = [
        f'"""{skill.id}: a skill exported by skillbank.',
        "",
        *textwrap.wrap(summary, 96),
        "",
        f"Skill version {skill.version}, code sha256",
        f"{skill.content_hash}.",
        "",
        "NO SANDBOX. In a skillbank bank this code runs in a RestrictedPython sandbox that can",
        "reach only the tools it declares. That sandbox does not travel with this file: here it",
        "runs as plain Python, with whatever the host tools you pass can do. Review it as code",
        "before you run it.",
        "",
        "Usage (ARGS: the arguments as one JSON object; without it, read from standard input):",
        "",
        f"    python {skill.id}.py --tools MODULE:ATTR ARGS",
        "",
        "MODULE:ATTR names a mapping of tool name -> function (or a function returning one);",
        "the current folder is importable. Tools are called with keyword arguments and must",
        "return JSON data. The result is printed as JSON; an error goes to standard error with",
        "exit status 1. The tools it needs:",
        "",
        *textwrap.wrap(needed, 96),
        '"""',
    ]
    return "\n".join(lines) + "\n"


# The part of every script before the skill's code. Names start with "_" (a skill's own names
# cannot), except `tools`, `ToolError` and `ToolNotAllowed`, which skills use as in the sandbox.
_PRELUDE = '''\
import argparse as _argparse
import contextlib as _contextlib
import importlib as _importlib
import inspect as _inspect
import json as _json
import os as _os
import sys as _sys
from collections.abc import Callable as _Callable
from collections.abc import Mapping as _Mapping
from typing import Any as _Any

_SKILL = {skill_id}
_HOST_TOOLS = {host_tools}
# How the skill writes a tool whose name is not an identifier: tools.get_weather -> "get-weather".
_ATTRIBUTES = {attributes}


class ToolError(Exception):
    """A host tool failed (the sandbox raises the same name inside skills)."""


class ToolNotAllowed(Exception):
    """The skill asked for a tool it does not declare, or that was not given."""


class _Tools:
    """The ``tools`` object skills call: ``tools.NAME(**arguments)``.

    Arguments and results pass through JSON, as they do in the sandbox, and a failing tool
    raises ToolError. Only the declared tools (and the skills embedded here) are reachable.
    """

    def __init__(self, functions: _Mapping[str, _Callable[..., _Any]]) -> None:
        self._functions = dict(functions)

    def __getattr__(self, attribute: str) -> _Callable[..., _Any]:
        name = _ATTRIBUTES.get(attribute, attribute)
        function = self._functions.get(name)
        if function is None:
            raise ToolNotAllowed(f"tool {{name!r}} is not declared or was not given")
        if name not in _HOST_TOOLS:
            return function

        def call(**arguments: _Any) -> _Any:
            sent = _json.loads(_json.dumps(arguments))
            try:
                result = function(**sent)
            except Exception as exc:
                raise ToolError(f"{{name}}: {{type(exc).__name__}}: {{exc}}") from exc
            try:
                return _json.loads(_json.dumps(result))
            except (TypeError, ValueError) as exc:
                raise ToolError(f"{{name}} returned a value that is not JSON: {{exc}}") from None

        return call


tools = _Tools({{}})


def _embedded() -> dict[str, _Callable[..., _Any]]:
    return {skills}'''

_MAIN = '''\
def _run(arguments: _Mapping[str, _Any], host_tools: _Mapping[str, _Callable[..., _Any]]) -> _Any:
    """Run the skill on ``arguments`` with ``host_tools`` (tool name -> function)."""
    global tools
    missing = [name for name in _HOST_TOOLS if not callable(host_tools.get(name))]
    if missing:
        raise ToolNotAllowed(f"these tools were not given: {{', '.join(missing)}}")
    function = {skill_id}
    try:
        _inspect.signature(function).bind(**arguments)
    except TypeError as exc:
        raise TypeError(f"bad arguments for {{_SKILL}}: {{exc}}") from None
    tools = _Tools({{name: host_tools[name] for name in _HOST_TOOLS}} | _embedded())
    return _json.loads(_json.dumps(function(**arguments)))


def _load_tools(spec: str) -> _Mapping[str, _Callable[..., _Any]]:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"--tools {{spec!r}} must look like MODULE:ATTR")
    if _os.getcwd() not in _sys.path:
        _sys.path.insert(0, _os.getcwd())
    found = getattr(_importlib.import_module(module_name), attr)
    mapping = found() if callable(found) and not isinstance(found, _Mapping) else found
    if not isinstance(mapping, _Mapping):
        raise ValueError(f"--tools {{spec!r}} must be (or return) a mapping of name -> function")
    return mapping


def _main(argv: list[str] | None = None) -> int:
    parser = _argparse.ArgumentParser(
        prog=_os.path.basename(_sys.argv[0]),
        description=f"Run the skill {{_SKILL}} (plain Python, no sandbox) and print its result.",
    )
    parser.add_argument("arguments", nargs="?", help="a JSON object; default: standard input")
    parser.add_argument(
        "--tools",
        metavar="MODULE:ATTR",
        required=bool(_HOST_TOOLS),
        help="the host tools: a mapping name -> function, or a function returning one",
    )
    options = parser.parse_args(argv)
    text = options.arguments
    if text is None or text == "-":
        text = _sys.stdin.read()
    try:
        arguments = _json.loads(text)
        if not isinstance(arguments, dict):
            raise ValueError("the arguments must be one JSON object")
        host_tools = _load_tools(options.tools) if options.tools else {{}}
        with _contextlib.redirect_stdout(_sys.stderr):  # the skill's prints: not the result
            result = _run(arguments, host_tools)
    except Exception as exc:
        print(f"{{_SKILL}}: {{type(exc).__name__}}: {{exc}}", file=_sys.stderr)
        return 1
    print(_json.dumps(result, indent=2, sort_keys=True, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    _sys.exit(_main())
'''


# --------------------------------------------------------------------------- writing


def _check_replaceable(folder: Path, skill_id: str, files: Mapping[str, str]) -> None:
    """Refuse unless ``folder`` is missing or holds an earlier export of this skill, only."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise ExportError(f"{folder} exists and is not a folder; move it away to export there")
    found = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir()}
    meta = _exported_metadata(folder / "SKILL.md")
    if meta.get("skillbank-export") != EXPORT_FORMAT or meta.get("skillbank-id") != skill_id:
        raise ExportError(
            f"{folder} exists and is not an earlier export of skill {skill_id!r}; move it away "
            "or choose another output folder (export never overwrites other content)"
        )
    extra = sorted(found - set(files))
    if extra:
        raise ExportError(
            f"{folder} holds files an export does not write ({', '.join(extra[:5])}); move them "
            "away, export never overwrites or deletes other content"
        )


def _exported_metadata(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    if not text.startswith("---\n") or (end := text.find("\n---\n", 4)) < 0:
        return {}
    try:
        front = yaml.safe_load(text[4:end])
    except yaml.YAMLError:
        return {}
    meta = front.get("metadata") if isinstance(front, dict) else None
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}


def _write_if_changed(path: Path, data: bytes, *, executable: bool) -> None:
    mode = 0o755 if executable else 0o644
    try:
        if path.read_bytes() == data:
            if (path.stat().st_mode & 0o777) != mode:
                path.chmod(mode)
            return
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data, mode=mode)
