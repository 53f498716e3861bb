"""Maturity: the success posterior of a skill and the stage it earns (Fitts & Posner).

Every call of a skill is a row in the ledger (`skillbank.ledger`). With ``s`` successes and
``f`` failures, the skill's success rate has the posterior ``Beta(1 + s, 1 + f)`` (a uniform
prior). Two numbers of it decide the stage:

- the posterior mean, ``(1 + s) / (2 + s + f)``;
- the lower bound, its 5% quantile: the success rate is at least this with 95% belief. It
  is computed here, without scipy: the regularized incomplete beta function by its continued
  fraction, inverted by bisection.

`decide_stage` is the rule, a pure function of the current stage, the counts and the recorded
cases (``calls = s + f``)::

    cognitive   -> associative  cases >= min_cases_associative, unless the ledger already says
                                the skill fails: calls >= cognitive_min_calls and
                                mean < cognitive_promote
    associative -> cognitive    calls >= cognitive_min_calls and mean < cognitive_demote
    associative -> autonomous   calls >= autonomous_min_calls and lower bound >= autonomous_promote
    autonomous  -> associative  f >= 1 and (lower bound < autonomous_demote
                                            or mean < autonomous_demote)

The rules are applied until the stage stops changing (at most two steps, e.g. autonomous ->
associative -> cognitive for a skill that broke), so the result is a fixed point: deciding
again on the same counts changes nothing. Each demote threshold is strictly below its promote
threshold (`skillbank.config.Config` checks it): between them lies a hysteresis band where a
skill keeps the stage it has, so a success and a failure around a threshold do not flip it back
and forth. Two choices worth knowing:

- Failures never block the first promotion to associative: cases alone decide it, as they
  always did, while the ledger has fewer than ``cognitive_min_calls`` rows. With that many, a
  skill that mostly fails (mean below ``cognitive_promote``) stays cognitive, otherwise learning
  a new case would undo the demotion that its failures earned.
- A skill with no recorded failure is never demoted from autonomous. The ledger is local and
  not committed, the stage is: on a fresh clone an autonomous skill has no rows, and its lower
  bound (0.05 for ``Beta(1, 1)``) says nothing about it. One failure is enough to let the
  lower bound decide.

Stage changes are applied by `skillbank.bank.SkillBank.update_stages` (one commit each), from
``skillbank stages``, ``skillbank stats --update`` and the end of `skillbank.agent.run`, never
after each call: a commit per call would be far too heavy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from skillbank.skill import STAGES, Stage

if TYPE_CHECKING:
    from skillbank.config import Config

__all__ = [
    "LOWER_QUANTILE",
    "SkillStats",
    "StageChange",
    "beta_quantile",
    "betainc",
    "decide_stage",
    "lower_bound",
    "p95",
    "posterior_mean",
]

#: The quantile of the posterior used as its lower bound.
LOWER_QUANTILE = 0.05

# --- the beta distribution ------------------------------------------------------------------


def _beta_cf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function ``I_x(a, b)``: the CDF of Beta(a, b) at x.

    Raises:
        ValueError: ``a`` or ``b`` is not positive, or ``x`` is outside [0, 1].
    """
    if not (a > 0 and b > 0):
        raise ValueError(f"a={a!r} and b={b!r} must be positive")
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x={x!r} must be in [0, 1]")
    if x in (0.0, 1.0):
        return x
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    # The continued fraction converges fast for x < (a + 1) / (a + b + 2); use the symmetry
    # I_x(a, b) = 1 - I_{1-x}(b, a) on the other side.
    if x < (a + 1.0) / (a + b + 2.0):
        return min(1.0, max(0.0, front * _beta_cf(a, b, x) / a))
    return min(1.0, max(0.0, 1.0 - front * _beta_cf(b, a, 1.0 - x) / b))


def beta_quantile(q: float, a: float, b: float) -> float:
    """The ``q`` quantile of Beta(a, b): the x with ``betainc(a, b, x) == q`` (bisection).

    Raises:
        ValueError: ``q`` is outside [0, 1], or ``a`` or ``b`` is not positive.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q={q!r} must be in [0, 1]")
    if not (a > 0 and b > 0):
        raise ValueError(f"a={a!r} and b={b!r} must be positive")
    if q in (0.0, 1.0):
        return q  # the ends of the support (the CDF rounds to them before x does)
    lo, hi = 0.0, 1.0
    for _ in range(100):  # 2**-100: far below float resolution
        mid = (lo + hi) / 2
        if mid in (lo, hi):
            break
        if betainc(a, b, mid) < q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def posterior_mean(successes: int, failures: int) -> float:
    """The mean of the success posterior Beta(1 + s, 1 + f)."""
    return (1 + successes) / (2 + successes + failures)


def lower_bound(successes: int, failures: int, q: float = LOWER_QUANTILE) -> float:
    """The ``q`` quantile (default 5%) of the success posterior Beta(1 + s, 1 + f)."""
    return beta_quantile(q, 1 + successes, 1 + failures)


# --- the stage rule -------------------------------------------------------------------------


def _step(stage: Stage, s: int, f: int, cases: int, config: Config) -> Stage:
    calls = s + f
    mean = posterior_mean(s, f)
    if stage == "cognitive":
        failing = calls >= config.cognitive_min_calls and mean < config.cognitive_promote
        if cases >= config.min_cases_associative and not failing:
            return "associative"
        return stage
    if stage == "associative":
        if calls >= config.cognitive_min_calls and mean < config.cognitive_demote:
            return "cognitive"
        if calls >= config.autonomous_min_calls and lower_bound(s, f) >= config.autonomous_promote:
            return "autonomous"
        return stage
    if f >= 1 and (lower_bound(s, f) < config.autonomous_demote or mean < config.autonomous_demote):
        return "associative"
    return stage


def decide_stage(current: str, successes: int, failures: int, cases: int, config: Config) -> Stage:
    """The stage a skill has earned, given its stage now, its ledger counts and its cases.

    The rule is in the module docstring. Pure: the same inputs always give the same stage,
    and deciding again from the result changes nothing.

    Raises:
        ValueError: an unknown stage or a negative count.
    """
    if current not in STAGES:
        raise ValueError(f"stage {current!r} is not one of {', '.join(STAGES)}")
    if min(successes, failures, cases) < 0:
        raise ValueError(
            f"counts must not be negative: successes={successes!r}, failures={failures!r}, "
            f"cases={cases!r}"
        )
    stage = STAGES[STAGES.index(current)]  # type: ignore[arg-type, unused-ignore]
    for _ in range(len(STAGES)):
        following = _step(stage, successes, failures, cases, config)
        if following == stage:
            break
        stage = following
    return stage


# --- reports --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StageChange:
    """A skill moved to another stage by `skillbank.bank.SkillBank.update_stages`."""

    #: The skill.
    skill_id: str
    #: Its version (unchanged: a stage change is not a code change).
    version: str
    #: The stage it had.
    old: str
    #: The stage it has now.
    new: str
    #: Successful calls in the ledger.
    successes: int
    #: Failed calls (and failed tasks charged to it) in the ledger.
    failures: int
    #: The posterior's 5% quantile.
    lower_bound: float
    #: The commit that recorded the change.
    commit: str

    def to_json(self) -> dict[str, Any]:
        """The change as JSON data."""
        return {
            "skill_id": self.skill_id,
            "version": self.version,
            "old": self.old,
            "new": self.new,
            "successes": self.successes,
            "failures": self.failures,
            "lower_bound": round(self.lower_bound, 4),
            "commit": self.commit,
        }


@dataclass(frozen=True)
class SkillStats:
    """How a skill has done, from the ledger, and the stage that earns it."""

    #: The skill.
    skill_id: str
    #: Its stage now (from SKILL.md; None for ledger rows of a skill no longer in the bank).
    stage: str | None
    #: The stage `decide_stage` would give it now (None when it is not in the bank).
    earned: str | None
    #: Ledger rows: calls and task outcomes charged to it.
    calls: int
    #: Rows that succeeded.
    successes: int
    #: Rows that failed.
    failures: int
    #: The posterior mean, Beta(1 + successes, 1 + failures).
    mean: float
    #: The posterior's 5% quantile.
    lower_bound: float
    #: Mean seconds per call (None without timed calls).
    mean_latency_s: float | None
    #: The 95th percentile of the call times (nearest rank; None without timed calls).
    p95_latency_s: float | None
    #: The most recent error recorded.
    last_error: str | None

    @property
    def success_rate(self) -> float | None:
        """successes / (successes + failures): the calls that judge the skill (a failure
        blamed on the caller's input is neither; None without such calls)."""
        judged = self.successes + self.failures
        return self.successes / judged if judged else None

    def to_json(self) -> dict[str, Any]:
        """The statistics as JSON data."""

        def r(value: float | None) -> float | None:
            return None if value is None else round(value, 6)

        return {
            "skill_id": self.skill_id,
            "stage": self.stage,
            "earned": self.earned,
            "calls": self.calls,
            "successes": self.successes,
            "failures": self.failures,
            "success_rate": r(self.success_rate),
            "mean": r(self.mean),
            "lower_bound": r(self.lower_bound),
            "mean_latency_s": r(self.mean_latency_s),
            "p95_latency_s": r(self.p95_latency_s),
            "last_error": self.last_error,
        }


def p95(values: list[float]) -> float | None:
    """The 95th percentile by nearest rank (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
