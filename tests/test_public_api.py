"""Meta-tests pinning conventions: the public surface and the error trees."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import sandbox
import skillbank
from skillbank import errors


def test_all_is_sorted_complete_and_importable() -> None:
    assert skillbank.__all__ == sorted(skillbank.__all__)
    for name in skillbank.__all__:
        assert getattr(skillbank, name) is not None
    for required in ("SkillBank", "load_trajectories"):
        assert required in skillbank.__all__


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


def test_sandbox_imports_only_stdlib_and_restrictedpython() -> None:
    import sys

    allowed = set(sys.stdlib_module_names) | {"RestrictedPython", "sandbox"}
    for info in pkgutil.iter_modules(sandbox.__path__, "sandbox."):
        module = importlib.import_module(info.name)
        source = inspect.getsource(module)
        for line in source.splitlines():
            words = line.split()
            if words[:1] in (["import"], ["from"]) and len(words) > 1:
                top = words[1].split(".")[0]
                assert top in allowed, f"{info.name} imports {words[1]}"


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
