"""BFCL's executable multi-turn backends, as plain tools for skillbank.

The Berkeley Function Calling Leaderboard (package ``bfcl-eval``) ships Python backends for its
multi-turn tasks (``GorillaFileSystem``, ``TradingBot``, ``TravelAPI``, ``MessageAPI``,
``TwitterAPI``, ``TicketAPI``, ``MathAPI``, ``VehicleControlAPI``) and a ground-truth call
sequence per turn. This module runs them the way BFCL's own multi-turn checker does
(``bfcl_eval.eval_checker.multi_turn_eval.multi_turn_utils.execute_multi_turn_func_call``): one
instance per involved class, loaded with ``_load_scenario(deepcopy(initial_config[cls]),
long_context=...)`` (``MathAPI`` is stateless and not loaded), a bare method name resolving to
the LAST involved class that has it, and the instances living on from turn to turn of a task.
Unlike that function it keeps the raw return values (JSON-ified) instead of ``str()`` of them.

Public entry points:

- `make_tools(task_id, turn, data_dir)` -> ``(tools, snapshot)``: the backends at the START of a
  turn (initial config + replay of the earlier turns' ground truth), as keyword-argument
  callables named like the tools in the trajectories, and a function returning the backend
  state (what BFCL's state checker compares: every instance attribute not starting with ``_``).
- `ensure_bfcl()`: installs the pinned ``bfcl-eval`` and ``mpmath`` (``--no-deps``) if missing.

``data_dir`` is the folder ``convert.py`` wrote; `make_tools` reads its ``tasks.jsonl.gz``.
"""

from __future__ import annotations

import ast
import copy
import datetime as _dt
import decimal
import functools
import gzip
import hashlib
import importlib
import importlib.metadata
import inspect
import json
import math
import re
import subprocess
import sys
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "BFCL_VERSION",
    "Backends",
    "ToolCallError",
    "ensure_bfcl",
    "jsonify",
    "load_tasks",
    "make_tools",
    "split_trajectory_id",
]

BFCL_VERSION = "2026.3.23"
MPMATH_VERSION = "1.3.0"
PINNED = {"bfcl-eval": BFCL_VERSION, "mpmath": MPMATH_VERSION}

#: The multi-turn categories convert.py knows; ``base`` is the default.
CATEGORIES = ("base", "miss_func", "miss_param", "long_context")

#: The name of the task file convert.py writes next to the trajectories. It is gzipped on
#: purpose: ``skillbank.load_trajectories(folder)`` reads every ``.json``/``.jsonl`` below a
#: folder, and this file holds tasks, not trajectories.
TASKS_FILE = "tasks.jsonl.gz"

#: The date ``TravelAPI.verify_traveler`` uses as "today" (it calls ``datetime.today()`` to
#: compute an age); pinned so results never depend on the day the data was built.
FIXED_TODAY = _dt.datetime(2024, 9, 1, 10, 30)

JSON = Any


class ToolCallError(Exception):
    """A backend method raised; the message is BFCL's ``Error during execution: ...`` text."""


# --- installing and loading bfcl-eval --------------------------------------------------------


def ensure_bfcl(*, quiet: bool = False) -> str:
    """Make sure the pinned ``bfcl-eval`` and ``mpmath`` are importable; install them if not.

    Installs into the running interpreter with ``pip install --no-deps`` (the backends need
    nothing else). Returns the installed bfcl-eval version.
    """
    wanted = []
    for dist, version in PINNED.items():
        try:
            have = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            have = None
        if have != version:
            wanted.append(f"{dist}=={version}")
    if wanted:
        if not quiet:
            print(f"installing {' '.join(wanted)} (--no-deps) into {sys.prefix}", file=sys.stderr)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", *wanted],
            check=True,
        )
        importlib.invalidate_caches()
    return importlib.metadata.version("bfcl-eval")


@functools.cache
def _bfcl() -> Any:
    """Import the bits of bfcl_eval we use (after installing it if needed) and patch them."""
    ensure_bfcl()
    from bfcl_eval.constants import executable_backend_config as cfg
    from bfcl_eval.constants.type_mappings import GORILLA_TO_OPENAPI

    _pin_clocks()

    ns = types.SimpleNamespace()
    ns.CLASS_FILE_PATH_MAPPING = cfg.CLASS_FILE_PATH_MAPPING
    ns.STATELESS_CLASSES = list(cfg.STATELESS_CLASSES)
    ns.FUNC_DOC_FILE_MAPPING = cfg.MULTI_TURN_FUNC_DOC_FILE_MAPPING
    ns.GORILLA_TO_OPENAPI = GORILLA_TO_OPENAPI
    import bfcl_eval

    ns.DATA_DIR = Path(bfcl_eval.__file__).parent / "data"
    return ns


def _pin_clocks() -> None:
    """Remove the one wall-clock dependency of the multi-turn backends' results.

    ``TravelAPI.verify_traveler`` computes an age from ``datetime.today()``; its module's
    ``datetime`` name is swapped for a subclass whose ``today()``/``now()`` return `FIXED_TODAY`.
    (``File._last_modified`` in the file system also reads the clock, but it is private state
    that no method returns and BFCL's state check ignores.)
    """
    mod = importlib.import_module(
        "bfcl_eval.eval_checker.multi_turn_eval.func_source_code.travel_booking"
    )
    base = mod.datetime
    if getattr(base, "_skillbank_pinned", False):
        return

    class _PinnedDatetime(base):  # type: ignore[misc, valid-type]
        _skillbank_pinned = True

        @classmethod
        def today(cls) -> _dt.datetime:
            return FIXED_TODAY

        @classmethod
        def now(cls, tz: _dt.tzinfo | None = None) -> _dt.datetime:
            return FIXED_TODAY if tz is None else FIXED_TODAY.replace(tzinfo=tz)

    mod.datetime = _PinnedDatetime


@functools.cache
def backend_class(class_name: str) -> type:
    ns = _bfcl()
    module = importlib.import_module(ns.CLASS_FILE_PATH_MAPPING[class_name])
    return getattr(module, class_name)


@functools.cache
def func_docs(class_name: str) -> tuple[dict[str, JSON], ...]:
    """BFCL's JSON function docs for one backend class (its ``multi_turn_func_doc`` file)."""
    ns = _bfcl()
    path = ns.DATA_DIR / "multi_turn_func_doc" / ns.FUNC_DOC_FILE_MAPPING[class_name]
    return tuple(json.loads(line) for line in path.read_text().splitlines() if line.strip())


def public_methods(class_name: str) -> list[str]:
    """The names BFCL's executor maps to an instance: public methods, in ``getmembers`` order."""
    cls = backend_class(class_name)
    return [n for n, _ in inspect.getmembers(cls, inspect.isfunction) if not n.startswith("_")]


def _mpmath_context() -> Any:
    module = sys.modules.get("mpmath")
    return getattr(module, "mp", None)


# --- JSON -----------------------------------------------------------------------------------


def jsonify(value: Any) -> JSON:
    """A JSON-serialisable copy of ``value`` (never aliasing backend state).

    dicts and lists are copied (keys become strings), tuples become lists, sets become sorted
    lists, the file system's ``Directory``/``File`` become ``{"type": "directory", "contents":
    {...}}``/``{"type": "file", "content": ...}`` (the shape of BFCL's initial configs),
    non-finite floats and anything else become ``str(value)``.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, decimal.Decimal) or type(value).__module__.startswith("mpmath"):
        # MathAPI returns Decimal (square_root) and mpmath.mpf (logarithm) where its docs
        # promise a float. An mpf becomes the float of the digits BFCL shows the model for it:
        # its repr at the precision the call set (invoke() JSON-ifies before restoring it), so
        # log(20, 10, precision=2) gives 1.3027 (BFCL's "mpf('1.3027')"), not 1.302734375.
        try:
            shown = re.fullmatch(r"mpf\('([^']*)'\)", repr(value))
            number = float(shown.group(1)) if shown else float(value)
        except (TypeError, ValueError):
            return str(value)
        return number if math.isfinite(number) else str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonify(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonify(v) for v in value]
    if isinstance(value, (set, frozenset)):
        items = [jsonify(v) for v in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    kind = type(value).__name__
    if kind == "Directory" and hasattr(value, "contents"):
        return {"type": "directory", "contents": jsonify(value.contents)}
    if kind == "File" and hasattr(value, "content"):
        return {"type": "file", "content": jsonify(value.content)}
    return str(value)


def canonical(value: JSON) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def config_hash(initial_config: JSON) -> str:
    return hashlib.sha256(canonical(initial_config).encode()).hexdigest()[:16]


# --- tools: names and definitions ----------------------------------------------------------


def tool_map(involved_classes: Iterable[str]) -> dict[str, str]:
    """Our tool name -> ``"Class.method"`` for every documented function of the classes.

    The bare method name when no other involved class has a public method of that name, else
    ``Class_method`` (tool names must be Python identifiers, so BFCL's dotted names are out).
    """
    classes = list(involved_classes)
    owners: dict[str, list[str]] = {}
    for cls in classes:
        names = set(public_methods(cls)) | {d["name"] for d in func_docs(cls)}
        for name in names:
            owners.setdefault(name, []).append(cls)
    out: dict[str, str] = {}
    for cls in classes:
        for doc in func_docs(cls):
            method = doc["name"]
            tool = method if len(owners[method]) == 1 else f"{cls}_{method}"
            out[tool] = f"{cls}.{method}"
    return out


def _cast_schema(schema: JSON, mapping: Mapping[str, str]) -> JSON:
    """BFCL types -> JSON Schema types, the way BFCL's ``convert_to_tool`` does it for OpenAI.

    ``dict`` -> ``object``, ``float`` -> ``number`` (with ``format: float`` and BFCL's
    description note), ``tuple`` -> ``array``, ``any``/unknown -> ``string``; applied to nested
    ``properties`` and ``items`` at any depth.
    """
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    if "type" in out:
        gorilla = out["type"]
        if gorilla == "float":
            out["format"] = "float"
            out["description"] = out.get("description", "") + " This is a float type value."
        out["type"] = mapping.get(gorilla, "string")
    if isinstance(out.get("properties"), dict):
        props = {}
        for key, sub in out["properties"].items():
            sub = dict(sub) if isinstance(sub, dict) else {}
            sub.setdefault("type", "string")
            props[key] = _cast_schema(sub, mapping)
        out["properties"] = props
    if isinstance(out.get("items"), dict):
        out["items"] = _cast_schema(out["items"], mapping)
    return out


def openai_tool(doc: Mapping[str, JSON], name: str) -> dict[str, JSON]:
    """One BFCL function doc as a Chat Completions tool called ``name`` (``response`` dropped)."""
    ns = _bfcl()
    params = _cast_schema(copy.deepcopy(doc.get("parameters") or {}), ns.GORILLA_TO_OPENAPI)
    params["type"] = "object"
    params.setdefault("properties", {})
    return {
        "type": "function",
        "function": {"name": name, "description": doc.get("description", ""), "parameters": params},
    }


def openai_tools(involved_classes: Iterable[str], exclude: Iterable[str] = ()) -> list[JSON]:
    """The tool definitions for a task, in BFCL's order (class by class, doc file order)."""
    classes = list(involved_classes)
    skip = set(exclude)
    by_target = {target: tool for tool, target in tool_map(classes).items()}
    out = []
    for cls in classes:
        for doc in func_docs(cls):
            if doc["name"] in skip:
                continue
            out.append(openai_tool(doc, by_target[f"{cls}.{doc['name']}"]))
    return out


# --- the backends ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One ground-truth call, resolved: our tool name, the class and method, keyword args."""

    tool: str
    cls: str
    method: str
    arguments: dict[str, JSON]

    def to_json(self) -> dict[str, JSON]:
        return {
            "tool": self.tool,
            "class": self.cls,
            "method": self.method,
            "arguments": self.arguments,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, JSON]) -> Call:
        return cls(obj["tool"], obj["class"], obj["method"], dict(obj["arguments"]))


class Backends:
    """The instances of one task's involved classes, loaded as BFCL's checker loads them."""

    def __init__(
        self,
        initial_config: Mapping[str, JSON],
        involved_classes: Iterable[str],
        *,
        long_context: bool = False,
    ) -> None:
        ns = _bfcl()
        self.involved_classes = list(involved_classes)
        self.instances: dict[str, Any] = {}
        #: bare method name -> class, later classes overriding earlier ones (as in BFCL).
        self.dispatch: dict[str, str] = {}
        for cls_name in self.involved_classes:
            instance = backend_class(cls_name)()
            if cls_name not in ns.STATELESS_CLASSES:
                instance._load_scenario(
                    copy.deepcopy(initial_config.get(cls_name, {})), long_context=long_context
                )
                # Some long-context loaders merge module-level dicts into the instance by
                # reference, so a later call would mutate state shared with the next instance
                # built in this process; a deep copy cuts that aliasing (values are unchanged).
                # One copy of all attributes at once keeps references between them intact
                # (the file system's current directory is a node inside its root tree).
                instance.__dict__.update(copy.deepcopy(vars(instance)))
            self.instances[cls_name] = instance
            for method in public_methods(cls_name):
                self.dispatch[method] = cls_name
        self.tool_map = tool_map(self.involved_classes)
        self._targets = {target: tool for tool, target in self.tool_map.items()}

    def method(self, cls_name: str, method: str) -> Callable[..., Any]:
        return getattr(self.instances[cls_name], method)

    def resolve(self, call_text: str) -> Call:
        """Parse a BFCL ground-truth call such as ``"cd(folder='document')"``.

        Positional arguments are named from the method's signature; values must be literals.
        """
        node = ast.parse(call_text.strip(), mode="eval").body
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
            raise ValueError(f"not a plain function call: {call_text!r}")
        method = node.func.id
        if method not in self.dispatch:
            raise ValueError(f"no involved class has a method {method!r}: {call_text!r}")
        cls_name = self.dispatch[method]
        params = list(inspect.signature(self.method(cls_name, method)).parameters)
        args: dict[str, JSON] = {}
        for i, arg in enumerate(node.args):
            args[params[i]] = ast.literal_eval(arg)
        for kw in node.keywords:
            if kw.arg is None:
                raise ValueError(f"**kwargs in a ground-truth call: {call_text!r}")
            args[kw.arg] = ast.literal_eval(kw.value)
        args = json.loads(json.dumps(jsonify(args)))  # exactly what a JSON tool call carries
        target = f"{cls_name}.{method}"
        # An undocumented method has no tool definition; name it as tool_map would.
        tool = self._targets.get(target) or (
            f"{cls_name}_{method}" if method in self.tool_map else method
        )
        return Call(tool, cls_name, method, args)

    def invoke(self, call: Call) -> JSON:
        """Run one call; the JSON-ified return value, or `ToolCallError` if the method raised."""
        # A fresh copy of the arguments: backends keep argument lists in their state (a
        # tweet's tags) and later calls mutate them, which must not reach the caller's values.
        arguments = copy.deepcopy(call.arguments)
        # MathAPI sets decimal's and mpmath's global precision; keep that inside the call.
        mp = _mpmath_context()
        saved_prec = mp.prec if mp is not None else None
        try:
            with decimal.localcontext():
                result = self.method(call.cls, call.method)(**arguments)
                return jsonify(result)
        except Exception as exc:  # the backend's own failure, reported like BFCL does
            raise ToolCallError(f"Error during execution: {exc}") from exc
        finally:
            if mp is not None:
                mp.prec = saved_prec

    def snapshot(self) -> dict[str, JSON]:
        """The state BFCL's ``state_checker`` compares: public instance attributes, JSON-ified.

        (Private ones such as the file system's current directory are not part of it.)
        """
        return {
            cls_name: {k: jsonify(v) for k, v in vars(inst).items() if not k.startswith("_")}
            for cls_name, inst in self.instances.items()
        }

    def tools(self) -> dict[str, Callable[..., JSON]]:
        """Every documented function as a keyword-argument callable returning JSON values."""
        out: dict[str, Callable[..., JSON]] = {}
        for tool, target in self.tool_map.items():
            cls_name, method = target.split(".", 1)
            out[tool] = self._wrap(tool, cls_name, method)
        return out

    def _wrap(self, tool: str, cls_name: str, method: str) -> Callable[..., JSON]:
        bound = self.method(cls_name, method)

        def call(**arguments: JSON) -> JSON:
            return self.invoke(Call(tool, cls_name, method, dict(arguments)))

        call.__name__ = tool
        call.__qualname__ = tool
        call.__doc__ = inspect.getdoc(bound)
        try:
            call.__signature__ = inspect.signature(bound)  # type: ignore[attr-defined]
        except (TypeError, ValueError):
            pass
        return call


# --- tasks written by convert.py ------------------------------------------------------------


def split_trajectory_id(trajectory_id: str) -> tuple[str, int]:
    """``"multi_turn_base_12-t3"`` -> ``("multi_turn_base_12", 3)``."""
    task_id, _, turn = trajectory_id.rpartition("-t")
    if not task_id or not turn.isdigit():
        raise ValueError(f"not a BFCL trajectory id (TASK-tN): {trajectory_id!r}")
    return task_id, int(turn)


@functools.cache
def _load_tasks_cached(path: str, mtime_ns: int) -> dict[str, dict[str, JSON]]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return {t["task_id"]: t for t in map(json.loads, fh) if t}


def load_tasks(data_dir: str | Path) -> dict[str, dict[str, JSON]]:
    """The tasks convert.py recorded: task id -> initial config, classes, resolved calls."""
    path = Path(data_dir) / TASKS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run benchmarks/bfcl/convert.py first")
    return _load_tasks_cached(str(path.resolve()), path.stat().st_mtime_ns)


def build(task: Mapping[str, JSON], upto_turn: int) -> Backends:
    """The backends of ``task`` after replaying the ground truth of turns ``< upto_turn``."""
    backends = Backends(
        task["initial_config"], task["involved_classes"], long_context=task["long_context"]
    )
    for calls in task["turns"][:upto_turn]:
        for obj in calls:
            try:
                backends.invoke(Call.from_json(obj))
            except ToolCallError:
                pass  # recorded as a failed call; BFCL's executor goes on as well
    return backends


def make_tools(
    task_id: str, turn: int, data_dir: str | Path
) -> tuple[dict[str, Callable[..., JSON]], Callable[[], dict[str, JSON]]]:
    """The tools of a BFCL task at the START of ``turn``, and a state snapshot function.

    Args:
        task_id: BFCL's task id, e.g. ``"multi_turn_base_12"`` (the trajectory id without
            ``-tN``; see `split_trajectory_id`).
        turn: The 0-based turn; the backends are loaded with the task's initial config and the
            ground truth of every earlier turn is replayed.
        data_dir: The folder convert.py wrote (it holds ``tasks.jsonl.gz``).

    Returns:
        ``(tools, snapshot)``: ``tools`` maps each tool name used in the trajectories to a
        keyword-argument callable that returns the same JSON values the trajectories recorded
        (a backend exception raises `ToolCallError`); ``snapshot()`` returns the public state of
        every backend instance, comparable with the trajectories' ``bfcl.state_after``.
    """
    tasks = load_tasks(data_dir)
    if task_id not in tasks:
        raise KeyError(f"no BFCL task {task_id!r} in {data_dir}")
    task = tasks[task_id]
    if not 0 <= turn < len(task["turns"]):
        raise IndexError(f"{task_id} has turns 0..{len(task['turns']) - 1}, not {turn}")
    backends = build(task, turn)
    return backends.tools(), backends.snapshot
