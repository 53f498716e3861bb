"""Running: a stored skill called with arguments, in the sandbox, against host tools.

`Runner.run` is the one way a skill runs for a caller: it checks the arguments against the
skill's signature (`skillbank.signature.check_arguments`, the one check), grants the skill
exactly the tools it declares (and, for a composed skill, the skills it requires, each run
nested in the sandbox), runs it, and records the outcome in the ledger. `Runner.call_tool`
is the same for a model that called the skill as a tool: it never raises, and answers with
the text of a ``role: "tool"`` message. `Runner.execute` runs a recognised
`skillbank.recognize.Plan` step by step. A caller that has checked the arguments already
runs them with `Runner.run_checked`, so no call is checked twice.

A failure inside the skill (its own error, a tool that raised, a limit) comes back in the
`RunResult`; misuse (unknown skill, bad arguments, a declared tool not provided) raises a
`skillbank.errors.SkillbankError`.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox import Limits, Result, Sandbox, ToolCall, ToolError
from skillbank.compiler.dataflow import iter_paths, trivial
from skillbank.compose import grant, tools_needed
from skillbank.errors import LibraryError, SkillArgumentError, SkillbankError, SkillNotFound
from skillbank.json_types import json_type
from skillbank.ledger import Blame, CallLedger
from skillbank.library import SkillLibrary
from skillbank.recognize import Plan, PlanResult
from skillbank.signature import Arguments, check_arguments
from skillbank.skill import Skill
from skillbank.toolspec import tool_error, tool_result
from skillbank.tracing import SkillTrace
from skillbank.trajectory import canonical_json

__all__ = ["RunResult", "Runner"]

JSON = Any


@dataclass(frozen=True)
class RunResult:
    """What running a skill did."""

    #: The skill that ran.
    skill_id: str
    #: True when it returned normally.
    ok: bool
    #: Its return value (JSON data; None on error).
    value: JSON
    #: The error message when it failed (policy, limit, tool or skill error).
    error: str | None
    #: The error's kind (the sandbox error class name), None when ok.
    error_type: str | None
    #: Every tool call it made, in order.
    tool_calls: tuple[ToolCall, ...]
    #: Wall-clock seconds.
    duration_s: float
    #: What the skill printed.
    output: str = ""
    #: A note for whoever called it, e.g. ``"deprecated: use other_skill ..."``.
    warning: str | None = None

    def to_json(self) -> dict[str, JSON]:
        """The result as JSON data (the CLI's ``--json`` output)."""
        return {
            "skill_id": self.skill_id,
            "ok": self.ok,
            "value": self.value,
            "error": self.error,
            "error_type": self.error_type,
            "tool_calls": [
                {
                    "tool": c.tool,
                    "arguments": c.arguments,
                    "result": c.result,
                    "error": c.error,
                    "duration_s": round(c.duration_s, 6),
                }
                for c in self.tool_calls
            ],
            "duration_s": round(self.duration_s, 6),
            "output": self.output,
            "warning": self.warning,
        }


class Runner:
    """Runs stored skills for callers, and records each run in the ledger.

    Args:
        library: Where skills are read.
        sandbox: Gives the sandbox every run goes through (started on first use).
        limits: The default limits of a run.
        ledger: Gives the ledger runs are recorded in (opened on first use).
        inline_tools: Call host tools on the thread that runs the skill (configuration
            key ``sandbox_inline_tools``; see `sandbox.Sandbox.run`).
    """

    def __init__(
        self,
        library: SkillLibrary,
        *,
        sandbox: Callable[[], Sandbox],
        limits: Limits,
        ledger: Callable[[], CallLedger],
        inline_tools: bool = False,
    ) -> None:
        self.library = library
        self._sandbox = sandbox
        self.limits = limits
        self._ledger = ledger
        self.inline_tools = inline_tools

    def get(self, skill_id: str) -> Skill:
        """One stored skill (raises SkillNotFound with the known ids)."""
        return self.library.load(skill_id)

    def _skills(self) -> list[Skill]:
        return self.library.load_all()

    def _by_id(self) -> dict[str, Skill]:
        """Every skill by id, and by each alias of it (a renamed skill's old id), so a skill
        that requires the old id keeps calling it."""
        library = {s.id: s for s in self._skills()}
        for alias, target in self.library.aliases().items():
            with contextlib.suppress(SkillbankError):
                library.setdefault(alias, library.get(target) or self.library.load(alias))
        return library

    def run(
        self,
        skill_id: str,
        args: Mapping[str, JSON],
        tools: Mapping[str, Callable[..., JSON]],
        *,
        limits: Limits | None = None,
        caller: str | None = None,
        given: Mapping[str, JSON] | None = None,
    ) -> RunResult:
        """Run a stored skill in the sandbox with ``args``, reaching only its declared tools.

        A failure inside the skill (its own error, a tool that raised, a limit) comes back in
        the result; misuse (unknown skill, bad arguments, a declared tool not provided) raises.

        Every run that reaches the sandbox is one row of the ledger (`skillbank.ledger`):
        version, ok, latency, error type and message, and ``caller`` (who called: ``"agent"``,
        an MCP client, ...). Misuse is not recorded: it says nothing about the skill. A ledger
        that cannot be written never fails the call (it is reported once on stderr).

        A reflex (``caller="reflex"``) read the arguments off the task itself, so its row keeps
        them and its failure is the skill's, except a tool refusing a value from ``given``
        (the arguments its own caller supplied).

        Raises:
            SkillNotFound: no such skill.
            SkillArgumentError: the arguments do not fit the signature
                (`skillbank.signature.check_arguments` says how), or ``tools`` lacks a tool
                the skill declares.
            SkillRejected: the skill's signature cannot be read as JSON Schema (a
                hand-edited skill), so its arguments cannot be checked.
        """
        skill = self.get(skill_id)
        return self.run_checked(
            skill, check_arguments(skill, args), tools, limits=limits, caller=caller, given=given
        )

    def run_checked(
        self,
        skill: Skill,
        args: Arguments,
        tools: Mapping[str, Callable[..., JSON]],
        *,
        limits: Limits | None = None,
        caller: str | None = None,
        given: Mapping[str, JSON] | None = None,
    ) -> RunResult:
        """`run` for a skill already loaded, with the arguments `check_arguments` returned
        for it (so they are checked once, however the skill is called).

        Raises:
            SkillArgumentError: ``tools`` lacks a tool the skill declares.
        """
        limits = limits or self.limits
        library = self._by_id() if skill.requires else {}
        # OpenTelemetry spans of the run (skillbank[otel]); None, at no cost, without it.
        traced = SkillTrace.start(skill, args, caller)
        try:
            granted = grant(
                skill.tools, skill.requires, tools, library, self._sandbox(), limits,
                trace=traced, inline_tools=self.inline_tools,
            )  # fmt: skip
        except SkillArgumentError as exc:
            misuse = SkillArgumentError(f"{skill.id!r} calls tools {', '.join(skill.tools)}: {exc}")
            if traced is not None:
                traced.abandon(misuse)
            raise misuse from None
        try:
            result = self._sandbox().run(skill.source, skill.id, args, granted, limits,
                                         skill_id=skill.id,
                                         inline_tools=self.inline_tools)  # fmt: skip
        except BaseException as exc:  # the sandbox itself failed (closed, interrupted)
            if traced is not None:
                traced.abandon(exc)
            raise
        if traced is not None:
            traced.end(result)
        error = None if result.error is None else f"{type(result.error).__name__}: {result.error}"
        blame = (
            _blame(result, given or {}, None) if caller == "reflex" and given
            else _blame(result, args, caller)
        )  # fmt: skip
        self._record(skill, result.ok, result.duration_s, error, caller, blame,
                     args if caller == "reflex" else None)  # fmt: skip
        return RunResult(
            skill_id=skill.id,
            ok=result.ok,
            value=result.value,
            error=None if result.error is None else str(result.error),
            error_type=None if result.error is None else type(result.error).__name__,
            tool_calls=result.tool_calls,
            duration_s=result.duration_s,
            output=result.output,
            warning=(
                f"deprecated: use {skill.deprecated_by} ({skill.id} keeps working until it "
                "is removed)"
                if skill.deprecated_by
                else None
            ),
        )

    def execute(self, plan: Plan, tools: Mapping[str, Callable[..., JSON]]) -> PlanResult:
        """Run a plan against host tools: skills in the sandbox, raw steps directly.

        Stops at the first step that fails; the result says which and why.
        """
        values: list[JSON] = []
        calls: list[ToolCall] = []
        for n, step in enumerate(plan.steps, start=1):
            if step.kind == "skill":
                result = self.run(step.name, step.arguments, tools)
                calls += result.tool_calls
                if not result.ok:
                    return PlanResult(
                        False,
                        tuple(values),
                        tuple(calls),
                        f"step {n} ({step.name}): {result.error}",
                    )
                values.append(result.value)
                continue
            function = tools.get(step.name)
            if function is None:
                raise SkillArgumentError(
                    f"plan step {n} calls tool {step.name!r}, which was not given"
                )
            started = time.monotonic()
            try:
                value = function(**dict(step.arguments))
            except Exception as exc:  # noqa: BLE001 - a failing tool ends the plan, as a value
                calls.append(
                    ToolCall(
                        step.name, dict(step.arguments), None, str(exc), time.monotonic() - started
                    )
                )
                why = f"step {n} ({step.name}): {type(exc).__name__}: {exc}"
                return PlanResult(False, tuple(values), tuple(calls), why)
            calls.append(
                ToolCall(step.name, dict(step.arguments), value, None, time.monotonic() - started)
            )
            values.append(value)
        return PlanResult(True, tuple(values), tuple(calls))

    def call_tool(
        self,
        name: str,
        arguments_json: str,
        tools: Mapping[str, Callable[..., JSON]],
        *,
        caller: str | None = None,
    ) -> str:
        """Run a skill a model called as a tool; return the ``role: "tool"`` message's text.

        Never raises: every failure comes back as a result the model can read and act on.
        The text is compact, key-sorted JSON: ``{"ok": true, "value": ...}`` (plus
        ``"warning"`` for a deprecated skill), or ``{"ok": false, "error": {"type",
        "message", "hint"}}`` where type is one of `skillbank.toolspec.ToolErrorType`: an
        unknown skill (the hint names close ones), arguments that are not JSON, not an
        object or do not fit the signature (the hint is the signature), a host tool
        missing from ``tools``, or a skill that failed in the sandbox (with its
        ``error_type`` and the number of ``tool_calls`` it made before it stopped).

        Args:
            name: The tool name the model used (the skill id).
            arguments_json: The arguments as the model sent them: a JSON object, where a
                ``null`` for an optional parameter (strict mode) means "use the default".
            tools: The host tools, by name.
            caller: Who is calling (an agent or session name), recorded in the ledger.
        """
        try:
            return self._call_tool(name, arguments_json, tools, caller)
        except Exception as exc:  # noqa: BLE001 - an agent's loop must never see one
            return tool_error(
                "internal_error",
                f"{type(exc).__name__}: {exc}",
                "this is a bug in skillbank, not in the call; do the task with the tools directly",
            )

    def _call_tool(
        self,
        name: str,
        arguments_json: str,
        tools: Mapping[str, Callable[..., JSON]],
        caller: str | None,
    ) -> str:
        try:
            skill = self.get(name)
        except LibraryError as exc:  # the folder is broken: not the caller's fault, nor a bug
            return tool_error(
                "unavailable",
                f"skill {name!r} cannot be loaded: {exc}",
                "its files are broken (run `skillbank gate` to see where); do the task with "
                "the tools directly",
            )
        except SkillNotFound:
            known = self.library.ids()
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
            if close:
                hint = f"did you mean {' or '.join(close)}?"
            elif known:
                hint = f"call one of the skills offered as tools: {', '.join(known[:20])}"
            else:
                hint = "the bank has no skills yet; use the tools directly"
            return tool_error("unknown_skill", f"there is no skill named {name!r}", hint)
        if skill.stage == "cognitive":  # described to the model, never run automatically
            return tool_error(
                "unavailable",
                f"skill {name!r} is at the cognitive stage: it is a described procedure, not a "
                "tool",
                "do its steps with the base tools, as its description says",
            )
        usage = skill.signature.render()
        try:
            args = json.loads(arguments_json.strip() or "{}", parse_constant=_no_constant)
        except (ValueError, RecursionError) as exc:
            return tool_error(
                "invalid_json",
                f"the arguments are not valid JSON ({exc})",
                f"send one JSON object with the arguments of {usage}",
            )
        if not isinstance(args, dict):
            return tool_error(
                "invalid_arguments",
                f"the arguments must be a JSON object, got a JSON {_json_kind(args)}",
                f"send one JSON object with the arguments of {usage}",
            )
        try:
            checked = check_arguments(skill, args, strict_nulls=True)
        except SkillArgumentError as exc:
            return tool_error("invalid_arguments", str(exc), usage)
        except SkillbankError as exc:  # the skill's own signature cannot be read
            return tool_error("unavailable", str(exc), _UNAVAILABLE)
        library = self._by_id() if skill.requires else {skill.id: skill}
        missing = sorted(tools_needed(skill.id, library) - set(tools))
        if missing:
            return tool_error(
                "missing_tool",
                f"{skill.id!r} needs the host tool(s) {', '.join(missing)}, which this host "
                "does not provide",
                "other arguments will not help; do the task with the tools you have",
            )
        try:
            result = self.run_checked(skill, checked, tools, caller=caller)
        except SkillbankError as exc:
            return tool_error("unavailable", str(exc), _UNAVAILABLE)
        if result.ok:
            return tool_result(result.value, warning=result.warning)
        return tool_error(
            "skill_failed",
            result.error or "the skill failed",
            _failure_hint(result),
            error_type=result.error_type,
            tool_calls=len(result.tool_calls),
        )

    def _record(
        self,
        skill: Skill,
        ok: bool,
        latency_s: float,
        error: str | None,
        caller: str | None,
        blame: Blame = "skill",
        args: Mapping[str, JSON] | None = None,
    ) -> None:
        try:
            self._ledger().record(
                skill.id,
                ok=ok,
                version=str(skill.version),
                latency_s=latency_s,
                error=error,
                caller=caller,
                blame=blame,
                args=args,
            )
        except Exception as exc:  # noqa: BLE001 - statistics must never fail a skill call
            where = self.library.state
            if where not in _LEDGER_WARNED:
                _LEDGER_WARNED.add(where)
                print(
                    f"skillbank: cannot record calls in the ledger under {where} "
                    f"({type(exc).__name__}: {exc}); skill calls go on, unrecorded",
                    file=sys.stderr,
                )


def _blame(result: Result, args: Mapping[str, JSON], caller: str | None) -> Blame:
    """Who a failed run counts against (see `skillbank.ledger.CallRecord.blame`).

    The caller, when a tool refused a call made only of values the caller gave (an email
    no customer has): the skill did what it should with what it was told. Anything else is
    the skill's, and so is every failure of a reflex, whose arguments skillbank itself read
    off the task.
    """
    if result.ok or caller == "reflex" or not isinstance(result.error, ToolError):
        return "skill"
    failing = next((c for c in reversed(result.tool_calls) if c.error is not None), None)
    if failing is None:
        return "skill"
    given = {canonical_json(v) for v in _leaves(dict(args)) if not trivial(v)}
    used = {canonical_json(v) for v in _leaves(dict(failing.arguments)) if not trivial(v)}
    return "caller" if used and used <= given else "skill"


def _leaves(value: JSON) -> list[JSON]:
    return [sub for _, sub in iter_paths(value) if not isinstance(sub, dict | list)]


#: The hint of a skill that cannot run here.
_UNAVAILABLE = "the skill cannot run here; do the task with the tools you have"
#: State folders whose ledger could not be written, already reported on stderr.
_LEDGER_WARNED: set[Path] = set()


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_kind(value: JSON) -> str:
    # A message to a model: JSON's own words, where 3 and 3.0 are both numbers.
    kind = json_type(value) or "null"
    return "number" if kind == "integer" else kind


def _failure_hint(result: RunResult) -> str:
    if not result.tool_calls:
        return (
            "it stopped before calling any tool; check the arguments, or do the steps with "
            "the tools directly"
        )
    last = result.tool_calls[-1]
    failed = " (which failed)" if last.error else ""
    return (
        f"it stopped after {len(result.tool_calls)} tool call(s), the last one to "
        f"{last.tool}{failed}; the calls that ran may have changed something, so check "
        "before calling it again, or finish the task with the tools directly"
    )
