"""An agent loop over an OpenAI-compatible Chat Completions endpoint that learns as it goes.

`run` takes a task and does, in order:

0. **Reflex**: when an autonomous skill clearly does the task (`SkillBank.plan_reflex`: the
   skill, and its arguments read off the task text, or a reason to abstain), it runs with no
   model call; a successful reflex ends the run there, with ``model_calls == 0``. The run
   is recorded in the ledger with ``caller="reflex"`` and its failure counts against the
   skill, which is demoted as usual; a failed reflex hands the task, with what the reflex
   did and what went wrong, to the model loop below. ``reflex=False`` skips this step.
1. **Retrieve** the skills relevant to the task (`relevant_skills`): ``bank.search`` when the
   bank has one, else a word-overlap ranking (see `relevant_skills`). Only skills whose
   declared tools the host provides, and that are not deprecated, are considered.
2. **Offer** them by stage. A *cognitive* skill (too little evidence to run unsupervised) is
   described in the system prompt: its description, signature and the tool calls of one
   recorded case, for the model to follow with the base tools. An *associative* or
   *autonomous* skill is offered as a tool (`skillbank.toolspec.chat_tool`) beside the base
   ``tool_specs``.
3. **Loop**: ask the model (``client.chat.completions.create``), run the tool calls it asks
   for, send back the results, until it answers without a tool call or ``max_turns`` model
   calls were made. A skill call runs in the sandbox (`SkillBank.call_tool`); a base tool
   call calls the host function. Every tool message has the same JSON shape as
   ``call_tool``'s: ``{"ok": true, "value": ...}`` or ``{"ok": false, "error": {"type",
   "message", "hint"}}``. Nothing a tool or skill does is raised: errors go back to the
   model, which may try something else.
4. **Record** the run as a `Trajectory` of *raw* tool calls: a skill call is expanded into
   the host tool calls it made, caught at the host boundary (every host tool handed to the
   sandbox is wrapped to record its calls, nested skills included), so the trajectory is the
   same whether the model called a skill or did the steps itself.
5. **Judge**: the run succeeded when the model finished (answered without a tool call) and
   ``judge(result)`` says so, or, without a judge, when no tool call of the last tool-calling
   turn failed.
6. **Learn or blame**: a successful run is learned (``bank.learn([trajectory],
   branch="current")``): a new procedure becomes a skill, a run of a known one a new case
   of it. Every skill call that ran is written to the ledger (`skillbank.ledger`) by
   `SkillBank.run`, with ``caller="agent"`` (a call with arguments that do not fit is the
   model's mistake, not the skill's, and is not recorded); when the run failed, each skill it
   used whose calls all worked gets one more failure row, ``caller="agent:outcome"``, so a
   skill that runs cleanly but does the wrong thing loses trust too. Then the skills used are
   promoted or demoted by their counts (`SkillBank.update_stages`: a commit per change on the
   checked-out branch, like the learning; a skill folder with uncommitted edits is left for
   next time, with a note on stderr).

Model errors from the endpoint (after the client's own retries) end the run as a failure
with the reason in `AgentResult.detail`; they are not raised.
"""

from __future__ import annotations

import json
import re
import sqlite3
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, cast

import openai

from skillbank.errors import LibraryError, SkillbankError
from skillbank.ledger import CallLedger
from skillbank.search import tokenize
from skillbank.skill import Skill
from skillbank.toolspec import chat_tool, tool_result
from skillbank.trajectory import Outcome, Step, ToolSpec, Trajectory

if TYPE_CHECKING:
    from skillbank.bank import SkillBank
    from skillbank.learning import LearnReport

__all__ = [
    "CALLABLE_STAGES",
    "MIN_OVERLAP",
    "SYSTEM_PROMPT",
    "AgentResult",
    "SkillCall",
    "Usage",
    "relevant_skills",
    "run",
]

JSON = Any

#: Stages whose skills are offered as tools; a cognitive skill is only described.
CALLABLE_STAGES = ("associative", "autonomous")

#: Distinct content words a skill must share with the task to be retrieved by word overlap.
MIN_OVERLAP = 1

#: The system prompt's opening; descriptions of cognitive skills follow it.
SYSTEM_PROMPT = (
    "You complete the user's task by calling the tools you are given. Some tools are learned "
    "skills: one call runs a whole procedure that worked before, so prefer a skill when it "
    "fits the task. Take ids and values from tool results rather than guessing them. If a "
    "tool reports an error, read it and try again differently. When the task is done, answer "
    "with a one-sentence summary and no tool call."
)

# A quoted value: a quote that does not follow a letter (so "Bob's" is not one) up to the next.
_QUOTED = re.compile(r"(?<![a-z0-9])(?:'[^'\n]*'|\"[^\"\n]*\"|\u2018[^\u2019\n]*\u2019)")


@dataclass(frozen=True)
class Usage:
    """Tokens the endpoint reported, summed over the run's model calls."""

    #: Tokens in the prompts.
    prompt_tokens: int
    #: Tokens the model generated.
    completion_tokens: int
    #: Their sum, as reported.
    total_tokens: int


@dataclass(frozen=True)
class SkillCall:
    """One call of a skill during a run."""

    #: The skill called.
    skill_id: str
    #: Its version at the time.
    version: str
    #: The arguments the model sent (decoded JSON; ``{}`` when they were not JSON).
    arguments: Mapping[str, JSON]
    #: True when the skill returned normally.
    ok: bool
    #: What went wrong (the ``error.message`` of the tool message), when it did.
    error: str | None
    #: Wall-clock seconds, sandbox included.
    latency_s: float
    #: The raw host tool calls it made, in order.
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class AgentResult:
    """What `run` did."""

    #: The model's final answer ("" when it never gave one).
    text: str
    #: Whether the task counts as done (see `run`).
    success: bool
    #: The run as raw tool calls, ready for `SkillBank.learn`.
    trajectory: Trajectory
    #: Skills the model called, in first-call order.
    skills_used: tuple[str, ...]
    #: What learning the run did (None when it was not learned: failed, ``learn=False``, no
    #: successful tool call, or learning raised; see `learn_error`).
    learned: LearnReport | None
    #: Model calls that returned a reply.
    turns: int
    #: Model calls made (a failed one included).
    model_calls: int
    #: Tokens, when the endpoint reported them.
    usage: Usage | None
    #: True when the model answered without a tool call within ``max_turns``.
    finished: bool
    #: Why the run failed, or the final answer.
    detail: str
    #: Skills offered as tools.
    skills_offered: tuple[str, ...] = ()
    #: Cognitive skills described in the system prompt.
    skills_described: tuple[str, ...] = ()
    #: Every skill call, in order.
    skill_calls: tuple[SkillCall, ...] = ()
    #: The conversation as sent to the model, plus its last reply.
    messages: tuple[Mapping[str, JSON], ...] = ()
    #: Why learning failed (a `SkillbankError` message), when it did.
    learn_error: str | None = None


# --- retrieval ------------------------------------------------------------------------------


def _words(text: str) -> set[str]:
    """Content words (`skillbank.search.tokenize`; no numbers, no ASCII word under 3 letters).

    Values say nothing about which procedure a task needs, so quoted text (``'wall clock'``)
    is dropped, and values such as ``ann@example.com`` or ``SKU-MUG-RED`` stay one token,
    which another task with other values does not share.
    """
    unquoted = _QUOTED.sub(" ", text.lower())
    # Short ASCII words say little ("to", "my"); a character of a script written without
    # spaces is a word.
    return {
        t
        for t in tokenize(unquoted, compound_parts=False)
        if (len(t) >= 3 or not t.isascii()) and not t.isdigit()
    }


def _skill_words(skill: Skill) -> set[str]:
    text = " ".join([skill.description, skill.id, *skill.tasks]).replace("_", " ")
    return _words(text.replace("{", " ").replace("}", " "))


def _usable(skill: Skill, tools: Mapping[str, Callable[..., JSON]] | None) -> bool:
    if skill.deprecated_by:
        return False  # its replacement is the one to offer
    return tools is None or all(t in tools for t in skill.tools)


def relevant_skills(
    bank: SkillBank,
    task: str,
    *,
    k: int = 5,
    tools: Mapping[str, Callable[..., JSON]] | None = None,
) -> list[Skill]:
    """The skills worth offering for ``task``, best first, at most ``k``.

    The ranking is the bank's search (`skillbank.search`: relevance times expected success).
    Search always ranks something first, so a skill must also share at least `MIN_OVERLAP`
    content words (see `_words`; quoted values, numbers and stop words do not count) with the
    task: "What is the weather in Oslo?" gets no skill offered. Skills that are deprecated, or
    that declare a tool missing from ``tools`` (when given), are left out.
    """
    if k <= 0:
        return []
    wanted = _words(task)
    found: list[Skill] = []
    for hit in bank.search(task, k=3 * k):  # extra room for the ones filtered out below
        skill = bank.get(hit.skill_id)
        if _usable(skill, tools) and len(_skill_words(skill) & wanted) >= MIN_OVERLAP:
            found.append(skill)
    return found[:k]


def _describe(skill: Skill) -> str:
    """A cognitive skill as a procedure for the model to follow by hand."""
    lines = [f"## {skill.signature.render()}", skill.description]
    if skill.cases:
        case = skill.cases[0]
        lines.append(f"Tool calls recorded for the task {case.task!r}:")
        for n, call in enumerate(case.calls, start=1):
            arguments = json.dumps(dict(call.arguments), ensure_ascii=False, sort_keys=True)
            if len(arguments) > 300:
                arguments = arguments[:297] + "..."
            lines.append(f"{n}. {call.tool}({arguments})")
    return "\n".join(lines)


def _system_prompt(base: str, described: Sequence[Skill]) -> str:
    if not described:
        return base
    parts = [
        base,
        "Learned procedures that may fit this task. They are not tools: do their steps "
        "yourself with the tools, using the values of this task.",
        *(_describe(s) for s in described),
    ]
    return "\n\n".join(parts)


# --- calling tools --------------------------------------------------------------------------


def _error(kind: str, message: str, hint: str) -> str:
    # The shape of `skillbank.toolspec.tool_error`, for errors that are not a skill's.
    data = {"ok": False, "error": {"type": kind, "message": message, "hint": hint}}
    return json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _jsonable(value: JSON) -> JSON:
    """``value`` as JSON data: what JSON cannot hold becomes its ``str`` (NaN, objects)."""
    try:
        return json.loads(json.dumps(value, ensure_ascii=False, default=str, allow_nan=False))
    except (ValueError, RecursionError):
        return str(value)


def _no_constant(name: str) -> JSON:
    raise ValueError(f"{name} is not JSON")


def _recording(
    name: str, fn: Callable[..., JSON], steps: list[Step], prefix: str
) -> Callable[..., JSON]:
    """``fn``, recording each call into ``steps`` (the sandbox calls it with keywords)."""

    def call(**arguments: JSON) -> JSON:
        recorded = _jsonable(arguments)
        call_id = f"{prefix}.{len(steps) + 1}"
        try:
            result = fn(**arguments)
        except Exception as exc:
            steps.append(Step(name, recorded, None, f"{type(exc).__name__}: {exc}", call_id))
            raise
        steps.append(Step(name, recorded, _jsonable(result), None, call_id))
        return result

    return call


class _Run:
    """The state of one `run`: the conversation, the raw steps, the skill calls."""

    def __init__(
        self,
        bank: SkillBank,
        tools: Mapping[str, Callable[..., JSON]],
        offered: Mapping[str, Skill],
        ledger: CallLedger | None,
    ) -> None:
        self.bank = bank
        self.tools = tools
        self.offered = offered
        self.ledger = ledger
        self.steps: list[Step] = []
        self.skill_calls: list[SkillCall] = []

    def dispatch(self, call_id: str, name: str, arguments_json: str) -> tuple[str, bool]:
        """Run one tool call; return the tool message's text and whether it failed."""
        if name in self.offered:
            return self._skill(call_id, self.offered[name], arguments_json)
        if name in self.tools:
            return self._tool(call_id, name, arguments_json)
        known = ", ".join([*self.tools, *self.offered])
        return (
            _error("unknown_tool", f"there is no tool named {name!r}", f"call one of: {known}"),
            True,
        )

    def reflex(self, task: str, base: tuple[ToolSpec, ...]) -> AgentResult | None:
        """Run the task as a reflex when one fits; the whole result when it worked, else None
        (the failed call, if one ran, is in `skill_calls` and `steps`)."""
        decision = self.bank.plan_reflex(task)
        if decision.skill_id is None:
            return None
        try:
            skill = self.bank.get(decision.skill_id)
        except SkillbankError:
            return None
        if not set(skill.tools) <= set(self.tools):
            return None
        raw: list[Step] = []
        wrapped = {n: _recording(n, fn, raw, "reflex") for n, fn in self.tools.items()}
        started = time.perf_counter()
        try:  # the decision's arguments, run as the reflex (`SkillBank.reflex` would plan again)
            result = self.bank.run(skill.id, decision.args, wrapped, caller="reflex")
        except SkillbankError:
            return None
        latency = time.perf_counter() - started
        self.steps.extend(raw)
        self.skill_calls.append(
            SkillCall(
                skill.id, str(skill.version), dict(decision.args), result.ok,
                result.error, latency, tuple(raw),
            )
        )  # fmt: skip
        _update_stages(self.bank, (skill.id,))
        if not result.ok:
            return None
        text = json.dumps(_jsonable(result.value), ensure_ascii=False, sort_keys=True)
        return AgentResult(
            text=text,
            success=True,
            trajectory=_trajectory(task, base, self.steps, True, text),
            skills_used=(skill.id,),
            learned=None,
            turns=0,
            model_calls=0,
            usage=None,
            finished=True,
            detail=f"reflex: {decision.reason}",
            skill_calls=tuple(self.skill_calls),
        )

    def _skill(self, call_id: str, skill: Skill, arguments_json: str) -> tuple[str, bool]:
        raw: list[Step] = []
        wrapped = {n: _recording(n, fn, raw, call_id) for n, fn in self.tools.items()}
        started = time.perf_counter()
        text = self.bank.call_tool(skill.id, arguments_json, wrapped, caller="agent")
        latency = time.perf_counter() - started
        reply = json.loads(text)  # call_tool always answers with a JSON object
        ok = reply.get("ok") is True
        error = None if ok else str(reply.get("error", {}).get("message", "the call failed"))
        try:
            arguments = json.loads(arguments_json or "{}", parse_constant=_no_constant)
        except (ValueError, RecursionError):
            arguments = {}
        self.steps.extend(raw)
        self.skill_calls.append(
            SkillCall(
                skill.id,
                str(skill.version),
                arguments if isinstance(arguments, dict) else {},
                ok,
                error,
                latency,
                tuple(raw),
            )
        )
        # The ledger row of the call is written by SkillBank.run (caller="agent").
        return text, not ok

    def _tool(self, call_id: str, name: str, arguments_json: str) -> tuple[str, bool]:
        try:
            arguments = json.loads(arguments_json or "{}", parse_constant=_no_constant)
        except (ValueError, RecursionError) as exc:
            return (
                _error(
                    "invalid_json",
                    f"the arguments of {name!r} are not JSON ({exc}): {arguments_json!r}",
                    "send the arguments as a JSON object",
                ),
                True,
            )
        if not isinstance(arguments, dict):
            return (
                _error(
                    "invalid_arguments",
                    f"the arguments of {name!r} must be a JSON object, got {arguments!r}",
                    "send the arguments as a JSON object",
                ),
                True,
            )
        try:
            result = self.tools[name](**arguments)
        except Exception as exc:  # noqa: BLE001 - a tool's failure is the model's to handle
            message = f"{type(exc).__name__}: {exc}"
            self.steps.append(Step(name, _jsonable(arguments), None, message, call_id))
            hint = "read the message, fix the arguments or try another way"
            return _error("tool_failed", message, hint), True
        value = _jsonable(result)
        self.steps.append(Step(name, _jsonable(arguments), value, None, call_id))
        return tool_result(value), False


# --- the loop -------------------------------------------------------------------------------


def _tool_specs(specs: Sequence[Mapping[str, JSON]]) -> tuple[ToolSpec, ...]:
    out = []
    for spec in specs:
        try:
            tool = ToolSpec.from_openai(spec)
        except ValueError as exc:
            raise ValueError(f"tool_specs must be Chat Completions definitions: {exc}") from None
        # The run's trajectory offers what a trajectory file's tools would (`parse_record`
        # keeps name, description and parameters), so what it teaches does not depend on
        # whether it was learned live or from its record.
        out.append(replace(tool, extra={}))
    return tuple(out)


def run(
    task: str,
    client: openai.OpenAI,
    tools: Mapping[str, Callable[..., Any]],
    bank: SkillBank,
    *,
    tool_specs: Sequence[Mapping[str, Any]],
    model: str,
    max_turns: int = 12,
    k: int = 5,
    learn: bool = True,
    judge: Callable[[AgentResult], bool] | None = None,
    system_prompt: str = SYSTEM_PROMPT,
    reflex: bool = True,
) -> AgentResult:
    """Do ``task`` with the model and the tools, offering learned skills; learn from success.

    See the module docstring for the steps.

    Args:
        task: What to do, as the user would say it.
        client: An OpenAI client (any OpenAI-compatible endpoint); it is not closed.
        tools: The host tools by name (the same functions skills call).
        bank: The skill bank to draw skills from, learn into, and keep the ledger of.
        tool_specs: Chat Completions definitions of the base tools offered to the model.
        model: The model to ask.
        max_turns: The most model calls to make.
        k: The most skills to retrieve.
        learn: Learn from a successful run.
        judge: Decides success from the result (seen before learning, with ``success`` set by
            the built-in check and ``learned`` None); default: no tool error in the last
            tool-calling turn.
        system_prompt: The system prompt's opening (cognitive skills are appended).
        reflex: Try an autonomous skill as a reflex before the first model call.

    Raises:
        ValueError: ``max_turns`` is below 1, or ``tool_specs`` are not Chat Completions
            definitions.
    """
    if max_turns < 1:
        raise ValueError(f"max_turns={max_turns!r} must be at least 1")
    base = _tool_specs(tool_specs)
    skills = relevant_skills(bank, task, k=k, tools=tools)
    offered = {s.id: s for s in skills if s.stage in CALLABLE_STAGES and s.id not in tools}
    described = [s for s in skills if s.stage not in CALLABLE_STAGES]
    specs = [dict(spec) for spec in tool_specs] + [chat_tool(s) for s in offered.values()]
    messages: list[dict[str, JSON]] = [
        {"role": "system", "content": _system_prompt(system_prompt, described)},
        {"role": "user", "content": task},
    ]
    try:
        ledger: CallLedger | None = bank.ledger
    except LibraryError as exc:  # local statistics: the task goes on without them
        print(f"skillbank: outcomes not recorded: {exc}", file=sys.stderr)
        ledger = None
    state = _Run(bank, tools, offered, ledger)
    if reflex:
        done = state.reflex(task, base)
        if done is not None:
            return done
        if state.skill_calls:  # the reflex ran and failed: the model sees what it did
            misfire = state.skill_calls[-1]
            messages.append({"role": "user", "content": (
                f"(skillbank ran {misfire.skill_id} with {json.dumps(dict(misfire.arguments))} "
                f"for this task, and it failed: {misfire.error}. Its tool calls took effect.)"
            )})  # fmt: skip

    turns = model_calls = 0
    usage: list[int] | None = None
    finished, last_turn_failed = False, False
    text, detail = "", ""
    while model_calls < max_turns:
        model_calls += 1
        try:
            response = client.chat.completions.create(
                model=model,
                messages=cast(Any, messages),
                tools=cast(Any, specs) if specs else openai.omit,
            )
        except openai.OpenAIError as exc:
            detail = f"the model call failed: {type(exc).__name__}: {exc}"
            break
        turns += 1
        if response.usage is not None:
            reported = response.usage
            now = [reported.prompt_tokens, reported.completion_tokens, reported.total_tokens]
            usage = now if usage is None else [a + b for a, b in zip(usage, now, strict=True)]
        if not response.choices:
            detail = "the model returned no choices"
            break
        message = response.choices[0].message
        calls = message.tool_calls or []
        assistant: dict[str, JSON] = {"role": "assistant", "content": message.content}
        if calls:
            assistant["tool_calls"] = [c.model_dump(exclude_none=True) for c in calls]
        messages.append(assistant)
        if not calls:
            finished, text = True, message.content or ""
            break
        last_turn_failed = False
        for call in calls:
            if call.type == "function":
                content, failed = state.dispatch(
                    call.id, call.function.name, call.function.arguments
                )
            else:
                content, failed = (
                    _error("unknown_tool", f"a {call.type!r} tool call is not supported",
                           "call one of the function tools"),
                    True,
                )  # fmt: skip
            last_turn_failed = last_turn_failed or failed
            messages.append({"role": "tool", "tool_call_id": call.id, "content": content})
    if not finished and not detail:
        detail = f"no final answer after max_turns={max_turns} model calls"

    used = tuple(dict.fromkeys(c.skill_id for c in state.skill_calls))
    success = finished and not last_turn_failed
    trajectory = _trajectory(task, base, state.steps, success, text if success else detail)
    result = AgentResult(
        text=text,
        success=success,
        trajectory=trajectory,
        skills_used=used,
        learned=None,
        turns=turns,
        model_calls=model_calls,
        usage=Usage(*usage) if usage is not None else None,
        finished=finished,
        detail=text if success else (detail or "a tool call of the last turn failed"),
        skills_offered=tuple(offered),
        skills_described=tuple(s.id for s in described),
        skill_calls=tuple(state.skill_calls),
        messages=tuple(messages),
    )
    if judge is not None:
        verdict = finished and bool(judge(result))
        if verdict != success:
            detail = text if verdict else "the judge did not accept the result"
            result = replace(
                result,
                success=verdict,
                detail=detail,
                trajectory=_trajectory(task, base, state.steps, verdict, detail),
            )
    if result.success:
        if learn and any(s.error is None for s in state.steps):
            try:
                report = bank.learn([result.trajectory], branch="current")
            except SkillbankError as exc:
                result = replace(result, learn_error=str(exc))
            else:
                result = replace(result, learned=report)
        _update_stages(bank, used)
        return result
    already_failed = {c.skill_id for c in state.skill_calls if not c.ok}
    versions = {c.skill_id: c.version for c in state.skill_calls}
    for sid in used:
        if sid not in already_failed and state.ledger is not None:  # one failure per run
            try:
                state.ledger.record(
                    sid,
                    ok=False,
                    version=versions[sid],
                    error=f"the task failed: {result.detail}",
                    caller="agent:outcome",
                )
            except (LibraryError, sqlite3.Error) as exc:  # never fail the run for statistics
                print(f"skillbank: outcome not recorded: {exc}", file=sys.stderr)
    _update_stages(bank, used)
    return result


def _update_stages(bank: SkillBank, used: Sequence[str]) -> None:
    """Promote or demote the skills this run used, by their ledger counts (see `run`)."""
    if not used or not bank.config.applies_stages:  # another replica applies them
        return
    try:
        bank.update_stages(used, branch="current")  # in place, like the agent's learning
    except SkillbankError as exc:  # e.g. a skill folder with uncommitted edits: next time
        print(f"skillbank: stages not updated: {exc}", file=sys.stderr)


def _trajectory(
    task: str, tools: tuple[ToolSpec, ...], steps: Sequence[Step], success: bool, detail: str
) -> Trajectory:
    draft = Trajectory("", task, tools, tuple(steps), Outcome(success, detail or None), "agent")
    return replace(draft, id=f"agent-{draft.sha256[:12]}")
