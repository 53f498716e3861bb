"""Maturity: the beta posterior, the stage rule and its hysteresis, stage commits, reflexes."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from skillbank.bank import SkillBank
from skillbank.cli import cli
from skillbank.config import Config
from skillbank.errors import ConfigError
from skillbank.examples.shop import Shop
from skillbank.library import git
from skillbank.maturity import (
    beta_quantile,
    betainc,
    decide_stage,
    lower_bound,
    p95,
    posterior_mean,
)
from skillbank.trajectory import load_trajectories
from tests.conftest import EXAMPLE_TRAJECTORIES

HISTORY = "list_orders_by_email"
ORDER = "place_order_by_email_and_query"
CONFIG = Config()


# --- the beta distribution ------------------------------------------------------------------


def _cdf_by_integration(a: float, b: float, x: float, n: int = 20_000) -> float:
    """I_x(a, b) by Simpson's rule on the density (a, b >= 1, so the density is bounded)."""
    log_norm = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)

    def pdf(t: float) -> float:
        if t <= 0.0 or t >= 1.0:
            return math.exp(log_norm) if (t <= 0 and a == 1) or (t >= 1 and b == 1) else 0.0
        return math.exp(log_norm + (a - 1) * math.log(t) + (b - 1) * math.log1p(-t))

    h = x / n
    total = pdf(0.0) + pdf(x)
    total += sum((4 if i % 2 else 2) * pdf(i * h) for i in range(1, n))
    return total * h / 3


@pytest.mark.parametrize("q", [0.0, 0.01, 0.05, 0.3, 0.5, 0.9, 0.999, 1.0])
def test_closed_form_quantiles(q: float) -> None:
    assert beta_quantile(q, 1, 1) == pytest.approx(q, abs=1e-12)
    assert beta_quantile(q, 2, 1) == pytest.approx(math.sqrt(q), abs=1e-12)
    assert beta_quantile(q, 1, 2) == pytest.approx(1 - math.sqrt(1 - q), abs=1e-12)
    # Beta(n + 1, 1): x ** (n + 1), the posterior after n successes and no failure.
    assert lower_bound(27, 0, q) == pytest.approx(q ** (1 / 28), abs=1e-12)


@pytest.mark.parametrize(
    ("a", "b", "x"),
    [(5, 3, 0.4), (5, 3, 0.8), (21, 2, 0.9), (2, 9, 0.1), (30, 4, 0.85), (2.5, 4.5, 0.3)],
)
def test_incomplete_beta_matches_numeric_integration(a: float, b: float, x: float) -> None:
    assert betainc(a, b, x) == pytest.approx(_cdf_by_integration(a, b, x), abs=1e-9)


def test_reference_lower_bounds() -> None:
    # 5% quantiles, each checked by integrating the density up to it.
    for s, f in [(20, 0), (25, 1), (40, 3), (3, 3), (0, 10)]:
        bound = lower_bound(s, f)
        assert _cdf_by_integration(1 + s, 1 + f, bound) == pytest.approx(0.05, abs=1e-8)
        assert bound < posterior_mean(s, f)


@given(
    st.floats(0.0, 1.0),
    st.floats(0.5, 200.0),
    st.floats(0.5, 200.0),
)
def test_quantile_inverts_the_cdf(q: float, a: float, b: float) -> None:
    x = beta_quantile(q, a, b)
    assert 0.0 <= x <= 1.0
    assert betainc(a, b, x) == pytest.approx(q, abs=1e-9)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="must be in"):
        beta_quantile(1.5, 1, 1)
    with pytest.raises(ValueError, match="positive"):
        betainc(0, 1, 0.5)
    with pytest.raises(ValueError, match="not one of"):
        decide_stage("expert", 1, 1, 1, CONFIG)
    with pytest.raises(ValueError, match="negative"):
        decide_stage("cognitive", -1, 0, 1, CONFIG)


def test_p95_is_the_nearest_rank() -> None:
    assert p95([]) is None
    assert p95([3.0]) == 3.0
    assert p95([float(i) for i in range(1, 101)]) == 95.0


# --- the stage rule -------------------------------------------------------------------------


def test_the_rule_on_hand_picked_counts() -> None:
    c = CONFIG
    assert decide_stage("cognitive", 0, 0, 1, c) == "cognitive"  # too few cases
    assert decide_stage("cognitive", 0, 0, 2, c) == "associative"
    assert decide_stage("cognitive", 0, 3, 2, c) == "associative"  # failures don't block...
    assert decide_stage("cognitive", 1, 4, 2, c) == "cognitive"  # ...until there are enough
    assert decide_stage("associative", 27, 0, 2, c) == "associative"  # lower bound 0.898
    assert decide_stage("associative", 28, 0, 2, c) == "autonomous"  # lower bound 0.902
    assert decide_stage("cognitive", 28, 0, 2, c) == "autonomous"  # two steps at once
    assert decide_stage("associative", 1, 4, 2, c) == "cognitive"
    assert decide_stage("autonomous", 0, 0, 2, c) == "autonomous"  # no rows: a fresh clone
    assert decide_stage("autonomous", 3, 0, 2, c) == "autonomous"  # successes never demote
    assert decide_stage("autonomous", 40, 3, 2, c) == "autonomous"  # in the band
    assert decide_stage("associative", 40, 3, 2, c) == "associative"  # in the band
    assert decide_stage("autonomous", 40, 8, 2, c) == "associative"
    assert decide_stage("autonomous", 2, 8, 2, c) == "cognitive"  # two steps down


def test_thresholds_are_checked() -> None:
    with pytest.raises(ConfigError, match="autonomous_demote=0.9 must be below"):
        Config(autonomous_demote=0.9, autonomous_promote=0.9)
    with pytest.raises(ConfigError, match="cognitive_demote"):
        Config(cognitive_demote=0.7)
    with pytest.raises(ConfigError, match="from 0 to 1"):
        Config(autonomous_promote=1.5)
    with pytest.raises(ConfigError, match="autonomous_min_calls"):
        Config(autonomous_min_calls=0)


def _band(s: int, f: int, c: Config) -> bool:
    """True when a skill with these counts may be associative or autonomous (the band)."""
    bound, mean = lower_bound(s, f), posterior_mean(s, f)
    return c.autonomous_demote <= bound < c.autonomous_promote and mean >= c.cognitive_promote


@given(
    outcomes=st.lists(st.booleans(), max_size=80),
    cases=st.integers(0, 4),
    start=st.sampled_from(["cognitive", "associative", "autonomous"]),
)
def test_stage_follows_the_posterior_with_hysteresis(
    outcomes: list[bool], cases: int, start: str
) -> None:
    c = CONFIG
    stage, s, f = start, 0, 0
    for ok in outcomes:
        s, f = s + ok, f + (not ok)
        before, stage = stage, decide_stage(stage, s, f, cases, c)
        bound, mean, calls = lower_bound(s, f), posterior_mean(s, f), s + f
        # A fixed point: deciding again on the same counts changes nothing.
        assert decide_stage(stage, s, f, cases, c) == stage
        # Never autonomous once a failure lets the posterior speak and it says no.
        if stage == "autonomous" and f:
            assert bound >= c.autonomous_demote and mean >= c.autonomous_demote
        # A stage only changes when its threshold is crossed.
        if stage == "autonomous" and before != "autonomous":
            assert calls >= c.autonomous_min_calls and bound >= c.autonomous_promote
        if before == "autonomous" and stage != "autonomous":
            assert f and (bound < c.autonomous_demote or mean < c.autonomous_demote)
        if before == "cognitive" and stage != "cognitive":
            assert cases >= c.min_cases_associative
            assert calls < c.cognitive_min_calls or mean >= c.cognitive_promote
        if stage == "cognitive" and before != "cognitive":
            assert calls >= c.cognitive_min_calls and mean < c.cognitive_demote
        # Inside the band, neither neighbour moves.
        if _band(s, f, c) and before in ("associative", "autonomous"):
            assert stage == before


@given(
    st.integers(0, 300),
    st.integers(0, 40),
    st.sampled_from(["associative", "autonomous"]),
    st.booleans(),
)
def test_no_flip_flop_on_alternating_outcomes_inside_the_band(
    s: int, f: int, stage: str, success_first: bool
) -> None:
    c = CONFIG
    if not (_band(s, f, c) and _band(s + 1, f, c) and _band(s, f + 1, c)):
        return
    for ok in [success_first, not success_first] * 3:
        s, f = s + ok, f + (not ok)
        if not _band(s, f, c):
            return
        assert decide_stage(stage, s, f, 2, c) == stage


@given(st.integers(0, 60), st.integers(0, 60), st.integers(0, 5))
def test_a_success_never_demotes_an_autonomous_skill(s: int, f: int, cases: int) -> None:
    if decide_stage("autonomous", s, f, cases, CONFIG) == "autonomous":
        assert decide_stage("autonomous", s + 1, f, cases, CONFIG) == "autonomous"


# --- stage commits on a real bank -----------------------------------------------------------


@pytest.fixture(autouse=True)
def _commit_on_the_checked_out_branch(monkeypatch: pytest.MonkeyPatch) -> None:
    # These tests are about what each command changes, so its commits go where the working
    # tree shows them; where a commit goes (review branches) is tested in test_branches.py.
    monkeypatch.setenv("SKILLBANK_BRANCH", "current")


@pytest.fixture
def bank(tmp_path: Path) -> Iterator[SkillBank]:
    with SkillBank.init(tmp_path / "bank") as b:
        b.learn(load_trajectories(EXAMPLE_TRAJECTORIES), branch="current")
        yield b


@pytest.fixture
def shop(tmp_path: Path) -> Shop:
    return Shop.create(tmp_path / "shop.sqlite")


def _stage_in_file(bank: SkillBank, skill_id: str) -> str:
    text = (bank.library.dir / skill_id / "SKILL.md").read_text()
    (line,) = [ln for ln in text.splitlines() if ln.strip().startswith("stage:")]
    return line.split(":", 1)[1].strip()


def _last_commit(bank: SkillBank) -> tuple[str, str]:
    out = git(bank.root, "log", "-1", "--format=%H%n%B").stdout
    sha, _, message = out.partition("\n")
    return sha, message.strip()


def test_update_stages_commits_each_change_with_its_numbers(bank: SkillBank) -> None:
    assert bank.get(HISTORY).stage == "associative"
    version = str(bank.get(HISTORY).version)  # the ledger keeps the text "1.0.0"
    for _ in range(30):
        bank.ledger.record(HISTORY, ok=True, version=version)
    assert bank.update_stages([ORDER]) == []  # nothing recorded for it: nothing to change

    (change,) = bank.update_stages()
    assert (change.skill_id, change.old, change.new) == (HISTORY, "associative", "autonomous")
    assert (change.successes, change.failures, change.version) == (30, 0, version)
    sha, message = _last_commit(bank)
    assert change.commit == sha
    assert message.splitlines()[0] == (
        f"skillbank stage: {HISTORY} associative -> autonomous (30/0, lower bound 0.91)"
    )
    assert _stage_in_file(bank, HISTORY) == "autonomous"
    assert str(bank.get(HISTORY).version) == version  # same code, same version
    assert git(bank.root, "status", "--porcelain").stdout == ""
    assert bank.update_stages() == []  # a fixed point: no second commit

    for _ in range(10):
        bank.ledger.record(HISTORY, ok=False, version=version, error="boom")
    (change,) = bank.update_stages([HISTORY])
    assert (change.old, change.new) == ("autonomous", "associative")
    assert _last_commit(bank)[1].startswith(
        f"skillbank stage: {HISTORY} autonomous -> associative (30/10, lower bound "
    )
    assert _stage_in_file(bank, HISTORY) == "associative"


def test_a_dirty_skill_folder_is_not_committed_over(bank: SkillBank) -> None:
    for _ in range(30):
        bank.ledger.record(HISTORY, ok=True)
    skill_md = bank.library.dir / HISTORY / "SKILL.md"
    skill_md.write_text(skill_md.read_text() + "\nmy note\n")
    with pytest.raises(Exception, match="uncommitted changes"):
        bank.update_stages([HISTORY])
    assert skill_md.read_text().endswith("my note\n")


def test_reliable_skill_is_promoted_and_broken_one_demoted_through_real_runs(
    bank: SkillBank, shop: Shop
) -> None:
    tools = shop.tools()
    emails = ["bob@example.com", "carol@example.com", "dmitri@example.com"]
    for i in range(30):  # 28 straight successes lift the lower bound over 0.9
        result = bank.run(HISTORY, {"email": emails[i % 3]}, tools, caller="test")
        assert result.ok, result.error
    for _ in range(5):
        result = bank.run(
            ORDER, {"email": "hiro@example.com", "query": "wall clock", "quantity": 999}, tools
        )
        assert not result.ok

    rows = bank.ledger.outcomes(ORDER)
    assert len(rows) == 5 and not any(r.ok for r in rows)
    assert rows[0].error and rows[0].error.startswith(f"{result.error_type}: ")
    assert rows[0].latency_s is not None and rows[0].version == str(bank.get(ORDER).version)
    assert {r.caller for r in bank.ledger.outcomes(HISTORY)} == {"test"}
    assert bank.ledger.counts()[HISTORY] == (30, 0)

    changes = {c.skill_id: (c.old, c.new) for c in bank.update_stages()}
    assert changes == {
        HISTORY: ("associative", "autonomous"),
        ORDER: ("associative", "cognitive"),
    }
    assert bank.get(HISTORY).stage == "autonomous" and bank.get(ORDER).stage == "cognitive"
    # A cognitive skill is no longer offered as a tool; the autonomous one still is.
    offered = {t["function"]["name"] for t in bank.tool_specs()}
    assert HISTORY in offered and ORDER not in offered


# --- reflexes -------------------------------------------------------------------------------


def test_reflex_runs_the_autonomous_skill_for_a_matching_task(bank: SkillBank, shop: Shop) -> None:
    tools = shop.tools()
    task = "Show the order history for bob@example.com"
    assert bank.reflex(task, tools) is None  # associative yet
    assert bank.plan_reflex(task).rule == "not_autonomous"
    for _ in range(30):
        bank.ledger.record(HISTORY, ok=True)
    bank.update_stages()

    result = bank.reflex(task, tools)  # the email is read off the task
    assert result is not None and result.ok and result.skill_id == HISTORY
    row = bank.ledger.outcomes(HISTORY)[-1]
    assert row.caller == "reflex" and row.args == {"email": "bob@example.com"}

    assert bank.reflex("What will the weather be in Lisbon tomorrow?", tools) is None
    assert bank.reflex(task, tools, args={"mail": "bob@example.com"}) is None  # wrong arguments
    assert bank.reflex(task, {}) is None  # tools missing
    # Given arguments win over the ones read.
    given = bank.reflex(task, tools, args={"email": "carol@example.com"})
    assert given is not None and bank.ledger.outcomes(HISTORY)[-1].args == {
        "email": "carol@example.com"
    }
    # A task for another (not autonomous) skill does not trigger the reflex.
    order = "Order 2 x 'wall clock' for hiro@example.com"
    assert bank.reflex(order, tools) is None
    # Nothing runs without a model when the task says more, or the opposite, or too little.
    for near_miss in (
        "Do not show the order history for bob@example.com",
        "Show the refund history for bob@example.com",
        "Show the order history for bob@example.com, then cancel every pending order",
        "history",
    ):
        assert bank.reflex(near_miss, tools) is None, near_miss


# --- commands -------------------------------------------------------------------------------


def test_stats_and_stages_commands(bank: SkillBank, shop: Shop) -> None:
    for _ in range(30):
        bank.run(HISTORY, {"email": "bob@example.com"}, shop.tools(), caller="cli")
    bank.ledger.record(ORDER, ok=False, error="ValueError: not enough stock", latency_s=0.25)
    runner = CliRunner()
    root = ["--root", str(bank.root)]

    out = runner.invoke(cli, ["stats", HISTORY, "--json", *root])
    assert out.exit_code == 0, out.output
    (row,) = json.loads(out.output)["skills"]
    assert row["skill_id"] == HISTORY and row["calls"] == 30 and row["successes"] == 30
    assert row["success_rate"] == 1.0 and row["failures"] == 0
    assert row["mean"] == pytest.approx(31 / 32, abs=1e-6)
    assert row["lower_bound"] == pytest.approx(lower_bound(30, 0), abs=1e-6)
    assert row["mean_latency_s"] > 0 and row["p95_latency_s"] > 0 and row["last_error"] is None
    assert (row["stage"], row["earned"]) == ("associative", "autonomous")

    out = runner.invoke(cli, ["stats", *root])
    assert out.exit_code == 0, out.output
    assert "(earns autonomous)" in out.output and "ms" in out.output
    assert f"{ORDER}: last error: ValueError: not enough stock" in out.output

    out = runner.invoke(cli, ["stats", "nope", *root])
    assert out.exit_code != 0 and "nope" in (out.output + str(out.exception))

    out = runner.invoke(cli, ["stages", "--json", *root])
    assert out.exit_code == 0, out.output
    assert [(c["skill_id"], c["new"]) for c in json.loads(out.output)] == [(HISTORY, "autonomous")]
    out = runner.invoke(cli, ["stats", "--update", *root])
    assert out.exit_code == 0 and "no stage changes" in out.output
    assert bank.get(HISTORY).stage == "autonomous"

    for name in ("stats", "stages"):
        assert "Example:" in (cli.commands[name].help or "")


def test_a_callers_bad_input_does_not_count_against_the_skill(bank: SkillBank, shop: Shop) -> None:
    tools = shop.tools()
    unknown = bank.run(HISTORY, {"email": "nobody@example.com"}, tools)
    assert not unknown.ok  # find_customer refused the email the caller gave
    assert bank.ledger.counts()[HISTORY] == (0, 0)
    assert [r.blame for r in bank.ledger.outcomes(HISTORY)] == ["caller"]
    # A reflex read the arguments off the task itself: its failure is the skill's.
    bank.run(HISTORY, {"email": "nobody@example.com"}, tools, caller="reflex")
    assert bank.ledger.counts()[HISTORY] == (0, 1)
    # A tool that refuses a value the skill computed (data flow) fails the skill too.
    order = next(s.id for s in bank.skills() if s.id == "place_order_by_email_and_query")
    args = {"email": "bob@example.com", "query": "lamp", "quantity": 10_000}
    assert not bank.run(order, args, tools).ok  # not enough stock for the sku it found
    assert bank.ledger.counts()[order] == (0, 1)


def test_a_question_never_runs_a_skill_that_changes_things(tmp_path: Path) -> None:
    runs = [t for t in load_trajectories(EXAMPLE_TRAJECTORIES) if "order_product" in t.id]
    with SkillBank.init(tmp_path / "orders") as bank:
        bank.learn(runs, branch="current")
        (skill,) = bank.skills()  # the only skill: nothing else can rank above it
        for _ in range(30):
            bank.ledger.record(skill.id, ok=True)
        bank.update_stages()
        shop = Shop.create(tmp_path / "shop.sqlite")
        args = {"email": "carol@example.com", "query": "lamp", "quantity": 5}
        asked = "Did we order 5 x lamp units for the customer carol@example.com?"
        before = shop.snapshot()
        assert bank.reflex(asked, shop.tools(), args=args) is None  # it only asks
        assert bank.plan_reflex(asked).skill_id is None
        assert shop.snapshot() == before
        told = "Order 5 x 'lamp' for carol@example.com"
        result = bank.reflex(told, shop.tools())
        assert result is not None and result.ok and result.skill_id == skill.id
