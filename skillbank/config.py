"""Configuration: one dataclass, from ``[tool.skillbank]`` in the bank's pyproject.toml, then
``SKILLBANK_*`` environment variables, then explicit overrides (command-line flags).

Every path derives from the bank root, so tests can point a whole bank at a temp dir.

How values are read, whatever the layer:

- A value is coerced by its field's type: ``bool``, ``int``, ``float``, ``str``, and
  ``tuple[str, ...]`` for lists. A list is a TOML array in ``[tool.skillbank]``
  (``query_tools = ["find_customer", "list_orders"]``) and comma-separated in an environment
  variable (``SKILLBANK_QUERY_TOOLS="find_customer, list_orders"``); items are stripped and empty
  ones dropped, so ``""`` is the empty list.
- A renamed or retired key (`_DEPRECATED_KEYS`) is still accepted, with a `DeprecationWarning`
  naming its replacement; a renamed key's value goes to the new key, unless the new key is set
  in the same layer, which wins (the warning says so). A later layer still overrides an earlier
  one, whichever name each used.
- A key that can hold a secret (`_SECRET_KEYS`: ``ledger_url`` with a password) is refused
  from pyproject.toml when it does: a committed file is no place for a password; the error
  says which ``SKILLBANK_<KEY>`` variable to use instead, and never repeats the secret.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from skillbank.errors import ConfigError

__all__ = [
    "EXECUTORS",
    "LEDGER_URL_SCHEMES",
    "Config",
    "default_config",
    "load_config",
    "redact_url",
]

#: The values of ``executor``.
EXECUTORS = ("local", "ray")
#: How a ``ledger_url`` may start.
LEDGER_URL_SCHEMES = ("postgresql://", "postgres://")


@dataclass(frozen=True)
class Config:
    """Settings of one skill bank."""

    #: Folder holding the skills, relative to the bank root.
    skills_dir: str = "skills"
    #: Folder for local, uncommitted state (usage ledger, locks), relative to the root.
    state_dir: str = ".skillbank"
    #: Wall-clock limit for one skill run, in seconds.
    timeout_s: float = 10.0
    #: Address-space limit of a sandbox worker, in MiB.
    memory_mb: int = 1024
    #: How sandbox calls are kept apart: ``"fresh"`` (every call in a new process forked from
    #: a warm template, so nothing of one call reaches another) or ``"reuse"`` (faster: a
    #: worker serves many calls and cleans up between them; for trusted skills only).
    sandbox_isolation: str = "fresh"
    #: Call a skill's host tools on the thread that runs the skill rather than on helper
    #: threads: for tools bound to that thread (an ``sqlite3`` connection made there, a
    #: library that is not thread-safe). The call's deadline then cannot cut a hanging tool
    #: short: the call returns when the tool does (`sandbox.Sandbox.run`'s ``inline_tools``).
    sandbox_inline_tools: bool = False
    #: Recorded cases a skill needs before it is offered as a callable tool (associative).
    min_cases_associative: int = 2
    #: The model the optional LLM compiler asks (``""``: no LLM; everything works without one).
    llm_model: str = ""
    #: An OpenAI-compatible endpoint, e.g. ``http://127.0.0.1:8080/v1`` (``""``: the
    #: ``OPENAI_BASE_URL`` environment variable, else the SDK's default). The key is always
    #: read from ``OPENAI_API_KEY``, never from configuration.
    llm_base_url: str = ""
    #: Proposals (first try plus repairs) the LLM compiler may make for one skill.
    llm_max_attempts: int = 3
    #: Let the LLM (when configured) rewrite a learned skill's docstring and parameter names;
    #: the result is re-validated and re-proved, and kept only if it passes.
    llm_docs: bool = False
    #: The current tool definitions the gate checks each skill's calls against: ``MODULE:ATTR``
    #: (a list of tool specs, or a mapping of name to spec) or a path to a ``.json`` file;
    #: ``""`` skips that check.
    tool_specs: str = ""
    #: Generated examples per skill for the gate's property check.
    prove_examples: int = 25
    #: Where every command that changes skills commits (learn, stages, rollback, deprecate,
    #: refine, dedup, drift, prune): ``"auto"`` (a new ``skillbank/<verb>-...`` review branch
    #: from HEAD, written without checking it out, unless the bank has no commit yet or the
    #: current branch is already a ``skillbank/`` one), ``"current"`` (the checked-out
    #: branch), or a branch name. Was ``learn_branch``.
    branch: str = "auto"
    #: Ledger calls an associative skill needs before it may become autonomous.
    autonomous_min_calls: int = 20
    #: Promote to autonomous when the success posterior's lower bound (5% quantile) reaches
    #: this (see `skillbank.maturity`).
    autonomous_promote: float = 0.9
    #: Demote from autonomous when the lower bound or the mean falls below this (strictly
    #: below `autonomous_promote`: the gap is the hysteresis band).
    autonomous_demote: float = 0.75
    #: Ledger calls before a poor success rate may demote an associative skill to cognitive.
    cognitive_min_calls: int = 5
    #: Demote from associative to cognitive when the posterior mean falls below this.
    cognitive_demote: float = 0.5
    #: A skill demoted to cognitive returns to associative only with a posterior mean of at
    #: least this (strictly above `cognitive_demote`).
    cognitive_promote: float = 0.6
    #: For a wording no case used, the share of a task's words (argument values aside) that
    #: must be among the skill's learned words for `SkillBank.reflex` to run it without the
    #: model (`skillbank.reflex`).
    reflex_min_relevance: float = 0.85
    #: How far the best-fitting skill must lead the second for `SkillBank.reflex` (a learned
    #: phrasing scores 1, an unseen wording at most 0.9).
    reflex_min_margin: float = 0.1
    #: Tools the bank's owner declares queries: they only read, so a skill may call them
    #: freely and repeat them. Declared effects come before the tools' own annotations and the
    #: name heuristic (`skillbank.compiler.effects`; the learn report and SKILL.md say which
    #: decided). A tool may not be in both lists.
    query_tools: tuple[str, ...] = ()
    #: Tools the bank's owner declares commands: they change state (an order placed, a mail
    #: sent). Unknown tools are treated as commands anyway; listing one makes it explicit.
    command_tools: tuple[str, ...] = ()
    #: Where the call ledger lives: ``""`` is the embedded SQLite file
    #: ``<state_dir>/ledger.sqlite``; ``postgresql://USER@HOST:PORT/DB`` a PostgreSQL database
    #: that every replica shares (no SQLite file is then created). A URL with a password
    #: belongs in ``SKILLBANK_LEDGER_URL``, never in pyproject.toml.
    ledger_url: str = ""
    #: What runs sandboxed calls: ``"local"`` (worker processes on this machine) or ``"ray"``
    #: (actors on a Ray cluster, each holding a local sandbox; ``pip install 'skillbank[ray]'``).
    executor: str = "local"
    #: The Ray cluster for ``executor = "ray"``: ``HOST:PORT`` of a running head (as ``ray
    #: start --head`` prints it), ``auto`` (the cluster this machine belongs to), or ``""``
    #: (start a private one-machine cluster in this process).
    ray_address: str = ""
    #: Ray actors to keep, each holding a warm sandbox (0: one per CPU of the cluster).
    ray_actors: int = 0
    #: Calls one Ray actor serves at once, each in its own worker process; further callers
    #: wait (at most ``actors * ray_calls_per_actor`` calls are in flight).
    ray_calls_per_actor: int = 2
    #: Seconds between two fetches of the bank's git remote by ``serve`` (0: no periodic
    #: fetch; the ``/sync`` webhook still works). Skills merged elsewhere appear without a
    #: restart.
    sync_interval_s: float = 0.0
    #: The git remote and branch a replica follows (``serve`` fetches it and fast-forwards the
    #: checked-out branch to it), as ``REMOTE/BRANCH``; ``""``: the checked-out branch's
    #: upstream.
    sync_from: str = ""
    #: This process's name among replicas sharing one remote: review branches it writes are
    #: named ``skillbank/<replica>/<verb>-...``, so learners on different replicas never
    #: write (or push) the same branch. ``""``: branches are not named by replica.
    replica: str = ""
    #: The one replica that applies stage changes (promotions and demotions from the shared
    #: ledger's counts are commits): with it set, a replica of another name refuses
    #: ``skillbank stages`` / ``stats --update`` and its agents skip the update, so replicas
    #: never all commit the same change. A process with no ``replica`` name (``skillbank
    #: stages`` run as a job) always may. ``""``: every process may (one machine).
    stages_updater: str = ""

    @property
    def applies_stages(self) -> bool:
        """Whether this process may commit stage changes (see `stages_updater`)."""
        return not (self.stages_updater and self.replica and self.replica != self.stages_updater)

    def __post_init__(self) -> None:
        for name in ("skills_dir", "state_dir"):
            value = getattr(self, name)
            if not value or Path(value).is_absolute() or ".." in Path(value).parts:
                raise ConfigError(
                    f"{name}={value!r} must be a relative folder inside the bank root"
                )
        if not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ConfigError(f"timeout_s={self.timeout_s!r} must be a positive, finite number")
        if self.memory_mb < 64:
            raise ConfigError(f"memory_mb={self.memory_mb!r} must be at least 64")
        if self.sandbox_isolation not in ("fresh", "reuse"):
            raise ConfigError(
                f"sandbox_isolation={self.sandbox_isolation!r} must be 'fresh' (a new process "
                "per call, the default) or 'reuse' (faster, for trusted skills only)"
            )
        if self.min_cases_associative < 1:
            raise ConfigError(
                f"min_cases_associative={self.min_cases_associative!r} must be at least 1"
            )
        if self.prove_examples < 0:
            raise ConfigError(f"prove_examples={self.prove_examples!r} must be 0 or more")
        if self.llm_max_attempts < 1:
            raise ConfigError(f"llm_max_attempts={self.llm_max_attempts!r} must be at least 1")
        for name in (
            "autonomous_promote",
            "autonomous_demote",
            "cognitive_demote",
            "cognitive_promote",
            "reflex_min_relevance",
            "reflex_min_margin",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name}={value!r} must be a number from 0 to 1")
        for low, high in (
            ("autonomous_demote", "autonomous_promote"),
            ("cognitive_demote", "cognitive_promote"),
        ):
            if not getattr(self, low) < getattr(self, high):
                raise ConfigError(
                    f"{low}={getattr(self, low)!r} must be below {high}={getattr(self, high)!r}, "
                    "or a skill could be promoted and demoted on the same statistics; lower "
                    f"{low} or raise {high}"
                )
        for name in ("autonomous_min_calls", "cognitive_min_calls"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)!r} must be at least 1")
        branch = self.branch
        if not branch or branch.startswith("-") or any(c.isspace() for c in branch):
            raise ConfigError(
                f"branch={branch!r} must be 'auto', 'current' or a git branch name "
                "such as 'skillbank/new-skills'"
            )
        if self.llm_base_url and not self.llm_base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"llm_base_url={self.llm_base_url!r} must be an http:// or https:// URL, "
                "e.g. 'http://127.0.0.1:8080/v1'; leave it empty to use OPENAI_BASE_URL"
            )
        for name in ("query_tools", "command_tools"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or not all(
                isinstance(t, str) and t and t == t.strip() for t in value
            ):
                raise ConfigError(
                    f"{name}={value!r} must be a tuple of tool names, e.g. ('find_customer',)"
                )
        both = sorted(set(self.query_tools) & set(self.command_tools))
        if both:
            raise ConfigError(
                f"{', '.join(map(repr, both))} {'is' if len(both) == 1 else 'are'} in both "
                "query_tools and command_tools; a tool either only reads (query) or changes "
                "state (command): remove it from one list"
            )
        if self.ledger_url and not self.ledger_url.startswith(LEDGER_URL_SCHEMES):
            raise ConfigError(
                f"ledger_url={redact_url(self.ledger_url)!r} must be a PostgreSQL URL, "
                "e.g. 'postgresql://skillbank@db.internal:5432/skillbank' (the password, if "
                "any, in SKILLBANK_LEDGER_URL only); leave it empty for the embedded SQLite "
                "ledger <state_dir>/ledger.sqlite"
            )
        if self.executor not in EXECUTORS:
            raise ConfigError(
                f"executor={self.executor!r} must be 'local' (worker processes on this "
                "machine, the default) or 'ray' (actors on a Ray cluster; set ray_address)"
            )
        if self.ray_actors < 0:
            raise ConfigError(f"ray_actors={self.ray_actors!r} must be 0 (one per CPU) or more")
        if self.ray_calls_per_actor < 1:
            raise ConfigError(
                f"ray_calls_per_actor={self.ray_calls_per_actor!r} must be at least 1"
            )
        for name in ("replica", "stages_updater"):
            value = getattr(self, name)
            if value and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value):
                raise ConfigError(
                    f"{name}={value!r} must be a short name of letters, digits, '.', '_' "
                    "and '-' (a replica's name becomes part of branch names), e.g. 'gateway-2'"
                )
        if self.sync_from and "/" not in self.sync_from.strip("/"):
            raise ConfigError(
                f"sync_from={self.sync_from!r} must be REMOTE/BRANCH, e.g. 'origin/main'"
            )
        if self.sync_interval_s < 0 or not math.isfinite(self.sync_interval_s):
            raise ConfigError(
                f"sync_interval_s={self.sync_interval_s!r} must be 0 (no periodic fetch) or a "
                "positive number of seconds"
            )


def default_config() -> Config:
    """The built-in defaults, the one place they are defined."""
    return Config()


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, fit for a message."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            user, _, host = netloc.rpartition("@")
            netloc = f"{user.partition(':')[0]}:***@{host}"
        query = parts.query
        if "password" in parse_qs(query):
            query = "&".join(
                "password=***" if item.startswith("password=") else item
                for item in query.split("&")
            )
        return parts._replace(netloc=netloc, query=query).geturl()
    except ValueError:
        return "<not a URL>"


def _url_secret(value: Any) -> str | None:
    """What secret a URL holds (a password in its user part or its query), if any."""
    try:
        parts = urlsplit(str(value))
        if parts.password is not None or "password" in parse_qs(parts.query):
            return "a password"
    except ValueError:
        return None
    return None


#: Keys whose value may hold a secret, each with a check saying which secret it holds (None
#: for none). Such a value comes from the environment (or a flag) only, never from the
#: committed pyproject.toml. API keys are never keys here at all (``OPENAI_API_KEY``).
_SECRET_KEYS: Mapping[str, Callable[[Any], str | None]] = {"ledger_url": _url_secret}


@dataclass(frozen=True)
class _Deprecated:
    """A key that was renamed or retired."""

    #: The key that replaces it, or None when it was retired (its value is ignored).
    new: str | None
    #: Why, for the warning, e.g. "the unit is in the name now".
    reason: str


#: Renamed and retired keys, old name -> what became of it. Such a key is accepted with a
#: `DeprecationWarning`, never rejected, so a bank's pyproject.toml keeps working across
#: upgrades.
_DEPRECATED_KEYS: Mapping[str, _Deprecated] = {
    "learn_branch": _Deprecated(
        "branch", "it decides where every command that changes skills commits, not only learn"
    ),
}


def _coerce(name: str, raw: Any, where: str) -> Any:
    kind = {f.name: f.type for f in fields(Config)}[name]
    try:
        if kind == "tuple[str, ...]":
            # A TOML array item by item; a string (environment, flag, or a TOML string) split
            # on commas. Items stripped, empty ones dropped.
            items = raw.split(",") if isinstance(raw, str) else raw
            if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
                raise ValueError
            return tuple(i.strip() for i in items if i.strip())
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off", ""):
                return False
            raise ValueError
        if kind == "float":
            return float(raw)
        if kind == "int":
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError
            return int(raw)
        return str(raw)
    except (TypeError, ValueError):
        shown = "<hidden: it may hold a secret>" if name in _SECRET_KEYS else repr(raw)
        if kind == "tuple[str, ...]":
            raise ConfigError(
                f"{where}: {name}={shown} must be a list of names: a TOML array of strings "
                f'(e.g. {name} = ["a", "b"]) or a comma-separated string (e.g. "a,b")'
            ) from None
        raise ConfigError(f"{where}: {name}={shown} must be a {kind}") from None


def _layer(given: Mapping[str, tuple[Any, str]], known: set[str]) -> dict[str, Any]:
    """One layer's values by current key name, from ``{key as written: (raw, where)}``.

    Deprecated keys warn and move to their new name; a new key set in the same layer wins.
    """
    values: dict[str, Any] = {}
    for key, (raw, where) in given.items():
        if key in known:
            values[key] = _coerce(key, raw, where)
    for key, (raw, where) in given.items():
        if key not in _DEPRECATED_KEYS:
            continue
        old = _DEPRECATED_KEYS[key]
        new = old.new
        if new is None:
            message = f"{where}: {key!r} is retired and has no effect ({old.reason}); remove it"
        elif new in given:
            message = (
                f"{where}: {key!r} is deprecated ({old.reason}); {given[new][1]} also sets "
                f"its replacement {new!r}, which wins; remove {key!r}"
            )
        else:
            message = f"{where}: {key!r} is deprecated ({old.reason}); rename it to {new!r}"
        # stacklevel 3: the warning points at whoever called load_config.
        warnings.warn(message, DeprecationWarning, stacklevel=3)
        if new is not None and new not in given:
            values[new] = _coerce(new, raw, f"{where} ({key!r}, now {new!r})")
    return values


def load_config(root: str | Path, overrides: Mapping[str, Any] | None = None) -> Config:
    """Load the bank's configuration: defaults < pyproject.toml < environment < overrides.

    Lists are TOML arrays in pyproject.toml and comma-separated in ``SKILLBANK_<KEY>``
    variables; renamed keys warn (`DeprecationWarning`) and still work; secrets are refused
    from pyproject.toml (see the module docstring).

    Raises:
        ConfigError: an unknown key, a bad value, or a secret in pyproject.toml, naming where
            it came from.
    """
    known = {f.name for f in fields(Config)}
    accepted = known | set(_DEPRECATED_KEYS)
    values: dict[str, Any] = {}
    pyproject = Path(root) / "pyproject.toml"
    if pyproject.is_file():
        try:
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{pyproject}: cannot read it: {exc}") from None
        section = data.get("tool", {}).get("skillbank", {})
        where = f"{pyproject} [tool.skillbank]"
        for key in section:
            if key not in accepted:
                raise ConfigError(
                    f"{where}: unknown key {key!r}; known keys: {', '.join(sorted(known))}"
                )
        from_file = _layer({k: (raw, where) for k, raw in section.items()}, known)
        for key, value in from_file.items():
            secret = _SECRET_KEYS[key](value) if key in _SECRET_KEYS else None
            if secret is not None:
                raise ConfigError(
                    f"{where}: {key} holds {secret}, and secrets never go in a committed file; "
                    f"remove it from {pyproject.name} and set the environment variable "
                    f"SKILLBANK_{key.upper()} instead"
                )
        values.update(from_file)
    env = {
        key: (os.environ[f"SKILLBANK_{key.upper()}"], f"environment SKILLBANK_{key.upper()}")
        for key in sorted(accepted)
        if f"SKILLBANK_{key.upper()}" in os.environ
    }
    values.update(_layer(env, known))
    given = {k: (raw, "option") for k, raw in (overrides or {}).items() if raw is not None}
    for key in given:
        if key not in accepted:
            raise ConfigError(f"unknown setting {key!r}; known: {', '.join(sorted(known))}")
    values.update(_layer(given, known))
    return replace(default_config(), **values)
