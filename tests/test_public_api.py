"""Meta-tests pinning conventions: the public surface, the error trees and the import graph."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import sandbox
import skillbank
from skillbank import errors


def test_all_is_sorted_complete_and_importable() -> None:
    assert skillbank.__all__ == sorted(skillbank.__all__)
    for name in skillbank.__all__:
        assert getattr(skillbank, name) is not None
    for required in ("SkillBank", "load_trajectories"):
        assert required in skillbank.__all__


def test_import_skillbank_loads_each_public_name_where_it_is_defined() -> None:
    # The names are imported on first use (PEP 562), from where each is defined.
    assert set(skillbank.EXPORTS) == set(skillbank.__all__)
    for name, module in skillbank.EXPORTS.items():
        assert getattr(skillbank, name) is getattr(importlib.import_module(module), name)
    with pytest.raises(AttributeError, match="no attribute 'NotAName'"):
        skillbank.NotAName  # noqa: B018
    assert set(skillbank.__all__) <= set(dir(skillbank))
    # A submodule named like a public name (skillbank.validate) does not hide it.
    importlib.import_module("skillbank.validate")
    assert callable(skillbank.validate) and skillbank.validate.__name__ == "validate"


def test_every_skillbank_error_subclasses_the_root_and_is_documented() -> None:
    classes = [
        c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__
    ]
    assert len(classes) >= 8
    for cls in classes:
        assert issubclass(cls, errors.SkillbankError), cls
        assert cls.__doc__ and cls.__doc__.strip(), cls
        assert cls.__name__ in errors.__doc__, f"{cls.__name__} missing from the tree drawing"


def test_every_skillbank_error_has_a_one_line_hint_a_raise_can_sharpen() -> None:
    # The hint is what the JSON error envelope tells a script (or a model) to do next.
    for _, cls in inspect.getmembers(errors, inspect.isclass):
        if cls.__module__ == errors.__name__:
            assert cls.hint.strip() and "\n" not in cls.hint, cls
    assert errors.SkillNotFound("x").hint == errors.SkillNotFound.hint
    assert errors.ConfigError("bad", hint="set it").hint == "set it"
    assert errors.TrajectoryError("bad", source="a.jsonl", hint="fix a.jsonl").hint == "fix a.jsonl"
    assert str(errors.TrajectoryError("bad", source="a.jsonl")) == "a.jsonl: bad"


def test_every_exception_any_module_defines_is_in_the_drawn_tree() -> None:
    # One tree, in one module: an error class defined anywhere else escapes the drawing,
    # the CLI's exit codes and the JSON error envelope.
    for info in pkgutil.walk_packages(skillbank.__path__, "skillbank."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__ == module.__name__
                and not name.startswith("_")
            ):
                assert module is errors, f"{info.name}.{name} belongs in skillbank.errors"


def test_every_sandbox_error_subclasses_its_root() -> None:
    for name in sandbox.__all__:
        obj = getattr(sandbox, name)
        if inspect.isclass(obj) and issubclass(obj, Exception):
            assert issubclass(obj, sandbox.SandboxError), name
            assert obj.__doc__, name


def test_only_the_cli_package_imports_click() -> None:
    # Library modules return values and raise SkillbankError; the cli package prints them.
    for info in pkgutil.walk_packages(skillbank.__path__, "skillbank."):
        if info.name.endswith("__main__") or info.name.split(".")[:2] == ["skillbank", "cli"]:
            continue
        module = importlib.import_module(info.name)
        for line in inspect.getsource(module).splitlines():
            words = line.split()
            if words[:1] in (["import"], ["from"]) and len(words) > 1:
                assert words[1].split(".")[0] != "click", f"{info.name} imports {words[1]}"


def test_every_module_has_a_docstring() -> None:
    for pkg in (skillbank, sandbox):
        for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            if info.name.endswith("__main__"):
                continue
            module = importlib.import_module(info.name)
            assert module.__doc__ and module.__doc__.strip(), info.name


def test_all_names_every_error_and_the_pipeline_types() -> None:
    exported = set(skillbank.__all__)
    for name, obj in inspect.getmembers(errors, inspect.isclass):
        if obj.__module__ == errors.__name__:
            assert name in exported, f"{name} is not exported"
    for name in ("SkillDraft", "ValidatedSkill", "TestedSkill", "Skill", "Trajectory", "RunResult"):
        assert name in exported


# ------------------------------------------------------------------------ the import graph
# Built from the source with ast, so an import inside a function counts as much as one at the
# top (a lazy import hides a cycle, it does not remove it). Imports under ``if TYPE_CHECKING:``
# never run and are left out. ``from p import m`` is an edge to the module ``p.m`` when there is
# one, else to ``p``; parent packages are not edges (every import runs them).

#: module name -> (its file, whether it is a package's ``__init__``)
Modules = dict[str, tuple[Path, bool]]
#: module -> {imported module of the same tree: line of the first such import}
Graph = dict[str, dict[str, int]]


def _modules(root: Path) -> Modules:
    """Every module of the package at ``root``, by dotted name."""
    found: Modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[list[str], int]]:
    """For each imported thing: the names it may be (most specific first) and the line.

    ``import a.b`` gives ``["a.b", "a"]``; ``from a import b`` gives ``["a.b", "a"]`` too
    (``b`` is a module or a name in ``a``); relative imports are resolved against ``module``.
    """
    package = module if is_package else module.rpartition(".")[0]
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                yield [".".join(parts[:n]) for n in range(len(parts), 0, -1)], node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                yield [f"{base}.{alias.name}", base], node.lineno
        stack.extend(ast.iter_child_nodes(node))


def _import_graph(root: Path) -> Graph:
    """The import graph of the package at ``root``, restricted to its own modules."""
    modules = _modules(root)
    graph: Graph = {}
    for name, (path, is_package) in modules.items():
        edges = graph.setdefault(name, {})
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for candidates, line in _imports(tree, name, is_package):
            target = next((c for c in candidates if c in modules), None)
            if target is not None and target != name:
                edges[target] = min(line, edges.get(target, line))
    return graph


def _cycles(graph: Graph) -> list[list[str]]:
    """For each module on a cycle, one shortest cycle through it (rotations counted once)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[list[str]] = []

    def connect(node: str) -> None:  # Tarjan
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    cycles: list[list[str]] = []
    for component in sorted(components):
        for start in component:
            cycle = _shortest_cycle(graph, start, set(component))[:-1]
            first = cycle.index(min(cycle))
            cycle = [*cycle[first:], *cycle[:first], min(cycle)]
            if cycle not in cycles:
                cycles.append(cycle)
    return cycles


def _shortest_cycle(graph: Graph, start: str, members: set[str]) -> list[str]:
    """A shortest cycle from ``start`` back to it within ``members`` (BFS)."""
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        step = []
        for node in frontier:
            for target in sorted(graph[node]):
                if target == start:
                    return [*paths[node], start]
                if target in members and target not in paths:
                    paths[target] = [*paths[node], target]
                    step.append(target)
        frontier = step
    raise AssertionError(f"{start} is on no cycle within {sorted(members)}")


def _explain(graph: Graph, cycles: list[list[str]]) -> str:
    lines = ["import cycles (module:line of the import of the next one):"]
    for cycle in cycles:
        hops = [f"{a}:{graph[a][b]}" for a, b in zip(cycle, cycle[1:], strict=False)]
        lines.append("  " + " -> ".join([*hops, cycle[-1]]))
    return "\n".join(lines)


def _package_root(package: object) -> Path:
    return Path(inspect.getfile(package)).parent  # type: ignore[arg-type]


def test_the_import_graph_sees_lazy_and_relative_imports_and_skips_type_checking(
    tmp_path: Path,
) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    sources = {
        "__init__.py": "from pkg.a import A\n",
        "a.py": "def f():\n    from . import b\n",
        "b.py": "import json\nclass B:\n    def g(self):\n        import pkg.sub.c\n",
        "sub/__init__.py": "",
        "sub/c.py": "from ..a import f\n",
        "d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n"
        "else:\n    from pkg import sub\n",
    }
    for name, text in sources.items():
        (package / name).write_text(textwrap.dedent(text))
    graph = _import_graph(package)
    assert graph == {
        "pkg": {"pkg.a": 1},
        "pkg.a": {"pkg.b": 2},
        "pkg.b": {"pkg.sub.c": 4},
        "pkg.sub": {},
        "pkg.sub.c": {"pkg.a": 1},
        "pkg.d": {"pkg.sub": 5},
    }
    cycles = _cycles(graph)
    assert cycles == [["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]]
    assert _explain(graph, cycles).endswith("pkg.a:2 -> pkg.b:4 -> pkg.sub.c:1 -> pkg.a")


def test_sandbox_has_no_import_cycle() -> None:
    graph = _import_graph(_package_root(sandbox))
    assert "sandbox.pool" in graph and "sandbox.executor" in graph
    cycles = _cycles(graph)
    assert not cycles, _explain(graph, cycles)


def test_skillbank_has_no_import_cycle() -> None:
    graph = _import_graph(_package_root(skillbank))
    assert "skillbank.bank" in graph
    cycles = _cycles(graph)
    assert not cycles, _explain(graph, cycles)


def _every_import(root: Path) -> Iterator[tuple[str, str, int]]:
    """(module, imported top-level name, line) for every import, ``TYPE_CHECKING`` ones too."""
    for name, (path, _) in _modules(root).items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield name, alias.name.split(".")[0], node.lineno
            elif isinstance(node, ast.ImportFrom):
                top = root.name if node.level else (node.module or "").split(".")[0]
                yield name, top, node.lineno


def test_sandbox_never_imports_skillbank() -> None:
    # The dependency points one way, so the sandbox can be read and audited on its own.
    found = [
        f"{module}:{line}"
        for module, top, line in _every_import(_package_root(sandbox))
        if top == "skillbank"
    ]
    assert not found, f"sandbox imports skillbank at {found}"


#: Optional bindings of the process layers: only sandbox.confine imports them, behind guards
#: (ImportError turns the layer off with a warning), so the sandbox works without them.
OPTIONAL_HARDENING = {"pyseccomp", "seccomp", "landlock"}


def test_sandbox_imports_only_stdlib_and_restrictedpython() -> None:
    allowed = set(sys.stdlib_module_names) | {"RestrictedPython", "sandbox"}
    found = [
        f"{module}:{line} imports {top}"
        for module, top, line in _every_import(_package_root(sandbox))
        if top not in allowed
        and not (module == "sandbox.confine" and top in OPTIONAL_HARDENING)
        and not (module == "sandbox.ray_backend" and top == "ray")  # the optional Ray backend
    ]
    assert not found, found
    source = (_package_root(sandbox) / "confine.py").read_text(encoding="utf-8")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Try):
            guarded = {
                alias.name
                for statement in node.body
                if isinstance(statement, ast.Import)
                for alias in statement.names
            }
            catches = {
                ast.unparse(handler.type) for handler in node.handlers if handler.type is not None
            }
            if guarded & OPTIONAL_HARDENING:
                assert "ImportError" in catches, f"{guarded} imported without an ImportError guard"


def test_only_the_facades_users_import_the_bank() -> None:
    # The parts below SkillBank are built from explicit collaborators; only the layers
    # above it (the CLI, the agent loop, the MCP gateway, gate, review, report) may hold one.
    users = {"skillbank", "skillbank.bank", "skillbank.agent", "skillbank.gate"}
    users |= {"skillbank.review", "skillbank.report"}
    for name, targets in _import_graph(_package_root(skillbank)).items():
        if name in users or name.startswith(("skillbank.cli", "skillbank.gateway")):
            continue
        assert "skillbank.bank" not in targets, f"{name} imports the SkillBank facade"


def test_contributing_draws_every_module() -> None:
    drawing = (Path(skillbank.__file__).parent.parent / "CONTRIBUTING.md").read_text()
    for info in pkgutil.walk_packages(skillbank.__path__, "skillbank."):
        if info.name.startswith("skillbank.examples.") or info.name.endswith("__main__"):
            continue
        rel = info.name.removeprefix("skillbank.").replace(".", "/")
        rel = f"{rel}/__init__" if info.ispkg else rel
        assert f"| `{rel}` |" in drawing, f"CONTRIBUTING.md does not draw {info.name}"


def test_no_private_name_crosses_a_module() -> None:
    # ``from m import _x`` or ``m._x`` on an imported module of ours: a private name is the
    # module's own business; what others need is public and documented.
    top = Path(skillbank.__file__).parent.parent
    ours = ("skillbank", "sandbox")
    for folder in ("skillbank", "sandbox", "tests", "benchmarks"):
        for path in sorted((top / folder).rglob("*.py")):
            if any(part.startswith(".") for part in path.relative_to(top).parts):
                continue  # a virtual environment (benchmarks/tau2/.venv) is not our code
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            modules: set[str] = set()
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(ours):
                    for alias in node.names:
                        assert not alias.name.startswith("_") or alias.name.startswith("__"), (
                            f"{path.relative_to(top)}:{node.lineno} imports {alias.name}"
                        )
                elif isinstance(node, ast.Import):
                    modules |= {(a.asname or a.name) for a in node.names if a.name.startswith(ours)}
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Attribute)
                    and node.attr.startswith("_")
                    and not node.attr.startswith("__")
                    and isinstance(node.value, ast.Name)
                    and node.value.id in modules
                ):
                    raise AssertionError(f"{path.relative_to(top)}:{node.lineno} reads {node.attr}")


def test_contributing_draws_what_each_module_imports() -> None:
    # The drawing is the reviewed design: an import it does not show is a design change that
    # must be drawn in the same commit (and one it shows but the code dropped, erased).
    drawing = (Path(skillbank.__file__).parent.parent / "CONTRIBUTING.md").read_text()
    section = drawing.split("### `skillbank/`", 1)[1].split("### `sandbox/`", 1)[0]
    graph = _import_graph(_package_root(skillbank))
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`") or cells[0] == "`module`":
            continue
        rel = cells[0].strip("`").removesuffix("/__init__")
        name = "skillbank" if rel == "__init__" else "skillbank." + rel.replace("/", ".")
        if name not in graph:
            continue
        words = {w.strip() for part in cells[2].split(";") for w in part.split(",")}
        drawn = {"skillbank" if w == "(public API)" else f"skillbank.{w}" for w in words}
        drawn &= set(graph) | {"skillbank"}
        assert drawn == set(graph[name]) - {name}, (
            f"CONTRIBUTING.md draws {name} importing {sorted(drawn)}, "
            f"the code imports {sorted(set(graph[name]) - {name})}"
        )
