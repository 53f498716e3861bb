"""The LLM compiler, with the real ``openai`` client against a scripted server on loopback.

Every proposal goes through a real check: the libcst policy (`skillbank.validate`) and replay of
the bundled order_history trajectories in a real `sandbox.Sandbox`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import openai
import pytest

from sandbox import Sandbox
from skillbank.compiler.llm import (
    LLMCompiler,
    LLMReplyError,
    build_messages,
    parse_reply,
    replay_check,
)
from skillbank.config import Config, load_config
from skillbank.errors import CompileError, ConfigError
from skillbank.proving import prove
from skillbank.signature import read_signature
from skillbank.skill import SkillDraft, TestedSkill, ValidatedSkill
from skillbank.trajectory import Outcome, Step, ToolSpec, Trajectory
from skillbank.validate import validate
from tests.fake_openai import Delay, FakeOpenAI, HTTPError, Message, ToolCall

SKILL = "order_history"

GOOD = '''\
def order_history(email: str) -> dict:
    """List every order of the customer with this email address, newest first.

    Args:
        email: The customer's email address.
    """
    customer = tools.find_customer(email=email)
    return tools.list_orders(customer_id=customer["customer_id"])
'''

IMPORTS_OS = "import os\n\n" + GOOD

# Wrong data flow: the customer id of the first run, hard-coded.
HARD_CODED = GOOD.replace('customer["customer_id"]', '"C-1004"')


# --- fixtures and helpers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox() as sb:
        yield sb


@pytest.fixture
def check(sandbox: Sandbox):
    return replay_check(sandbox)


@pytest.fixture(scope="session")
def runs(example_trajectories: list[Trajectory]) -> list[Trajectory]:
    found = [t for t in example_trajectories if t.id.startswith("shop-order_history-")]
    assert len(found) == 6
    return found


@pytest.fixture(autouse=True)
def _no_openai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def client(fake_openai: FakeOpenAI) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=fake_openai.url, api_key="test", max_retries=0, timeout=10) as c:
        yield c


@pytest.fixture
def compiler(client: openai.OpenAI) -> LLMCompiler:
    return LLMCompiler(client, "fake-model")


def answer(source: str, runs: list[Trajectory]) -> str:
    """The JSON reply a good model gives: the source and each run's arguments."""
    cases = {t.id: {"email": t.steps[0].arguments["email"]} for t in runs}
    return json.dumps({"source": source, "cases": cases})


def user_text(server: FakeOpenAI, n: int) -> str:
    messages = server.messages(n)
    assert [m["role"] for m in messages] == ["system", "user"]
    return messages[1]["content"]


# --- proposals, repairs, giving up ----------------------------------------------------------


def test_a_correct_proposal_passes_on_the_first_attempt(
    fake_openai: FakeOpenAI, compiler: LLMCompiler, runs, check, sandbox
) -> None:
    fake_openai.add(answer(GOOD, runs))
    result = compiler.compile(SKILL, runs, check)

    assert result.error is None and result.attempts == 1
    assert result.transcript == ("attempt 1: passed validation and replay",)
    draft = result.draft
    assert draft is not None and draft.id == SKILL and draft.source == GOOD
    assert draft.tools == ("find_customer", "list_orders")
    assert sorted(draft.tool_specs) == ["find_customer", "list_orders"]
    assert (
        draft.description
        == "List every order of the customer with this email address, newest first."
    )
    assert [c.trajectory_id for c in draft.cases] == sorted(t.id for t in runs)
    first = draft.cases[0]
    assert first.args == {"email": "dmitri@example.com"}
    assert [c.tool for c in first.calls] == ["find_customer", "list_orders"]
    assert first.result == first.calls[-1].result
    assert "fake-model" in draft.notes[0]
    # The draft is exactly what the gates accept.
    validated = validate(draft)
    assert isinstance(validated, ValidatedSkill)
    proved = prove(validated, sandbox)
    assert isinstance(proved, TestedSkill) and proved.cases_passed == 6

    body = fake_openai.requests[0]
    assert body["model"] == "fake-model"
    assert body["temperature"] == 0.0
    assert body["response_format"] == {"type": "json_object"}
    system, user = body["messages"][0]["content"], body["messages"][1]["content"]
    assert "named exactly as the skill id" in system
    assert "collections, datetime, decimal, itertools, json, math, re, statistics" in system
    assert "eval" in system and "getattr" in system
    assert "Skill id (the function name): order_history" in user
    assert 'find_customer(email="dmitri@example.com") -> {"customer_id":"C-1004"' in user
    assert "- list_orders: " in user and '"enum":["pending","shipped"' in user
    assert "- place_order" not in user  # only the tools the runs used
    assert "REPAIR" not in user


def test_a_policy_violation_is_repaired_from_its_finding(
    fake_openai: FakeOpenAI, compiler: LLMCompiler, runs, check
) -> None:
    fake_openai.add(answer(IMPORTS_OS, runs), answer(GOOD, runs))
    result = compiler.compile(SKILL, runs, check)

    assert result.draft is not None and result.draft.source == GOOD
    assert result.attempts == 2
    assert result.transcript[0].startswith("attempt 1: validation failed with 1 finding(s):")
    assert "SB201" in result.transcript[0]
    repair = user_text(fake_openai, 1)
    assert "REPAIR. Your previous answer was rejected." in repair
    assert "```python\nimport os\n" in repair  # the previous source
    assert "<skill>:1:7: SB201 import of 'os' is not allowed" in repair
    assert "    import os\n           ^" in repair  # the line and a caret under column 7


def test_a_replay_failure_is_repaired_from_the_falsifying_run(
    fake_openai: FakeOpenAI, compiler: LLMCompiler, runs, check
) -> None:
    fake_openai.add(answer(HARD_CODED, runs), answer(GOOD, runs))
    result = compiler.compile(SKILL, runs, check)

    assert result.draft is not None and result.attempts == 2
    assert result.transcript[0].startswith("attempt 1: replay failed for 5 of 6 recorded run(s)")
    repair = user_text(fake_openai, 1)
    assert "replay failed for 5 of 6 recorded run(s):" in repair
    assert (
        '- run "shop-order_history-02" with arguments {"email":"carol@example.com"}: '
        'call 2: expected list_orders({"customer_id":"C-1003"}), '
        'got list_orders({"customer_id":"C-1004"})'
    ) in repair
    assert "- and 2 more run(s)" in repair
    assert 'return tools.list_orders(customer_id="C-1004")' in repair


def test_a_model_that_keeps_failing_stops_after_max_attempts(
    fake_openai: FakeOpenAI, client: openai.OpenAI, runs, check
) -> None:
    fake_openai.add(*[answer(IMPORTS_OS, runs)] * 3)
    result = LLMCompiler(client, "fake-model", max_attempts=3).compile(SKILL, runs, check)

    assert result.draft is None and result.attempts == 3
    assert len(result.transcript) == 3 and all("SB201" in line for line in result.transcript)
    assert result.error is not None
    assert result.error.startswith(
        "no proposal from 'fake-model' passed validation and replay in 3 attempt(s)"
    )
    assert len(fake_openai.requests) == 3 and fake_openai.pending == 0


# --- replies that are not (just) JSON -------------------------------------------------------


def test_a_reply_that_is_not_json_is_a_failed_attempt_with_format_feedback(
    fake_openai: FakeOpenAI, compiler: LLMCompiler, runs, check
) -> None:
    fake_openai.add("Sure! Here is the skill:\n\ndef order_history(email): ...", answer(GOOD, runs))
    result = compiler.compile(SKILL, runs, check)

    assert result.draft is not None and result.attempts == 2
    assert result.transcript[0] == (
        "attempt 1: the reply was not the JSON object asked for: the reply holds no JSON object"
    )
    repair = user_text(fake_openai, 1)
    assert "Your reply could not be used: the reply holds no JSON object." in repair
    assert 'exactly of this form: {"source": "<the whole Python module>", "cases"' in repair


@pytest.mark.parametrize(
    "wrap",
    [
        pytest.param(lambda j: f"Here you go:\n```json\n{j}\n```\nGood luck!", id="fenced-json"),
        pytest.param(lambda j: f"```\n{j}\n```", id="fenced-plain"),
        pytest.param(lambda j: f"<think>{{not json}}</think>\nAnswer: {j} -- done", id="prose"),
    ],
)
def test_json_inside_fences_or_prose_is_read(
    fake_openai: FakeOpenAI, compiler: LLMCompiler, runs, check, wrap
) -> None:
    fake_openai.add(wrap(answer(GOOD, runs)))
    result = compiler.compile(SKILL, runs, check)
    assert result.draft is not None and result.attempts == 1


def test_a_source_fenced_inside_the_json_string_is_unwrapped(runs) -> None:
    ids = [t.id for t in runs]
    proposal = parse_reply(answer(f"```python\n{GOOD}```", runs), ids)
    assert proposal.source == GOOD
    assert proposal.case_args["shop-order_history-01"] == {"email": "dmitri@example.com"}


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ('{"cases": {}}', 'no "source" string'),
        ('{"source": "def f(): pass"}', 'no "cases" object'),
        (
            '{"source": "def f(): pass", "cases": {"a": {}}}',
            '"cases" lacks an object of arguments for run(s) "b"; give one for every run id (2',
        ),
        ("[1, 2]", "holds no JSON object"),
    ],
)
def test_replies_missing_parts_say_what_is_missing(reply: str, message: str) -> None:
    with pytest.raises(LLMReplyError, match=None) as info:
        parse_reply(reply, ["a", "b"])
    assert message in str(info.value)
    assert info.value.reply == reply


# --- API errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "shown"),
    [
        (HTTPError(500, "the model crashed"), "answered HTTP 500: the model crashed"),
        (
            HTTPError(429, "Rate limit reached", code="rate_limit_exceeded"),
            "answered HTTP 429: Rate limit reached; the endpoint is rate limiting",
        ),
    ],
    ids=["500", "429"],
)
def test_server_errors_cost_an_attempt_and_the_next_one_proceeds(
    fake_openai: FakeOpenAI, compiler: LLMCompiler, runs, check, error, shown
) -> None:
    fake_openai.add(error, answer(GOOD, runs))
    result = compiler.compile(SKILL, runs, check)

    assert result.draft is not None and result.attempts == 2
    assert result.transcript[0].startswith("attempt 1: the request failed: http://127.0.0.1:")
    assert shown in result.transcript[0]
    # The repeated request is the same request: no feedback was invented.
    assert fake_openai.requests[0] == fake_openai.requests[1]


def test_errors_another_attempt_cannot_fix_stop_at_once(
    fake_openai: FakeOpenAI, compiler: LLMCompiler, runs, check
) -> None:
    fake_openai.add(HTTPError(401, "Incorrect API key provided"))
    result = compiler.compile(SKILL, runs, check)

    assert result.draft is None and result.attempts == 1
    assert result.error is not None
    assert "answered HTTP 401: Incorrect API key provided; check OPENAI_API_KEY" in result.error


def test_a_timeout_costs_an_attempt(fake_openai: FakeOpenAI, runs, check) -> None:
    fake_openai.add(Delay(0.6, answer(GOOD, runs)), answer(GOOD, runs))
    with openai.OpenAI(
        base_url=fake_openai.url, api_key="test", max_retries=0, timeout=0.15
    ) as client:
        result = LLMCompiler(client, "fake-model").compile(SKILL, runs, check)
    assert result.draft is not None and result.attempts == 2
    assert "timed out" in result.transcript[0]


def test_a_server_without_json_mode_is_asked_again_without_it(
    fake_openai: FakeOpenAI, compiler: LLMCompiler, runs, check
) -> None:
    def picky(body):
        if "response_format" in body:
            return HTTPError(400, "response_format is not supported by this server")
        return answer(GOOD, runs)

    fake_openai.add(picky, picky)
    result = compiler.compile(SKILL, runs, check)

    assert result.draft is not None and result.attempts == 1
    first, second = fake_openai.requests
    assert "response_format" in first and "temperature" in first
    assert "response_format" not in second and "temperature" not in second
    assert first["messages"] == second["messages"]


def test_the_model_output_is_never_trusted_without_check(
    fake_openai: FakeOpenAI, compiler: LLMCompiler, runs
) -> None:
    seen: list[SkillDraft] = []

    def refuse(draft: SkillDraft) -> str:
        seen.append(draft)
        return "replay failed: call 1 differs"

    fake_openai.add(answer(GOOD, runs))
    result = LLMCompiler(compiler.client, "fake-model", max_attempts=1).compile(SKILL, runs, refuse)
    assert result.draft is None and [d.source for d in seen] == [GOOD]


def test_misuse_raises_before_any_request(
    fake_openai: FakeOpenAI, compiler: LLMCompiler, runs, check
) -> None:
    failed = replace(runs[0], outcome=Outcome(False, "gave up"))
    with pytest.raises(CompileError, match="must match"):
        compiler.compile("Order-History", runs, check)
    with pytest.raises(CompileError, match="no trajectories"):
        compiler.compile(SKILL, [], check)
    with pytest.raises(CompileError, match="did not succeed"):
        compiler.compile(SKILL, [failed], check)
    with pytest.raises(CompileError, match="given twice"):
        compiler.compile(SKILL, [runs[0], runs[0]], check)
    assert fake_openai.requests == []


# --- prompts --------------------------------------------------------------------------------


def test_prompts_are_deterministic(fake_openai: FakeOpenAI, compiler: LLMCompiler, runs, check):
    fake_openai.add(answer(HARD_CODED, runs), answer(GOOD, runs))
    fake_openai.add(answer(HARD_CODED, runs), answer(GOOD, runs))
    compiler.compile(SKILL, runs, check)
    compiler.compile(SKILL, list(reversed(runs)), check)  # arrival order does not matter

    first, repair, again, repair_again = fake_openai.requests
    assert first == again and repair == repair_again
    assert first != repair


def test_long_results_are_cut_and_arguments_kept_whole() -> None:
    long = {"text": "x" * 1000}
    run = Trajectory(
        id="r1",
        task="Summarise the document   about\ncats",
        tools=(ToolSpec("fetch", "Fetch a document.", {"type": "object"}),),
        steps=(
            Step("fetch", {"doc_id": "D-1", "note": "n" * 400}, error="boom"),
            Step("fetch", {"doc_id": "D-1", "note": "n" * 400}, long),
        ),
        outcome=Outcome(True),
    )
    user = build_messages("summarise", [run])[1]["content"]
    assert 'Run "r1"\nTask: Summarise the document about cats\n' in user
    assert f'1. fetch(doc_id="D-1", note="{"n" * 400}") -> {{"text":"{"x" * 290}' in user
    assert "... (711 more characters)" in user
    assert "2. fetch" not in user  # the failed call is not part of the procedure
    assert '- fetch: Fetch a document.\n  parameters (JSON Schema): {"type":"object"}' in user


# --- improving docs -------------------------------------------------------------------------

RENAMED = '''\
def order_history(customer_email: str) -> dict:
    """Show a customer's order history (all orders, newest first).

    Use it when someone asks which orders a customer has placed.

    Args:
        customer_email: The email address the customer registered with.
    """
    customer = tools.find_customer(email=customer_email)
    return tools.list_orders(customer_id=customer["customer_id"])
'''


def test_improve_docs_accepts_only_docstring_and_parameter_renames(
    fake_openai: FakeOpenAI, compiler: LLMCompiler, runs, check, sandbox
) -> None:
    fake_openai.add(answer(GOOD, runs), json.dumps({"source": RENAMED}))
    draft = compiler.compile(SKILL, runs, check).draft
    assert draft is not None
    improved = compiler.improve_docs(draft.source, runs)
    assert improved == RENAMED
    user = user_text(fake_openai, 1)
    assert "```python\ndef order_history(email: str) -> dict:" in user
    assert "- Show the order history for dmitri@example.com" in user

    # The caller renames case arguments by position, then re-validates and re-proves.
    old = [p.name for p in read_signature(draft.source).params]
    new = [p.name for p in read_signature(improved).params]
    assert (old, new) == (["email"], ["customer_email"])
    cases = tuple(
        replace(c, args={n: c.args[o] for o, n in zip(old, new, strict=True)}) for c in draft.cases
    )
    validated = validate(replace(draft, source=improved, cases=cases))
    assert isinstance(validated, ValidatedSkill)
    assert isinstance(prove(validated, sandbox), TestedSkill)


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(json.dumps({"source": HARD_CODED}), id="code-changed"),
        pytest.param(
            json.dumps({"source": GOOD.replace("email: str", "email: str, limit: int = 5")}),
            id="parameter-added",
        ),
        pytest.param(
            json.dumps({"source": RENAMED.replace("customer_email", "customer")}),
            id="rename-collides",
        ),
        pytest.param(json.dumps({"source": GOOD}), id="unchanged"),
        pytest.param(
            json.dumps(
                {"source": GOOD[: GOOD.index('    """')] + GOOD[GOOD.index("    customer") :]}
            ),
            id="docstring-removed",
        ),
        pytest.param("no idea", id="not-json"),
        pytest.param(HTTPError(500), id="server-error"),
    ],
)
def test_improve_docs_returns_none_on_anything_else(
    fake_openai: FakeOpenAI, compiler: LLMCompiler, runs, reply
) -> None:
    fake_openai.add(reply)
    assert compiler.improve_docs(GOOD, runs) is None


# --- configuration --------------------------------------------------------------------------


def test_from_config_is_none_without_a_model() -> None:
    assert LLMCompiler.from_config(Config()) is None
    assert LLMCompiler.from_config(Config(llm_model="  ")) is None


def test_from_config_talks_to_the_configured_endpoint(fake_openai: FakeOpenAI, runs, check) -> None:
    config = Config(llm_model="fake-model", llm_base_url=fake_openai.url, llm_max_attempts=2)
    compiler = LLMCompiler.from_config(config)
    assert compiler is not None
    try:
        assert compiler.max_attempts == 2
        fake_openai.add(answer(IMPORTS_OS, runs), answer(IMPORTS_OS, runs))
        result = compiler.compile(SKILL, runs, check)
    finally:
        compiler.close()
    assert result.attempts == 2 and result.draft is None
    # No OPENAI_API_KEY: a local endpoint gets a placeholder key.
    assert fake_openai.log[0].headers["authorization"] == "Bearer unused"


def test_from_config_uses_openai_env_vars(
    fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, runs, check
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    compiler = LLMCompiler.from_config(Config(llm_model="fake-model"))
    assert compiler is not None
    try:
        fake_openai.add(answer(GOOD, runs))
        assert compiler.compile(SKILL, runs, check).draft is not None
    finally:
        compiler.close()
    assert fake_openai.log[0].headers["authorization"] == "Bearer sk-from-env"


def test_from_config_without_key_or_endpoint_says_what_to_set() -> None:
    with pytest.raises(ConfigError, match="OPENAI_API_KEY is not"):
        LLMCompiler.from_config(Config(llm_model="gpt-4.1-mini"))


def test_llm_settings_load_from_pyproject_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.skillbank]\nllm_model = "qwen2.5-coder"\nllm_base_url = "http://127.0.0.1:8080/v1"\n'
    )
    monkeypatch.setenv("SKILLBANK_LLM_MAX_ATTEMPTS", "5")
    config = load_config(tmp_path)
    assert (config.llm_model, config.llm_base_url, config.llm_max_attempts) == (
        "qwen2.5-coder",
        "http://127.0.0.1:8080/v1",
        5,
    )
    monkeypatch.setenv("SKILLBANK_LLM_MODEL", "other")
    assert load_config(tmp_path).llm_model == "other"
    assert Config().llm_model == "" and Config().llm_max_attempts == 3


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"llm_max_attempts": 0}, "llm_max_attempts=0 must be at least 1"),
        ({"llm_base_url": "127.0.0.1:8080"}, "must be an http:// or https:// URL"),
    ],
)
def test_bad_llm_settings_are_refused(values, message) -> None:
    with pytest.raises(ConfigError, match=message):
        Config(**values)


# --- the fake server itself (it will script agent loops too) --------------------------------


def test_fake_server_scripts_tool_calls_streams_and_lists_models(
    fake_openai: FakeOpenAI, client: openai.OpenAI
) -> None:
    fake_openai.add(
        [ToolCall("find_customer", {"email": "a@b.c"}), {"name": "list_orders", "arguments": {}}],
        Message("thinking", [ToolCall("get_order", {"order_id": "O-1"}, id="own-id")]),
        "streamed text",
    )
    ask = [{"role": "user", "content": "hi"}]
    first = client.chat.completions.create(model="m", messages=ask)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls = choice.message.tool_calls or []
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("call_1", "find_customer", {"email": "a@b.c"}),
        ("call_2", "list_orders", {}),
    ]
    second = client.chat.completions.create(model="m", messages=ask).choices[0].message
    assert second.content == "thinking" and second.tool_calls[0].id == "own-id"
    stream = client.chat.completions.create(model="m", messages=ask, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "streamed text"
    assert [m.id for m in client.models.list()] == ["fake-model"]
    assert len(fake_openai.requests) == 3 and fake_openai.requests[2]["stream"] is True


def test_fake_server_notes_a_request_with_no_reply_left() -> None:
    with (
        FakeOpenAI() as server,
        openai.OpenAI(base_url=server.url, api_key="t", max_retries=0, timeout=10) as client,
    ):
        with pytest.raises(openai.InternalServerError, match="no reply left"):
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "?"}])
    assert server.problems == ["request 1 arrived but the script has no reply left"]


def test_learn_lets_the_llm_improve_docs_and_keeps_them_checked(
    fake_openai: FakeOpenAI, example_trajectories: list[Trajectory], tmp_path: Path
) -> None:
    from skillbank import SkillBank

    history = [t for t in example_trajectories if t.id.startswith("shop-order_history")]
    config = Config(llm_model="fake-model", llm_base_url=fake_openai.url, llm_docs=True)
    with SkillBank.init(tmp_path / "b", config=config) as bank:
        plain = SkillBank.init(tmp_path / "plain")
        deterministic = plain.learn(history[:4]).added[0]
        source = plain.get(deterministic).source
        plain.close()
        better = (
            source.replace("(email: str)", "(customer_email: str)")
            .replace("(email=email)", "(email=customer_email)")
            .replace("        email: ", "        customer_email: ")
            .replace(
                '"""Show the order history for the given email.',
                '"""List every order of one customer.',
            )
        )
        assert better != source
        fake_openai.add(json.dumps({"source": better}))
        report = bank.learn(history[:4])
        skill = bank.get(report.added[0])
        assert skill.source == better
        assert skill.description == "List every order of one customer."
        assert set(skill.cases[0].args) == {"customer_email"}
        # A later run joins the reviewed skill: its code is kept, the argument renamed.
        later = bank.learn(history[4:])
        assert later.updated == [skill.id]
        assert bank.get(skill.id).source == better
        assert all(set(c.args) == {"customer_email"} for c in bank.get(skill.id).cases)
    assert len(fake_openai.requests) == 1
