"""The optional LLM compiler: a model proposes a skill, the usual gates decide whether it stays.

The deterministic compiler (`skillbank.compiler`) is the default and needs no model. When a
group of trajectories is beyond it, `LLMCompiler` asks a model behind any OpenAI-compatible
Chat Completions endpoint (the official ``openai`` SDK; ``OPENAI_BASE_URL`` or the
``llm_base_url`` setting, key from ``OPENAI_API_KEY``) for one function that reproduces every
run, plus the arguments that make it do so for each run. The model's output is never trusted:
`LLMCompiler.compile` turns each proposal into a `SkillDraft` whose cases are the recorded
calls and results, and hands it to the caller's ``check`` (validation with the libcst policy,
then replay in the sandbox, e.g. `replay_check`). What ``check`` finds (findings with rule id
and line:col, or the diverging call of a falsifying run) goes back to the model as a repair
prompt, for at most ``max_attempts`` proposals in all.

Prompts are deterministic: the same skill id, runs, feedback and previous source give the
same messages, whatever order the runs arrive in. Network and API errors and replies that are
not the JSON object asked for never escape `LLMCompiler.compile`; they end up in
`LLMResult.transcript` and `LLMResult.error`.
"""

from __future__ import annotations

import ast
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import openai
from openai.types.chat import ChatCompletionMessageParam

from sandbox import Limits, Sandbox
from sandbox.names import attribute_name
from skillbank.errors import (
    CompileError,
    ConfigError,
    LLMReplyError,
    LLMRequestError,
    SkillbankError,
)
from skillbank.proving import check, explain
from skillbank.signature import read_signature
from skillbank.skill import Case, SkillDraft
from skillbank.trajectory import Step, ToolSpec, Trajectory, canonical_json
from skillbank.validate import ALLOWED_IMPORTS, FORBIDDEN_NAMES

if TYPE_CHECKING:
    from skillbank.config import Config

__all__ = [
    "LLMCompiler",
    "LLMProposal",
    "LLMReplyError",
    "LLMRequestError",
    "LLMResult",
    "build_messages",
    "parse_reply",
    "replay_check",
]

JSON = Any

#: Characters of one tool result shown to the model; the arguments are always shown whole.
RESULT_LIMIT = 300
#: Characters of one task text shown to the model.
TASK_LIMIT = 500

_SKILL_ID = re.compile(r"[a-z][a-z0-9_]{0,63}")
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\r?\n(.*?)```", re.DOTALL)
_REPLY_SHAPE = (
    '{"source": "<the whole Python module>", '
    '"cases": {"<run id>": {"<parameter>": <value>, ...}, ...}}'
)


@dataclass(frozen=True)
class LLMProposal:
    """What the model proposed: untrusted until it passes validation and replay."""

    #: The Python module source.
    source: str
    #: Trajectory id -> the arguments the function takes to reproduce that trajectory.
    case_args: Mapping[str, Mapping[str, JSON]]


@dataclass(frozen=True)
class LLMResult:
    """The outcome of `LLMCompiler.compile`: a draft that passed ``check``, or why none did."""

    #: The draft that passed ``check`` (None when no proposal did).
    draft: SkillDraft | None
    #: Proposals asked for (including ones whose request failed).
    attempts: int
    #: One line per attempt: what was wrong with it, or that it passed.
    transcript: tuple[str, ...]
    #: Why there is no draft (None when there is one).
    error: str | None = None


# --- prompts --------------------------------------------------------------------------------

_SYSTEM = f"""\
You write skills: Python functions that redo what an AI agent did with tools.
You are shown recorded runs of one procedure. Write ONE function that reproduces every run: \
called with a run's arguments, it makes exactly that run's tool calls (same tools, same \
arguments, same order) and returns the result of the run's last tool call.

Rules. The code is checked by a validator and replayed in a sandbox; breaking any rule means \
rejection.
1. Define exactly one function, named exactly as the skill id given, with a type annotation \
on every parameter (str, int, float, bool, list or dict), a return annotation, and a \
docstring whose first line says what the skill does. No *args or **kwargs, no other \
functions, no classes. At the top level put only imports and constants.
2. Call tools only as tools.<name>(argument=value, ...), with keyword arguments, and only the \
tools listed. `tools` is a global: never pass, store, index or inspect it.
3. Import only these modules: {", ".join(sorted(ALLOWED_IMPORTS))}. No other modules, no \
submodules.
4. No name or attribute may start with an underscore.
5. Never use: {", ".join(sorted(n for n in FORBIDDEN_NAMES if not n.startswith("_")))}.
6. Return the value of the final tool call unchanged.
7. Generalise. A value the user chose (it is in the task text, or it varies between runs) is a \
parameter. A value the agent copied from an earlier tool result is read from that result in \
code, never written as a literal. A value that is the same in every run may stay a literal. \
When runs differ in how often or whether a call is made, decide with a loop or an if on the \
data, never on which run it is.

Answer with ONE JSON object and nothing else:
{_REPLY_SHAPE}
"cases" maps every run id to the arguments your function takes to reproduce that run."""

_DOCS_SYSTEM = """\
You improve the documentation of a Python function that other AI agents will call as a tool.
Change ONLY its docstring (a first line saying what it does and when to use it, then one line \
per argument) and, where a name is unclear, its parameter names (renaming every use). Change \
nothing else: not the code, the function name, the order, annotations or defaults of the \
parameters. Names must not start with an underscore.
Answer with ONE JSON object and nothing else: {"source": "<the whole Python module>"}"""


def _short(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def _successful(trajectory: Trajectory) -> list[Step]:
    return [s for s in trajectory.steps if s.error is None]


def _tools_used(trajectories: Sequence[Trajectory]) -> tuple[str, ...]:
    return tuple(sorted({s.tool for t in trajectories for s in _successful(t)}))


def _tool_lines(trajectories: Sequence[Trajectory], tools: Sequence[str]) -> list[str]:
    lines: list[str] = []
    for name in tools:
        spec = next((s for t in trajectories for s in t.tools if s.name == name), None)
        # A name that is not an identifier ("get-weather") is written as sandbox.names says.
        attribute = attribute_name(name)
        call = "" if attribute == name else f"\n  call it as tools.{attribute}(...)"
        if spec is None:
            lines.append(f"- {name}: (no definition recorded){call}")
            continue
        desc = " ".join(spec.description.split()) or "(no description)"
        params = canonical_json(spec.to_openai()["function"]["parameters"])
        lines.append(f"- {name}: {desc}\n  parameters (JSON Schema): {params}{call}")
    return lines


def _run_lines(trajectory: Trajectory) -> list[str]:
    task = _short(" ".join(trajectory.task.split()), TASK_LIMIT)
    lines = [f"Run {json.dumps(trajectory.id)}", f"Task: {task}"]
    for n, step in enumerate(_successful(trajectory), start=1):
        args = ", ".join(
            f"{k}={json.dumps(v, ensure_ascii=False, sort_keys=True)}"
            for k, v in step.arguments.items()
        )
        result = _short(canonical_json(step.result), RESULT_LIMIT)
        lines.append(f"{n}. {step.tool}({args}) -> {result}")
    return lines


def _ordered(trajectories: Sequence[Trajectory]) -> list[Trajectory]:
    # The prompt must not depend on the order runs arrive in.
    return sorted(trajectories, key=lambda t: (t.id, t.sha256))


def build_messages(
    skill_id: str,
    trajectories: Sequence[Trajectory],
    *,
    feedback: str | None = None,
    previous: str | None = None,
) -> list[ChatCompletionMessageParam]:
    """The chat messages for a proposal (a repair when ``feedback`` is given); deterministic."""
    runs = _ordered(trajectories)
    tools = _tools_used(runs)
    parts = [
        f"Skill id (the function name): {skill_id}",
        "",
        "Tools the skill may call:",
        *_tool_lines(runs, tools),
        "",
        f"Recorded runs ({len(runs)}). Each shows the task, then every successful tool call as "
        "name(arguments) -> result; values are JSON, long results are cut:",
    ]
    for t in runs:
        parts += ["", *_run_lines(t)]
    parts += ["", f"Answer with one JSON object: {_REPLY_SHAPE}"]
    if feedback is not None:
        parts += ["", "REPAIR. Your previous answer was rejected."]
        if previous is not None:
            parts += ["Its source:", "```python", previous.rstrip("\n"), "```"]
        parts += [
            "What was wrong:",
            feedback.rstrip("\n"),
            "",
            "Fix every problem and answer again with the whole JSON object: the corrected "
            "source and the arguments for every run id.",
        ]
    return [
        {"role": "system", "content": _SYSTEM},
        {"role": "user", "content": "\n".join(parts)},
    ]


# --- replies --------------------------------------------------------------------------------


def _json_objects(text: str) -> list[JSON]:
    # Candidates in order of trust: the whole reply, fenced blocks, then any {...} in the text.
    found: list[JSON] = []
    pieces = [text.strip()] + [m.group(2).strip() for m in _FENCE.finditer(text)]
    for piece in pieces:
        try:
            found.append(json.loads(piece))
        except (ValueError, RecursionError):
            pass
    decoder = json.JSONDecoder()
    start = text.find("{")
    tries = 0
    while start != -1 and tries < 200:  # bounded: a long prose reply must not cost n^2
        tries += 1
        try:
            obj, _ = decoder.raw_decode(text, start)
            found.append(obj)
        except (ValueError, RecursionError):
            pass
        start = text.find("{", start + 1)
    return found


def _strip_fence(source: str) -> str:
    # Models sometimes wrap the module in a ```python fence inside the JSON string.
    match = _FENCE.fullmatch(source.strip())
    text = match.group(2) if match else source
    return text.strip("\n") + "\n"


def parse_reply(text: str, run_ids: Sequence[str]) -> LLMProposal:
    """Read a proposal from the model's reply text.

    Accepts the bare JSON object, one in a fenced block, or the first such object in prose.

    Raises:
        LLMReplyError: saying what is missing, for the model to fix.
    """
    objects = [o for o in _json_objects(text) if isinstance(o, dict)]
    if not objects:
        raise LLMReplyError("the reply holds no JSON object", text)
    obj = next((o for o in objects if "source" in o), objects[0])
    source = obj.get("source")
    if not isinstance(source, str) or not source.strip():
        raise LLMReplyError('the JSON object has no "source" string with the Python module', text)
    cases = obj.get("cases")
    if not isinstance(cases, dict):
        raise LLMReplyError(
            'the JSON object has no "cases" object mapping each run id to its arguments', text
        )
    missing = [i for i in run_ids if not isinstance(cases.get(i), dict)]
    if missing:
        shown = ", ".join(json.dumps(i) for i in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise LLMReplyError(
            f'"cases" lacks an object of arguments for run(s) {shown}{more}; give one for every '
            f"run id ({len(run_ids)} in all)",
            text,
        )
    args = {i: dict(cases[i]) for i in run_ids}
    return LLMProposal(_strip_fence(source), args)


# --- the caller's check ---------------------------------------------------------------------


def replay_check(
    sandbox: Sandbox, limits: Limits | None = None
) -> Callable[[SkillDraft], str | None]:
    """The standard ``check`` for `LLMCompiler.compile`: `skillbank.proving.check`, explained."""

    def run_check(draft: SkillDraft) -> str | None:
        return explain(check(draft, sandbox, limits))

    return run_check


# --- the compiler ---------------------------------------------------------------------------


class LLMCompiler:
    """Proposes and repairs skills with a model behind a Chat Completions endpoint.

    Example:
        >>> llm = LLMCompiler(openai.OpenAI(), "gpt-4.1-mini")  # doctest: +SKIP
        >>> result = llm.compile("order_history", runs, replay_check(sandbox))  # doctest: +SKIP
        >>> result.draft, result.transcript  # doctest: +SKIP

    Args:
        client: An ``openai.OpenAI`` client (its base URL may point at any compatible server).
        model: The model id to ask.
        max_attempts: Proposals per `compile` call, the first one included.
        temperature: Sampling temperature (0 for the most repeatable answers).
    """

    def __init__(
        self,
        client: openai.OpenAI,
        model: str,
        *,
        max_attempts: int = 3,
        temperature: float = 0.0,
    ) -> None:
        if not model:
            raise ValueError("model must name the model to ask, e.g. 'gpt-4.1-mini'")
        if max_attempts < 1:
            raise ValueError(f"max_attempts={max_attempts!r} must be at least 1")
        self.client = client
        self.model = model
        self.max_attempts = max_attempts
        self.temperature = temperature
        # Cleared after a 400 answer to a request carrying them: some compatible servers
        # support neither JSON mode nor a temperature, and the prompt asks for JSON anyway.
        self._extras = True

    @classmethod
    def from_config(cls, config: Config) -> LLMCompiler | None:
        """A compiler for the configured model, or None when ``llm_model`` is empty.

        The base URL is ``llm_base_url``, else ``OPENAI_BASE_URL``, else the SDK's default; the
        key is ``OPENAI_API_KEY`` (any non-empty value for a local server that ignores it).

        Raises:
            ConfigError: a model is configured but no key is set for the default endpoint.
        """
        model = config.llm_model.strip()
        if not model:
            return None
        base_url = config.llm_base_url or os.environ.get("OPENAI_BASE_URL") or None
        key = os.environ.get("OPENAI_API_KEY")
        if not key:
            if base_url is None:
                raise ConfigError(
                    f"llm_model={model!r} is set but OPENAI_API_KEY is not; export the key, or "
                    "set llm_base_url/OPENAI_BASE_URL to a local OpenAI-compatible server"
                )
            key = "unused"  # local servers commonly ignore the key, but the SDK needs one
        client = openai.OpenAI(api_key=key, base_url=base_url)
        return cls(client, model, max_attempts=config.llm_max_attempts)

    def close(self) -> None:
        """Close the client's connections (a bank calls this from its own ``close``)."""
        self.client.close()

    # --- talking to the model ---------------------------------------------------------------

    def _ask(self, messages: list[ChatCompletionMessageParam]) -> str:
        try:
            return self._complete(messages)
        except openai.BadRequestError:
            if not self._extras:
                raise
            self._extras = False  # retry once without response_format and temperature
            return self._complete(messages)

    def _complete(self, messages: list[ChatCompletionMessageParam]) -> str:
        create = self.client.chat.completions.create
        if self._extras:
            completion = create(
                model=self.model,
                messages=messages,
                temperature=self.temperature,
                response_format={"type": "json_object"},
            )
        else:
            completion = create(model=self.model, messages=messages)
        if not completion.choices:
            raise LLMReplyError("the reply has no choices")
        choice = completion.choices[0]
        content = choice.message.content
        if not content:
            refusal = getattr(choice.message, "refusal", None)
            why = f" (refusal: {refusal})" if refusal else ""
            raise LLMReplyError(f"the reply has no text{why}")
        if choice.finish_reason == "length":
            raise LLMReplyError(
                "the reply was cut off at the token limit; answer more briefly", content
            )
        return content

    def _request(self, messages: list[ChatCompletionMessageParam]) -> str:
        where = str(self.client.base_url)
        try:
            return self._ask(messages)
        except openai.APITimeoutError:
            raise LLMRequestError(
                f"the request to {where} timed out (model {self.model!r})", retryable=True
            ) from None
        except openai.APIConnectionError as exc:
            raise LLMRequestError(f"cannot reach {where}: {exc}", retryable=True) from None
        except openai.APIStatusError as exc:
            status = exc.status_code
            retryable = status in (408, 409, 429) or status >= 500
            hint = {
                401: "; check OPENAI_API_KEY",
                403: "; check OPENAI_API_KEY",
                404: f"; check llm_model={self.model!r} and llm_base_url",
                429: "; the endpoint is rate limiting",
            }.get(status, "")
            raise LLMRequestError(
                f"{where} answered HTTP {status}: {_api_message(exc)}{hint}", retryable=retryable
            ) from None
        except openai.APIError as exc:
            raise LLMRequestError(
                f"the answer from {where} was not understood: {exc}", retryable=True
            ) from None

    def propose(
        self,
        skill_id: str,
        trajectories: Sequence[Trajectory],
        *,
        feedback: str | None = None,
        previous: str | None = None,
    ) -> LLMProposal:
        """Ask the model for one skill reproducing ``trajectories`` (a repair with ``feedback``).

        Raises:
            LLMRequestError: the endpoint could not be asked or refused the request.
            LLMReplyError: the reply is not the JSON object asked for.
        """
        messages = build_messages(skill_id, trajectories, feedback=feedback, previous=previous)
        reply = self._request(messages)
        return parse_reply(reply, [t.id for t in _ordered(trajectories)])

    def compile(
        self,
        skill_id: str,
        trajectories: Sequence[Trajectory],
        check: Callable[[SkillDraft], str | None],
    ) -> LLMResult:
        """Propose, check, and repair until a draft passes ``check`` or attempts run out.

        Args:
            skill_id: The skill id, which is also the function name.
            trajectories: Successful runs of one procedure; each becomes a recorded case.
            check: Validates and replays a draft; returns None when it passes, else the
                problems as text (see `replay_check` and `skillbank.proving.explain`).

        Raises:
            CompileError: misuse: a bad skill id, no trajectories, a failed trajectory, one
                without a successful call, or two with the same id. Model and network
                failures are never raised; they are in the result.
        """
        runs = _check_input(skill_id, trajectories)
        transcript: list[str] = []
        feedback: str | None = None
        previous: str | None = None
        last = "no attempt was made"
        for attempt in range(1, self.max_attempts + 1):
            try:
                proposal = self.propose(skill_id, runs, feedback=feedback, previous=previous)
            except LLMRequestError as exc:
                last = str(exc)
                transcript.append(f"attempt {attempt}: the request failed: {_one_line(last)}")
                if not exc.retryable:
                    return LLMResult(None, attempt, tuple(transcript), last)
                continue
            except LLMReplyError as exc:
                last = f"the reply was not the JSON object asked for: {exc}"
                transcript.append(f"attempt {attempt}: {_one_line(last)}")
                feedback = (
                    f"Your reply could not be used: {exc}. Answer with ONE JSON object and "
                    f"nothing else, exactly of this form: {_REPLY_SHAPE}"
                )
                continue
            draft = self._draft(skill_id, runs, proposal, attempt)
            problems = check(draft)
            if problems is None:
                transcript.append(f"attempt {attempt}: passed validation and replay")
                return LLMResult(draft, attempt, tuple(transcript), None)
            last = problems
            transcript.append(f"attempt {attempt}: {_one_line(problems)}")
            feedback, previous = problems, proposal.source
        error = (
            f"no proposal from {self.model!r} passed validation and replay in "
            f"{self.max_attempts} attempt(s); the last problem: {_one_line(last)}"
        )
        return LLMResult(None, self.max_attempts, tuple(transcript), error)

    def _draft(
        self, skill_id: str, runs: Sequence[Trajectory], proposal: LLMProposal, attempt: int
    ) -> SkillDraft:
        tools = _tools_used(runs)
        cases = []
        for t in runs:
            steps = _successful(t)
            cases.append(
                Case(
                    trajectory_id=t.id,
                    trajectory_sha256=t.sha256,
                    task=t.task,
                    args=dict(proposal.case_args[t.id]),
                    calls=tuple(s.as_case_call() for s in steps),
                    result=steps[-1].result,
                )
            )
        specs: dict[str, ToolSpec] = {}
        for name in tools:
            spec = next((s for t in runs for s in t.tools if s.name == name), None)
            if spec is not None:
                specs[name] = spec
        try:
            doc = read_signature(proposal.source).docstring
        except (SkillbankError, RecursionError, ValueError):
            doc = ""  # the check reports the broken source
        description = next((line.strip() for line in doc.splitlines() if line.strip()), "")
        note = (
            f"written by the LLM {self.model!r} from {len(runs)} run(s) in {attempt} "
            "attempt(s); validated and replayed like every skill"
        )
        return SkillDraft(
            id=skill_id,
            source=proposal.source,
            description=description,
            tools=tools,
            cases=tuple(cases),
            tool_specs=specs,
            notes=(note,),
        )

    # --- documentation --------------------------------------------------------------------

    def improve_docs(self, source: str, trajectories: Sequence[Trajectory]) -> str | None:
        """Ask for a better docstring and parameter names; the code itself must not change.

        The reply is accepted only if, with its parameters renamed back, it is the same code
        as ``source`` apart from the function's docstring. Parameters keep their order, so
        the caller renames each case's arguments by position, then re-validates and
        re-proves. Returns None on any failure, or when nothing changed.
        """
        runs = _ordered(trajectories)
        tasks = [f"- {_short(' '.join(t.task.split()), 200)}" for t in runs[:10]]
        user = "\n".join(
            [
                "The function:",
                "```python",
                source.rstrip("\n"),
                "```",
                "",
                "Tasks it was learned from:",
                *tasks,
                "",
                "The tools it calls:",
                *_tool_lines(runs, _tools_used(runs)),
            ]
        )
        messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": _DOCS_SYSTEM},
            {"role": "user", "content": user},
        ]
        try:
            reply = self._request(messages)
        except (LLMRequestError, LLMReplyError):
            return None
        obj = next((o for o in _json_objects(reply) if isinstance(o, dict) and "source" in o), None)
        new = obj.get("source") if obj else None
        if not isinstance(new, str) or not new.strip():
            return None
        new = _strip_fence(new)
        if new == source or not _same_code(source, new):
            return None
        signature = read_signature(new)  # parses: _same_code did
        return new if signature.docstring.strip() else None


def _api_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
    return str(exc.message)


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _check_input(skill_id: str, trajectories: Sequence[Trajectory]) -> list[Trajectory]:
    if not _SKILL_ID.fullmatch(skill_id):
        raise CompileError(f"skill id {skill_id!r} must match [a-z][a-z0-9_]{{0,63}}")
    if not trajectories:
        raise CompileError("no trajectories given; the LLM compiler needs at least one run")
    seen: set[str] = set()
    for t in trajectories:
        if t.id in seen:
            raise CompileError(f"trajectory id {t.id!r} is given twice; ids must be unique")
        seen.add(t.id)
        if not t.outcome.success:
            raise CompileError(
                f"trajectory {t.id!r} did not succeed; only successful trajectories become skills"
            )
        if not _successful(t):
            raise CompileError(f"trajectory {t.id!r} made no successful tool call")
    return _ordered(trajectories)


def _public_function(tree: ast.Module) -> ast.FunctionDef | None:
    return next(
        (
            node
            for node in tree.body
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")
        ),
        None,
    )


def _same_code(old: str, new: str) -> bool:
    """True when ``new`` is ``old`` with only the docstring changed and parameters renamed."""
    try:
        old_tree, new_tree = ast.parse(old), ast.parse(new)  # parsed only, never run
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    old_fn, new_fn = _public_function(old_tree), _public_function(new_tree)
    if old_fn is None or new_fn is None or old_fn.name != new_fn.name:
        return False
    old_params = [
        a.arg for a in (*old_fn.args.posonlyargs, *old_fn.args.args, *old_fn.args.kwonlyargs)
    ]
    new_params = [
        a.arg for a in (*new_fn.args.posonlyargs, *new_fn.args.args, *new_fn.args.kwonlyargs)
    ]
    if len(old_params) != len(new_params) or len(set(new_params)) != len(new_params):
        return False
    back = dict(zip(new_params, old_params, strict=True))
    for node in ast.walk(new_tree):
        if isinstance(node, ast.Name) and node.id in back:
            node.id = back[node.id]
        elif isinstance(node, ast.arg) and node.arg in back:
            node.arg = back[node.arg]
    for fn in (old_fn, new_fn):
        body = fn.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            if isinstance(body[0].value.value, str):
                fn.body = body[1:] or [ast.Pass()]
    try:
        return ast.dump(old_tree) == ast.dump(new_tree)
    except RecursionError:
        return False
