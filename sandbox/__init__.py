"""Run untrusted skill code: RestrictedPython in a fresh, confined worker process per call.

This package imports only the standard library and RestrictedPython, so it can be read and
audited on its own. Layout:

- :mod:`sandbox.policy`: what skill code may do (compiler policy, guards, builtins, the
  module allow-list);
- :mod:`sandbox.worker`: the worker process (per-call limits, the run loop);
- :mod:`sandbox.template`: the process that warms everything once, confines itself and forks
  a worker ahead of each call; :mod:`sandbox.forkserver` is its host side;
- :mod:`sandbox.confine`: the process layers (uid, capabilities, no_new_privs, seccomp,
  network namespace, rlimits, Landlock) and :class:`sandbox.confine.ConfinementWarning`;
- :mod:`sandbox.executor`: the Executor protocol, JSON only, that any backend speaks;
- :mod:`sandbox.plain`: which locals provably hold a plain dict, list or str (the compiler
  leaves their guards out);
- :mod:`sandbox.pool`: workers on the host side (fresh per call, or reused on request),
  crash handling, the I/O of each call, and the default backend over them
  (:class:`LocalExecutor`);
- :mod:`sandbox.relay`: the host's side of one call apart from I/O: frame caps, bounded
  decoding, host tools on helper threads under the call's deadline;
- :mod:`sandbox.protocol`: the JSON frames between host and worker, checked before decoding;
- :mod:`sandbox.contract`: the checks any Executor backend must pass;
- :mod:`sandbox.names`: how a tool's real name (``get-weather``) becomes the identifier skill
  code calls it by (``tools.get_weather``);
- :mod:`sandbox.core`, :mod:`sandbox.limits`, :mod:`sandbox.result`,
  :mod:`sandbox.errors`: the public types re-exported here.

Example::

    from sandbox import Sandbox

    with Sandbox() as sandbox:
        result = sandbox.run(source, "run", {"city": "Oslo"}, {"weather": get_weather})
    result.raise_for_error()
"""

from __future__ import annotations

from sandbox.core import Sandbox
from sandbox.errors import (
    ExecutionTimeout,
    PolicyViolation,
    ResourceLimitExceeded,
    SandboxError,
    SkillError,
    ToolError,
    ToolNotAllowed,
    WorkerCrashed,
)
from sandbox.executor import ExecRequest, Executor, MappingToolHost, ToolHost
from sandbox.limits import Limits
from sandbox.policy import ALLOWED_MODULES
from sandbox.pool import LocalExecutor
from sandbox.result import Result, ToolCall

__all__ = [
    "ALLOWED_MODULES",
    "ExecRequest",
    "ExecutionTimeout",
    "Executor",
    "Limits",
    "LocalExecutor",
    "MappingToolHost",
    "PolicyViolation",
    "ResourceLimitExceeded",
    "Result",
    "Sandbox",
    "SandboxError",
    "SkillError",
    "ToolCall",
    "ToolError",
    "ToolHost",
    "ToolNotAllowed",
    "WorkerCrashed",
]
