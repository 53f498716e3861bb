"""Security suite for the sandbox: escape attempts that must fail, benign programs that must run.

Every escape row names the specific error it must end with and runs with a unique marker
path and a host secret in reach (in the host's environment and in a file); after each row
the marker must not exist, the secret must not appear anywhere in the result, the host's
secret must be untouched, and the next call on the same sandbox must succeed. Rows that
need two calls (state leaking from one call into the next) are in ``LEAK_ROWS``.

The categories follow the threat model of issue 3. Rows that burn a whole CPU or wall-clock
budget are marked ``heavy``; the limits are small so the suite stays quick.
"""

from __future__ import annotations

import os
import secrets
import signal
import textwrap
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sandbox import (
    ExecutionTimeout,
    Limits,
    PolicyViolation,
    ResourceLimitExceeded,
    Result,
    Sandbox,
    SandboxError,
    SkillError,
    ToolError,
    ToolNotAllowed,
    WorkerCrashed,
)

SECRET = "sandbox-secret-" + secrets.token_hex(12)
SECRET_ENV = "SANDBOX_SECURITY_TEST_SECRET"

#: Limits for rows that should fail fast; anything that loops is still cut off quickly.
LIGHT = Limits(timeout_s=5, cpu_s=2, memory_mb=256, output_bytes=10_000, max_tool_calls=20)
#: CPU rows: the CPU limit (1 s, rounded up to whole seconds by RLIMIT_CPU) must win.
CPU = Limits(timeout_s=8, cpu_s=1, memory_mb=256, output_bytes=10_000)
#: Wall-clock rows: the deadline must win long before the CPU limit.
WALL = Limits(timeout_s=1, cpu_s=30, memory_mb=256, output_bytes=10_000)

CATEGORIES = (
    "files",
    "sockets",
    "imports",
    "dunder",
    "frames",
    "format",
    "walkers",
    "module-attrs",
    "cpu",
    "memory",
    "output",
    "disk",
    "processes",
    "wall",
    "tools",
    "leaks",
    "host-exceptions",
    "return-values",
    "restricted-python",
)


# ------------------------------------------------------------------------ expectations


@dataclass(frozen=True)
class Expect:
    """The error a row must end with: its exact class and the fields that identify it."""

    error: type[SandboxError]
    limit: str | None = None
    exc_type: str | None = None
    tool: str | None = None
    #: The source is meant not to parse; any other PolicyViolation must not be a syntax
    #: error (a typo in a row would otherwise pass for a refusal).
    parse_error: bool = False

    def check(self, result: Result) -> None:
        assert not result.ok, f"the escape attempt succeeded: value={result.value!r}"
        assert result.value is None
        assert type(result.error) is self.error, f"{type(result.error).__name__}: {result.error}"
        if self.error is PolicyViolation:
            message = result.error.message
            unparsable = message.startswith("SyntaxError") or "cannot be parsed" in message
            assert unparsable == self.parse_error, message
        if self.limit is not None:
            assert result.error.limit == self.limit
        if self.exc_type is not None:
            assert result.error.exc_type == self.exc_type, str(result.error)
        if self.tool is not None:
            assert result.error.tool == self.tool


POLICY = Expect(PolicyViolation)
PARSE_ERROR = Expect(PolicyViolation, parse_error=True)
TIMEOUT = Expect(ExecutionTimeout, limit="wall")


def skill(exc_type: str) -> Expect:
    return Expect(SkillError, exc_type=exc_type)


def limit(kind: str) -> Expect:
    return Expect(ResourceLimitExceeded, limit=kind)


def not_allowed(tool: str) -> Expect:
    return Expect(ToolNotAllowed, tool=tool)


def tool_error(tool: str) -> Expect:
    return Expect(ToolError, tool=tool)


@dataclass(frozen=True)
class Escape:
    """One escape attempt: ``run()`` in ``source`` must end with ``expect``."""

    category: str
    name: str
    expect: Expect
    source: str
    limits: Limits = LIGHT
    #: Extra assertions on the result.
    check: Callable[[Result], None] | None = None

    @property
    def id(self) -> str:
        return f"{self.category}-{self.name}"

    @property
    def heavy(self) -> bool:
        return self.limits is not LIGHT


def E(category: str, name: str, expect: Expect, source: str, **kwargs: Any) -> Escape:
    assert category in CATEGORIES, category
    return Escape(category, name, expect, textwrap.dedent(source).lstrip("\n"), **kwargs)


def returns(expression: str) -> str:
    """A one-line skill: ``run()`` returns ``expression``."""
    return f"def run():\n    return {expression}\n"


def body(statement: str) -> str:
    """A one-line skill: ``run()`` executes ``statement``."""
    return f"def run():\n    {statement}\n"


#: ``__class__`` spelled with FULLWIDTH LOW LINE (U+FF3F) instead of ``_``.
FULLWIDTH_CLASS = "\uff3f\uff3fclass\uff3f\uff3f"

#: How the sandbox reports a tool name longer than 200 characters.
TRUNCATED_NAME = "x" * 200 + "... (truncated)"


def _short_message(result: Result) -> None:
    assert len(str(result.error)) < 5000


def _short_tool_name(result: Result) -> None:
    assert len(result.error.tool) <= 250 and len(str(result.error)) < 5000


def _no_tool_calls(result: Result) -> None:
    assert result.tool_calls == ()


# --------------------------------------------------------------------------- the rows

ESCAPES: list[Escape] = [
    # ----------------------------------------------------------------------- files
    E("files", "open-write-marker", skill("NameError"), """
        def run():
            open(MARKER, "w").write("pwned")
            return 1
    """),
    E("files", "open-read-secret-file", skill("NameError"), """
        def run():
            return open(SECRET_FILE).read()
    """),
    E("files", "io-open", POLICY, """
        import io
        def run():
            return io.open(SECRET_FILE).read()
    """),
    E("files", "pathlib-read", POLICY, """
        from pathlib import Path
        def run():
            return Path(SECRET_FILE).read_text()
    """),
    E("files", "os-environ", POLICY, """
        import os
        def run():
            return os.environ[SECRET_ENV]
    """),
    E("files", "builtins-open", POLICY, """
        def run():
            return __builtins__["open"](SECRET_FILE).read()
    """),
    E("files", "loader-get-data", POLICY, """
        def run():
            return __loader__.get_data(SECRET_FILE)
    """),
    E("files", "module-spec-loader", POLICY, """
        import json
        def run():
            return getattr(getattr(json, "__spec__"), "loader").get_data(SECRET_FILE)
    """),
    E("files", "json-load-open", skill("NameError"), """
        import json
        def run():
            return json.load(open(SECRET_FILE))
    """),
    E("files", "codecs-via-json", skill("AttributeError"), """
        import json
        def run():
            return json.codecs.open(SECRET_FILE).read()
    """),
    # --------------------------------------------------------------------- sockets
    E("sockets", "import-socket", POLICY, """
        import socket
        def run():
            return socket.create_connection(("127.0.0.1", 80))
    """),
    E("sockets", "from-socket", POLICY, """
        from socket import socket
        def run():
            return socket()
    """),
    E("sockets", "dunder-import-socket", POLICY, """
        def run():
            return __import__("socket").socket()
    """),
    E("sockets", "urllib", POLICY, """
        import urllib.request
        def run():
            return urllib.request.urlopen("http://127.0.0.1/").read()
    """),
    E("sockets", "http-client", POLICY, """
        import http.client
        def run():
            return 1
    """),
    E("sockets", "asyncio", POLICY, """
        import asyncio
        def run():
            return 1
    """),
    # --------------------------------------------------------------------- imports
    E("imports", "os", POLICY, "import os\ndef run():\n    return os.getpid()\n"),
    E("imports", "sys", POLICY, "import sys\ndef run():\n    return sys.path\n"),
    E("imports", "importlib", POLICY, """
        import importlib
        def run():
            return importlib.import_module("os").getpid()
    """),
    E("imports", "builtins", POLICY, "import builtins\ndef run():\n    return 1\n"),
    E("imports", "ctypes", POLICY, "import ctypes\ndef run():\n    return 1\n"),
    E("imports", "string-module", POLICY, "import string\ndef run():\n    return 1\n"),
    E("imports", "gc", POLICY, "import gc\ndef run():\n    return len(gc.get_objects())\n"),
    E("imports", "types", POLICY, "import types\ndef run():\n    return 1\n"),
    E("imports", "from-os-path", POLICY, "from os import path\ndef run():\n    return 1\n"),
    E("imports", "dotted-os-path", POLICY, "import os.path\ndef run():\n    return 1\n"),
    E("imports", "submodule-json-decoder", POLICY, """
        import json.decoder
        def run():
            return 1
    """),
    E("imports", "from-json-import-decoder", skill("ImportError"), """
        from json import decoder
        def run():
            return 1
    """),
    E("imports", "datetime-helper-module", POLICY, """
        import _strptime
        def run():
            return str(_strptime)
    """),
    E("imports", "time-module", POLICY, """
        from time import sleep
        def run():
            sleep(10)
    """),
    E("imports", "star", POLICY, "from json import *\ndef run():\n    return 1\n"),
    E("imports", "relative", POLICY, "from . import worker\ndef run():\n    return 1\n"),
    E("imports", "dunder-import", POLICY, "def run():\n    return __import__('os').getpid()\n"),
    E("imports", "builtins-dict-import", POLICY, """
        def run():
            return __builtins__["__import__"]("os")
    """),
    E("imports", "loader-load-module", POLICY, """
        def run():
            return __loader__.load_module("os")
    """),
    E("imports", "getattr-module-loader", POLICY, """
        import json
        def run():
            return getattr(json, "__loader__")
    """),
    E("imports", "alias-json-as-os", skill("AttributeError"), """
        import json as os
        def run():
            return os.system("touch " + MARKER)
    """),
    E("imports", "sandbox-package", POLICY, "import sandbox\ndef run():\n    return 1\n"),
    E("imports", "from-decimal-setcontext", skill("ImportError"), """
        from decimal import setcontext
        def run():
            return 1
    """),
    # ---------------------------------------------------------------------- dunder
    E("dunder", "class-attr", POLICY, "def run():\n    return str(().__class__)\n"),
    E("dunder", "subclasses-walk", POLICY, """
        def run():
            return str(().__class__.__mro__[1].__subclasses__())
    """),
    E("dunder", "getattr-class", POLICY, "def run():\n    return str(getattr((), '__class__'))\n"),
    E("dunder", "getattr-base", POLICY, """
        def run():
            return str(getattr(int, "__base__"))
    """),
    E("dunder", "getattr-dunder-mro", POLICY, returns("str(getattr(int, '__mro__'))")),
    E("dunder", "func-globals", POLICY, "def run():\n    return str(run.__globals__)\n"),
    E("dunder", "getattr-globals", POLICY, returns("str(getattr(run, '__globals__'))")),
    E("dunder", "getattr-code", POLICY, "def run():\n    return str(getattr(run, '__code__'))\n"),
    E("dunder", "getattr-closure", POLICY, """
        def run():
            secret = 1
            def inner():
                return secret
            return str(getattr(inner, "__closure__"))
    """),
    E("dunder", "getattr-dict", POLICY, """
        class A:
            pass
        def run():
            return str(getattr(A(), "__dict__"))
    """),
    E("dunder", "py2-func-globals", skill("AttributeError"), """
        def run():
            return str(getattr(run, "func_globals"))
    """),
    E("dunder", "computed-name", POLICY, """
        def run():
            return str(getattr((), "_" + "_class__"))
    """),
    E("dunder", "joined-name", POLICY, """
        def run():
            return str(getattr((), "".join(["__", "cla", "ss__"])))
    """),
    E("dunder", "str-subclass-name", POLICY, """
        class Name(str):
            def startswith(self, *args):
                return False
            def endswith(self, *args):
                return False
        def run():
            return str(getattr((), Name("__class__")))
    """),
    E("dunder", "getattr-with-default", POLICY, """
        def run():
            return str(getattr((), "__class__", None))
    """),
    E("dunder", "object-from-mro", POLICY, """
        def run():
            return str(getattr(int.mro()[-1], "__subclasses__")())
    """),
    E("dunder", "getattr-mro", POLICY, """
        def run():
            return str(getattr(int, "mro")())
    """),
    E("dunder", "module-function-globals", POLICY, """
        import json
        def run():
            return str(getattr(json.loads, "__globals__")["sys"])
    """),
    E("dunder", "bound-method-self", POLICY, """
        import datetime
        def run():
            return str(getattr(datetime.datetime.now, "__self__"))
    """),
    E("dunder", "namedtuple-private", POLICY, """
        import collections
        def run():
            return str(getattr(collections.namedtuple("P", "a"), "_make"))
    """),
    E("dunder", "enum-private-map", POLICY, """
        import re
        def run():
            return str(getattr(re.RegexFlag, "_member_map_"))
    """),
    E("dunder", "setattr-class", POLICY, """
        class A:
            pass
        class B:
            pass
        def run():
            a = A()
            setattr(a, "__class__", B)
            return 1
    """),
    # ---------------------------------------------------------------------- frames
    E("frames", "gi-frame", POLICY, """
        def run():
            g = (i for i in [1])
            return str(g.gi_frame.f_back.f_globals)
    """),
    E("frames", "getattr-gi-frame", POLICY, """
        def run():
            g = (i for i in [1])
            return str(getattr(g, "gi_frame"))
    """),
    E("frames", "getattr-gi-code", POLICY, """
        def gen():
            yield 1
        def run():
            return str(getattr(gen(), "gi_code"))
    """),
    E("frames", "getattr-gi-yieldfrom", POLICY, """
        def gen():
            yield from [1, 2]
        def run():
            g = gen()
            next(g)
            return str(getattr(g, "gi_yieldfrom"))
    """),
    E("frames", "coroutine-cr-frame", POLICY, """
        async def coro():
            return 1
        def run():
            return str(getattr(coro(), "cr_frame"))
    """),
    E("frames", "async-generator-ag-frame", POLICY, """
        async def agen():
            yield 1
        def run():
            return str(getattr(agen(), "ag_frame"))
    """),
    E("frames", "await", POLICY, """
        def run():
            await run()
    """),
    E("frames", "traceback-attr", POLICY, """
        def run():
            try:
                1 / 0
            except ZeroDivisionError as e:
                return str(e.__traceback__.tb_frame.f_globals)
    """),
    E("frames", "getattr-traceback", POLICY, """
        def run():
            try:
                1 / 0
            except ZeroDivisionError as e:
                return str(getattr(getattr(e, "__traceback__"), "tb_frame"))
    """),
    E("frames", "getattr-context", POLICY, """
        def run():
            try:
                try:
                    1 / 0
                except ZeroDivisionError:
                    raise ValueError("second")
            except ValueError as e:
                return str(getattr(e, "__context__"))
    """),
    E("frames", "getattr-cause", POLICY, """
        def run():
            try:
                raise ValueError("x") from KeyError("y")
            except ValueError as e:
                return str(getattr(e, "__cause__"))
    """),
    E("frames", "tool-error-traceback", POLICY, """
        def run():
            try:
                tools.boom()
            except ToolError as e:
                return str(getattr(e, "__traceback__"))
    """),
    E("frames", "sys-exc-info", POLICY, """
        import sys
        def run():
            try:
                1 / 0
            except ZeroDivisionError:
                return str(sys.exc_info()[2].tb_frame)
    """),
    E("frames", "inspect-currentframe", POLICY, """
        import inspect
        def run():
            return str(inspect.currentframe().f_back)
    """),
    E("frames", "map-getattr-gi-frame", POLICY, """
        def run():
            g = (i for i in [1])
            return str(list(map(getattr, [g], ["gi_frame"])))
    """),
    # ---------------------------------------------------------------------- format
    E("format", "str-format-field", POLICY, """
        def run():
            return "{0.__class__.__mro__}".format(1)
    """),
    E("format", "str-format-map", POLICY, """
        def run():
            return "{x.__class__}".format_map({"x": 1})
    """),
    E("format", "unbound-str-format", POLICY, """
        def run():
            return str.format("{0.__class__}", 1)
    """),
    E("format", "getattr-format", POLICY, """
        def run():
            return getattr("{0.__class__}", "format")(1)
    """),
    E("format", "userstring-format", POLICY, """
        import collections
        def run():
            template = "{0.__globals__[_sys].modules[os].environ}"
            return collections.UserString(template).format(collections.namedtuple)
    """),
    E("format", "userstring-format-map", POLICY, """
        import collections
        def run():
            return collections.UserString("{x.__class__}").format_map({"x": 1})
    """),
    E("format", "userstring-subclass", POLICY, """
        import collections
        class Text(collections.UserString):
            pass
        def run():
            return Text("{0.__class__}").format(1)
    """),
    E("format", "str-subclass", POLICY, """
        class Text(str):
            pass
        def run():
            return Text("{0.__class__}").format(1)
    """),
    E("format", "string-formatter", POLICY, """
        def run():
            return string.Formatter().format("{0.__class__}", 1)
    """),
    E("format", "getattr-string-formatter", POLICY, """
        def run():
            return str(getattr(string, "Formatter"))
    """),
    E("format", "fstring-dunder", POLICY, """
        def run():
            return f"{().__class__!r}"
    """),
    E("format", "fstring-repr-private", POLICY, """
        def run():
            return f"{getattr(tools, '_sandbox_call')!r}"
    """),
    E("format", "fstring-repr-of-hostile-object", POLICY, """
        class Hostile:
            def __repr__(self):
                while True:
                    pass
        def run():
            return f"{Hostile()!r}"
    """),
    E("format", "fstring-format-spec", skill("ValueError"), """
        def run():
            return f"{1:{'{0.__class__}'}}"
    """),
    E("format", "format-builtin", skill("NameError"), """
        def run():
            return format(1, "{0.__class__}")
    """),
    E("format", "map-str-format", POLICY, """
        def run():
            return list(map(str.format, ["{0.__class__}"], [1]))
    """),
    E("format", "sort-key-format", POLICY, """
        def run():
            return sorted(["a"], key="{0.__class__}".format)
    """),
    E("format", "userstring-class-format", POLICY, """
        import collections
        def run():
            return collections.UserString.format(collections.UserString("{0.__class__}"), 1)
    """),
    # --------------------------------------------------------------------- walkers
    E("walkers", "operator-attrgetter", POLICY, """
        from operator import attrgetter
        def run():
            return str(attrgetter("__class__")(()))
    """),
    E("walkers", "operator-methodcaller", POLICY, """
        import operator
        def run():
            return str(operator.methodcaller("__reduce_ex__", 2)(()))
    """),
    E("walkers", "functools-reduce", POLICY, """
        from functools import reduce
        def run():
            return str(reduce(getattr, ["__class__", "__mro__"], ()))
    """),
    E("walkers", "dunder-import-operator", POLICY, """
        def run():
            return str(__import__("operator").attrgetter("__class__")(()))
    """),
    E("walkers", "map-getattr", POLICY, """
        def run():
            return str(list(map(getattr, [()], ["__class__"])))
    """),
    E("walkers", "itertools-starmap-getattr", POLICY, """
        import itertools
        def run():
            return str(list(itertools.starmap(getattr, [((), "__class__")])))
    """),
    E("walkers", "itertools-accumulate-getattr", POLICY, """
        import itertools
        def run():
            return str(list(itertools.accumulate(["__class__", "__mro__"], getattr, initial=())))
    """),
    E("walkers", "max-key-getattr", POLICY, """
        def run():
            return str(max([()], key=lambda o: getattr(o, "__class__")))
    """),
    E("walkers", "filter-getattr", POLICY, """
        def run():
            return str(list(filter(lambda n: getattr((), n), ["__class__"])))
    """),
    E("walkers", "json-object-hook", POLICY, """
        import json
        def run():
            return str(json.loads('{"a": 1}', object_hook=lambda d: getattr(d, "__class__")))
    """),
    E("walkers", "re-sub-callback", POLICY, """
        import re
        def run():
            return re.sub("a", lambda m: str(getattr(m, "__class__")), "a")
    """),
    E("walkers", "defaultdict-factory", POLICY, """
        import collections
        def run():
            d = collections.defaultdict(lambda: getattr((), "__class__"))
            return str(d["x"])
    """),
    # ---------------------------------------------------------------- module-attrs
    E("module-attrs", "json-codecs", skill("AttributeError"), """
        import json
        def run():
            return str(json.codecs.sys)
    """),
    E("module-attrs", "json-decoder", skill("AttributeError"), """
        import json
        def run():
            return str(json.decoder)
    """),
    E("module-attrs", "json-scanner", skill("AttributeError"), """
        import json
        def run():
            return str(json.scanner)
    """),
    E("module-attrs", "re-enum", skill("AttributeError"), """
        import re
        def run():
            return str(re.enum.sys)
    """),
    E("module-attrs", "re-sre-compile", skill("AttributeError"), """
        import re
        def run():
            return str(re.sre_compile)
    """),
    E("module-attrs", "re-private-compiler", POLICY, """
        import re
        def run():
            return str(re._compiler)
    """),
    E("module-attrs", "re-functools", skill("AttributeError"), """
        import re
        def run():
            return str(re.functools)
    """),
    E("module-attrs", "datetime-sys", skill("AttributeError"), """
        import datetime
        def run():
            return str(datetime.sys.modules)
    """),
    E("module-attrs", "collections-abc", skill("AttributeError"), """
        import collections
        def run():
            return str(collections.abc)
    """),
    E("module-attrs", "collections-private-sys", POLICY, """
        import collections
        def run():
            return str(collections._sys)
    """),
    E("module-attrs", "getattr-collections-sys", POLICY, """
        import collections
        def run():
            return str(getattr(collections, "_sys"))
    """),
    E("module-attrs", "from-collections-abc", skill("ImportError"), """
        from collections import abc
        def run():
            return str(abc)
    """),
    E("module-attrs", "statistics-sys", skill("AttributeError"), """
        import statistics
        def run():
            return str(statistics.sys)
    """),
    E("module-attrs", "statistics-math", skill("AttributeError"), """
        import statistics
        def run():
            return str(statistics.math)
    """),
    E("module-attrs", "statistics-random", skill("AttributeError"), """
        import statistics
        def run():
            return str(statistics.random)
    """),
    E("module-attrs", "statistics-mean-globals", POLICY, """
        import statistics
        def run():
            return str(getattr(statistics.mean, "__globals__"))
    """),
    E("module-attrs", "decimal-setcontext", POLICY, """
        import decimal
        def run():
            decimal.setcontext(decimal.Context(prec=2))
            return 1
    """),
    E("module-attrs", "decimal-default-context", POLICY, """
        import decimal
        def run():
            return str(decimal.DefaultContext)
    """),
    E("module-attrs", "decimal-c-module", POLICY, """
        import decimal
        def run():
            return str(decimal._decimal)
    """),
    E("module-attrs", "itertools-sys", skill("AttributeError"), """
        import itertools
        def run():
            return str(itertools.sys)
    """),
    E("module-attrs", "math-sys", skill("AttributeError"), returns("str(math.sys)")),
    E("module-attrs", "string-view-re", POLICY, "def run():\n    return str(string._re)\n"),
    E("module-attrs", "re-purge", POLICY, """
        import re
        def run():
            re.purge()
            return 1
    """),
    E("module-attrs", "json-decoder-init-globals", POLICY, """
        import json
        def run():
            init = getattr(json.JSONDecoder, "__init__")
            return str(getattr(init, "__globals__"))
    """),
    E("module-attrs", "json-parse-object-globals", POLICY, """
        import json
        def run():
            return str(getattr(json.JSONDecoder().parse_object, "__globals__"))
    """),
    # ------------------------------------------------------------------------- cpu
    E("cpu", "tight-loop", limit("cpu"), """
        def run():
            while True:
                pass
    """, limits=CPU),
    E("cpu", "loop-catching-everything", limit("cpu"), """
        def run():
            while True:
                try:
                    while True:
                        pass
                except BaseException:
                    pass
    """, limits=CPU),
    E("cpu", "regex-backtracking", limit("cpu"), """
        import re
        def run():
            return bool(re.match("(a+)+$", "a" * 64 + "b"))
    """, limits=CPU),
    E("cpu", "huge-power", limit("cpu"), """
        def run():
            return 10 ** 10 ** 7 % 7
    """, limits=CPU),
    E("cpu", "c-level-sum", limit("cpu"), """
        import itertools
        def run():
            return sum(itertools.repeat(1))
    """, limits=CPU),
    # ---------------------------------------------------------------------- memory
    E("memory", "huge-list", limit("memory"), """
        def run():
            return len([0] * 10 ** 9)
    """),
    E("memory", "string-multiplication", limit("memory"), """
        def run():
            return len("a" * 10 ** 10)
    """),
    E("memory", "bytes-multiplication", limit("memory"), """
        def run():
            return len(b"\\0" * 10 ** 10)
    """),
    E("memory", "bytearray-not-offered", skill("NameError"), """
        def run():
            return len(bytearray(10 ** 10))
    """),
    E("memory", "bytes", limit("memory"), "def run():\n    return len(bytes(10 ** 10))\n"),
    E("memory", "growing-list", limit("memory"), """
        def run():
            chunks = []
            while True:
                chunks.append(" " * 10 ** 6)
    """),
    E("memory", "caught-memory-error", limit("memory"), """
        def run():
            try:
                "a" * 10 ** 10
            except MemoryError:
                return "caught"
    """),
    E("memory", "caught-as-exception", limit("memory"), """
        def run():
            try:
                " " * 10 ** 10
            except Exception:
                pass
            return "survived"
    """),
    E("memory", "swallowed-by-generator-finalizer", limit("memory"), """
        def gen():
            try:
                yield 1
            finally:
                "a" * 10 ** 10
        def run():
            g = gen()
            next(g)
            g = None
            return "survived"
    """),
    E("memory", "infinite-iterator-to-list", limit("memory"), """
        import itertools
        def run():
            return len(list(itertools.count()))
    """),
    # ---------------------------------------------------------------------- output
    E("output", "print-loop", limit("output"), """
        def run():
            while True:
                print("x" * 1000)
    """),
    E("output", "print-loop-caught", limit("output"), """
        def run():
            for i in range(100):
                try:
                    print("x" * 1000)
                except Exception:
                    pass
            return "survived"
    """),
    E("output", "small-prints", limit("output"), """
        def run():
            for i in range(100000):
                print(i, end="")
            return 1
    """),
    E("output", "huge-return-string", limit("output"), """
        def run():
            return "y" * 100000
    """),
    E("output", "huge-return-list", limit("output"), """
        def run():
            return list(range(100000))
    """),
    E("output", "print-during-encoding", limit("output"), """
        class Sneaky(dict):
            def items(self):
                try:
                    print("x" * 50000)
                except Exception:
                    pass
                return [("a", 1)]
        def run():
            return Sneaky(a=1)
    """),
    E("output", "huge-exception-message", skill("ValueError"), """
        def run():
            raise ValueError("x" * 10 ** 6)
    """, check=_short_message),
    # ------------------------------------------------------------------------ disk
    E("disk", "open-append", skill("NameError"), """
        def run():
            with open(MARKER, "a") as f:
                f.write("pwned")
            return 1
    """),
    E("disk", "json-dump-to-file", skill("NameError"), """
        import json
        def run():
            json.dump({"pwned": True}, open(MARKER, "w"))
            return 1
    """),
    E("disk", "print-to-file", skill("NameError"), """
        def run():
            print("pwned", file=open(MARKER, "w"))
            return 1
    """),
    E("disk", "tempfile", POLICY, "import tempfile\ndef run():\n    return 1\n"),
    E("disk", "shutil", POLICY, "import shutil\ndef run():\n    return 1\n"),
    E("disk", "sqlite3", POLICY, "import sqlite3\ndef run():\n    return 1\n"),
    E("disk", "logging-file", POLICY, """
        import logging
        def run():
            logging.basicConfig(filename=MARKER)
            return 1
    """),
    # ------------------------------------------------------------------- processes
    E("processes", "os-fork", POLICY, "import os\ndef run():\n    return os.fork()\n"),
    E("processes", "subprocess", POLICY, """
        import subprocess
        def run():
            return subprocess.run(["touch", MARKER]).returncode
    """),
    E("processes", "multiprocessing", POLICY, "import multiprocessing\ndef run():\n    return 1\n"),
    E("processes", "posix-fork", POLICY, "def run():\n    return __import__('posix').fork()\n"),
    E("processes", "signal-kill", POLICY, "import signal\ndef run():\n    return 1\n"),
    E("processes", "threading", POLICY, "import threading\ndef run():\n    return 1\n"),
    E("processes", "pty", POLICY, "import pty\ndef run():\n    return 1\n"),
    # ------------------------------------------------------------------------ wall
    E("wall", "busy-wait-on-the-clock", TIMEOUT, """
        import datetime
        def run():
            end = datetime.datetime.now() + datetime.timedelta(days=1)
            while datetime.datetime.now() < end:
                pass
            return 1
    """, limits=WALL),
    E("wall", "sleep-forever-loop", TIMEOUT, """
        import itertools
        def run():
            for tick in itertools.count():
                pass
    """, limits=WALL),
    E("wall", "time-sleep", POLICY, "import time\ndef run():\n    time.sleep(100)\n"),
    # ----------------------------------------------------------------------- tools
    E("tools", "assign-attribute", POLICY, """
        def run():
            tools.ping = lambda: "hijacked"
            return 1
    """),
    E("tools", "delete-attribute", POLICY, "def run():\n    del tools.ping\n    return 1\n"),
    E("tools", "setattr", POLICY, """
        def run():
            setattr(tools, "ping", lambda: "hijacked")
            return 1
    """),
    E("tools", "delattr", POLICY, "def run():\n    delattr(tools, 'ping')\n    return 1\n"),
    E("tools", "store-state", POLICY, "def run():\n    tools.state = [1]\n    return 1\n"),
    E("tools", "dunder-dict", POLICY, "def run():\n    return str(tools.__dict__)\n"),
    E("tools", "private-call-slot", POLICY, """
        def run():
            return str(getattr(tools, "_sandbox_call"))
    """),
    E("tools", "private-names-slot", POLICY, """
        def run():
            return str(getattr(tools, "_sandbox_names"))
    """),
    E("tools", "tool-closure", POLICY, """
        def run():
            return str(getattr(tools.ping, "__closure__"))
    """),
    E("tools", "tool-globals", POLICY, """
        def run():
            return str(getattr(tools.ping, "__globals__"))
    """),
    E("tools", "tool-function-attribute", POLICY, """
        def run():
            tools.ping.cache = {}
            return 1
    """),
    E("tools", "undeclared-tool", not_allowed("shell"), """
        def run():
            return tools.shell(command="touch " + MARKER)
    """),
    E("tools", "getattr-undeclared-tool", not_allowed("read_file"), """
        def run():
            return getattr(tools, "read_file")(path=SECRET_FILE)
    """),
    E("tools", "positional-arguments", skill("TypeError"), returns("tools.ping(1)")),
    E("tools", "non-json-arguments", skill("TypeError"), """
        def run():
            return tools.echo(x={1, 2})
    """),
    E("tools", "nan-argument", skill("TypeError"), """
        def run():
            return tools.echo(x=float("nan"))
    """),
    E("tools", "failing-tool", tool_error("boom"), "def run():\n    return tools.boom()\n"),
    E("tools", "private-keyword", POLICY, """
        def run():
            return tools.echo(**{"_internal": True})
    """),
    E("tools", "private-keyword-str-subclass", POLICY, """
        class Key(str):
            def startswith(self, *args):
                return False
        def run():
            try:
                return tools.echo(**{Key("_internal"): True})
            except Exception:
                return "survived"
    """),
    E("tools", "call-flood", limit("tool_calls"), """
        def run():
            for i in range(1000):
                try:
                    tools.ping()
                except Exception:
                    pass
            return "survived"
    """),
    # ------------------------------------------------------------- host-exceptions
    E("host-exceptions", "system-exit", skill("NameError"), body("raise SystemExit(0)")),
    E("host-exceptions", "keyboard-interrupt", skill("NameError"), """
        def run():
            raise KeyboardInterrupt()
    """),
    E("host-exceptions", "generator-exit", skill("NameError"), body("raise GeneratorExit")),
    E("host-exceptions", "base-exception-subclass", skill("Exit"), """
        class Exit(BaseException):
            pass
        def run():
            raise Exit("bye")
    """),
    E("host-exceptions", "base-exception", skill("BaseException"), """
        def run():
            raise BaseException("bye")
    """),
    E("host-exceptions", "captured-generator-exit", skill("GeneratorExit"), """
        box = []
        def gen():
            try:
                yield 1
            except BaseException as e:
                box.append(e)
                raise
        def run():
            g = gen()
            next(g)
            g.close()
            raise box[0]
    """),
    E("host-exceptions", "stop-iteration", skill("StopIteration"), """
        def run():
            raise StopIteration("done")
    """),
    E("host-exceptions", "raise-in-finally", skill("KeyError"), """
        def run():
            try:
                return 1
            finally:
                raise KeyError("late")
    """),
    E("host-exceptions", "tool-error-subclass-hostile-message", tool_error("t"), """
        class Forged(ToolError):
            pass
        def run():
            error = Forged("t", "m")
            error.message = {1, 2}
            error.line = "not a line"
            raise error
    """, check=_short_message),
    E("host-exceptions", "tool-error-non-str-message", tool_error("t"), """
        def run():
            raise ToolError("t", {"not", "a string"})
    """),
    E("host-exceptions", "tool-not-allowed-huge-name", not_allowed(TRUNCATED_NAME), """
        def run():
            raise ToolNotAllowed("x" * 10 ** 6, ["a"] * 10 ** 5)
    """, check=_short_tool_name),
    E("host-exceptions", "reraised-policy-violation", POLICY, """
        def run():
            try:
                getattr((), "__class__")
            except Exception as e:
                caught = e
            raise caught
    """),
    # --------------------------------------------------------------- return-values
    E("return-values", "nan", skill("TypeError"), "def run():\n    return float('nan')\n"),
    E("return-values", "infinity", skill("TypeError"), """
        def run():
            return {"a": [float("-inf")]}
    """),
    E("return-values", "tuple-key", skill("TypeError"), "def run():\n    return {(1, 2): 1}\n"),
    E("return-values", "object-key", skill("TypeError"), """
        class Key:
            pass
        def run():
            return {Key(): 1}
    """),
    E("return-values", "eq-never-ends", skill("TypeError"), """
        class Hostile:
            def __eq__(self, other):
                while True:
                    pass
        def run():
            return [Hostile(), Hostile()]
    """),
    E("return-values", "eq-raises", skill("TypeError"), """
        class Hostile:
            def __eq__(self, other):
                raise KeyError("no")
        def run():
            return {"a": Hostile()}
    """),
    E("return-values", "hash-never-ends", POLICY, """
        class Hostile:
            def __hash__(self):
                while True:
                    pass
        def run():
            return {Hostile(): 1}
    """),
    E("return-values", "iter-never-ends", POLICY, """
        class Hostile(list):
            def __iter__(self):
                while True:
                    yield 1
        def run():
            return Hostile([1])
    """),
    E("return-values", "str-subclass-with-hostile-len", POLICY, """
        class Hostile(str):
            def __len__(self):
                return -1
        def run():
            return Hostile("x")
    """),
    E("return-values", "items-raises-base-exception", skill("TypeError"), """
        class Boom(BaseException):
            pass
        class Hostile(dict):
            def items(self):
                raise Boom("no")
        def run():
            return Hostile(a=1)
    """),
    E("return-values", "items-never-ends", limit("cpu"), """
        class Hostile(dict):
            def items(self):
                while True:
                    pass
        def run():
            return Hostile(a=1)
    """, limits=CPU),
    E("return-values", "items-catches-a-violation", POLICY, """
        class Hostile(dict):
            def items(self):
                try:
                    getattr((), "__class__")
                except Exception:
                    pass
                return [("a", 1)]
        def run():
            return Hostile(a=1)
    """),
    E("return-values", "items-too-big", limit("output"), """
        class Hostile(dict):
            def items(self):
                return [("a", "x" * 50000)]
        def run():
            return Hostile(a=1)
    """),
    E("return-values", "deeply-nested-list", skill("TypeError"), """
        def run():
            x = []
            for i in range(100000):
                x = [x]
            return x
    """),
    E("return-values", "deeply-nested-dict", skill("TypeError"), """
        def run():
            x = {}
            for i in range(100000):
                x = {"a": x}
            return x
    """),
    E("return-values", "circular-list", skill("TypeError"), """
        def run():
            a = []
            a.append(a)
            return a
    """),
    E("return-values", "huge-int-from-string", skill("ValueError"), """
        def run():
            return int("9" * 10 ** 6)
    """),
    E("return-values", "huge-int", skill("TypeError"), "def run():\n    return 10 ** 5000\n"),
    E("return-values", "set", skill("TypeError"), "def run():\n    return {1, 2}\n"),
    E("return-values", "generator", skill("TypeError"), returns("(i for i in [1])")),
    E("return-values", "tools-proxy", skill("TypeError"), "def run():\n    return tools\n"),
    E("return-values", "module-view", skill("TypeError"), "import json\n" + returns("json")),
    E("return-values", "bytes", skill("TypeError"), "def run():\n    return b'abc'\n"),
    E("return-values", "function", skill("TypeError"), "def run():\n    return run\n"),
    E("return-values", "decimal", skill("TypeError"), """
        from decimal import Decimal
        def run():
            return Decimal("1.5")
    """),
    # ----------------------------------------------------------- restricted-python
    E("restricted-python", "underscore-name", POLICY, "def run():\n    _x = 1\n    return _x\n"),
    E("restricted-python", "type-builtin", skill("NameError"), returns("str(type(1))")),
    E("restricted-python", "vars", skill("NameError"), "def run():\n    return str(vars())\n"),
    E("restricted-python", "globals", skill("NameError"), returns("str(globals())")),
    E("restricted-python", "locals", skill("NameError"), "def run():\n    return str(locals())\n"),
    E("restricted-python", "dir", skill("NameError"), "def run():\n    return dir(tools)\n"),
    E("restricted-python", "super", skill("NameError"), """
        class A:
            def __init__(self):
                super()
        def run():
            return A()
    """),
    E("restricted-python", "lambda-default-dunder", POLICY, """
        def run():
            f = lambda x=().__class__: x
            return str(f())
    """),
    E("restricted-python", "default-argument-getattr", POLICY, """
        def leak(x=getattr((), "__class__")):
            return x
        def run():
            return str(leak())
    """),
    E("restricted-python", "init-subclass", POLICY, """
        class Base:
            def __init_subclass__(cls):
                pass
        def run():
            return 1
    """),
    E("restricted-python", "metaclass", POLICY, """
        class Meta:
            pass
        class A(metaclass=Meta):
            pass
        def run():
            return 1
    """),
    E("restricted-python", "del-method", POLICY, """
        class A:
            def __del__(self):
                pass
        def run():
            return 1
    """),
    E("restricted-python", "getattribute-method", POLICY, """
        class A:
            def __getattribute__(self, name):
                return 1
        def run():
            return 1
    """),
    E("restricted-python", "enum-functional-api-dunders", POLICY, """
        import re
        def finalizer(self):
            while True:
                pass
        def run():
            Enum = re.RegexFlag.mro()[-2]
            Hostile = Enum("Hostile", [("A", 1), ("__del__", finalizer), ("__class__", str)])
            return str(Hostile.A)
    """),
    E("restricted-python", "spoofed-class-in-error-message", POLICY, """
        import re
        class Forged(ToolError):
            pass
        def run():
            Enum = re.RegexFlag.mro()[-2]
            Fake = Enum("Fake", [("A", 1), ("__class__", str)])
            error = Forged("t", "m")
            error.message = Fake.A
            raise error
    """),
    E("restricted-python", "flag-functional-api", skill("TypeError"), """
        import re
        def run():
            return str(re.RegexFlag("Hostile", [("A", 1), ("__del__", print)]))
    """),
    E("restricted-python", "slots", POLICY, """
        class A:
            __slots__ = ("x",)
        def run():
            return 1
    """),
    E("restricted-python", "decorator-walk", POLICY, """
        @(lambda f: getattr(f, "__globals__"))
        def grab():
            pass
        def run():
            return str(grab)
    """),
    E("restricted-python", "print-redirect", skill("TypeError"), """
        def run():
            print >> tools, "x"
            return 1
    """),
    E("restricted-python", "exec", POLICY, "def run():\n    exec('import os')\n    return 1\n"),
    E("restricted-python", "eval", POLICY, "def run():\n    return eval('1')\n"),
    E("restricted-python", "compile", skill("NameError"), """
        def run():
            return str(compile("1", "<x>", "eval"))
    """),
    E("restricted-python", "build-class", POLICY, """
        def run():
            return str(__build_class__)
    """),
    E("restricted-python", "walrus-underscore", POLICY, "def run():\n    return (_x := 1)\n"),
    E("restricted-python", "walrus-dunder", POLICY, """
        def run():
            return str((y := ().__class__))
    """),
    E("restricted-python", "match-class-pattern", POLICY, """
        def run():
            match ():
                case object(__class__=c):
                    return str(c)
    """),
    E("restricted-python", "star-unpack-underscore", POLICY, """
        def run():
            a, *_rest = [1, 2, 3]
            return a
    """),
    E("restricted-python", "star-unpack-dunder", POLICY, """
        def run():
            return str([*().__class__.__mro__])
    """),
    E("restricted-python", "except-star", POLICY, """
        def run():
            try:
                return 1
            except* ValueError:
                return 2
    """),
    E("restricted-python", "nonlocal", POLICY, """
        def run():
            x = 1
            def inner():
                nonlocal x
                x = 2
            inner()
            return x
    """),
    E("restricted-python", "module-name", POLICY, "def run():\n    return __name__\n"),
    E("restricted-python", "assign-guard", POLICY, """
        _getattr_ = getattr
        def run():
            return 1
    """),
    E("restricted-python", "global-builtins", POLICY, """
        def run():
            global __builtins__
            __builtins__ = {}
            return 1
    """),
    E("restricted-python", "breakpoint", POLICY, "def run():\n    breakpoint()\n"),
    E("restricted-python", "input", skill("NameError"), "def run():\n    return input()\n"),
    E("restricted-python", "fullwidth-source", PARSE_ERROR, returns(f"().{FULLWIDTH_CLASS}")),
    E("restricted-python", "fullwidth-getattr", skill("AttributeError"), """
        def run():
            return str(getattr((), "\\uff3f\\uff3fclass\\uff3f\\uff3f"))
    """),
    E("restricted-python", "nested-parentheses", PARSE_ERROR, returns("(" * 999 + "1" + ")" * 999)),
    E("restricted-python", "unary-bomb", PARSE_ERROR, returns("-" * 100_000 + "1")),
    E("restricted-python", "memoryview", skill("NameError"), returns("memoryview(b'x')")),
]  # fmt: skip


# ----------------------------------------------------------------- leaks (two calls)


@dataclass(frozen=True)
class Leak:
    """``first`` tries to leave state behind; ``second`` (the next call) must not see it."""

    name: str
    first: str
    second: str
    expected: object
    #: What the first call must end with: an Expect, or None for success.
    first_expect: Expect | None = None
    #: In fresh mode the first call succeeds instead: its worker exits without running
    #: what reuse mode's cleanup runs (a generator's ``finally``), so nothing can fail.
    fresh_first_ok: bool = False
    limits: Limits = LIGHT
    check_second: Callable[[Result], None] | None = None

    @property
    def id(self) -> str:
        return f"leaks-{self.name}"


def L(name: str, first: str, second: str, expected: object, **kwargs: Any) -> Leak:
    return Leak(
        name,
        textwrap.dedent(first).lstrip("\n"),
        textwrap.dedent(second).lstrip("\n"),
        expected,
        **kwargs,
    )


LEAK_ROWS: list[Leak] = [
    L("module-global", """
        seen = []
        def run():
            seen.append(1)
            return len(seen)
    """, """
        seen = []
        def run():
            seen.append(1)
            return len(seen)
    """, 1),
    L("mutable-default", """
        def run(acc=[]):
            acc.append(1)
            return len(acc)
    """, """
        def run(acc=[]):
            acc.append(1)
            return len(acc)
    """, 1),
    L("class-attribute", """
        class Counter:
            count = 0
        def run():
            Counter.count += 1
            return Counter.count
    """, """
        class Counter:
            count = 0
        def run():
            Counter.count += 1
            return Counter.count
    """, 1),
    L("decimal-traps", """
        import decimal
        def run():
            decimal.getcontext().clear_traps()
            return str(decimal.Decimal(1) / decimal.Decimal(0))
    """, """
        import decimal
        def run():
            try:
                decimal.Decimal(1) / decimal.Decimal(0)
            except decimal.DivisionByZero:
                return "trapped"
            return "not trapped"
    """, "trapped"),
    L("decimal-precision", """
        import decimal
        def run():
            decimal.getcontext().prec = 3
            return 1
    """, """
        from decimal import Decimal
        def run():
            return str(Decimal(1) / Decimal(3))
    """, "0.3333333333333333333333333333", first_expect=POLICY),
    L("decimal-setattr-precision", """
        import decimal
        def run():
            setattr(decimal.getcontext(), "prec", 3)
            return 1
    """, """
        from decimal import Decimal
        def run():
            return str(Decimal(2) / Decimal(3))
    """, "0.6666666666666666666666666667", first_expect=POLICY),
    L("json-dumps-replaced", """
        import json
        def run():
            json.dumps = lambda *args, **kwargs: "pwned"
            return 1
    """, """
        import json
        def run():
            return json.dumps([1, 2])
    """, "[1, 2]", first_expect=POLICY),
    L("json-setattr", """
        import json
        def run():
            setattr(json, "loads", lambda s: "pwned")
            return 1
    """, """
        import json
        def run():
            return json.loads("[3]")
    """, [3], first_expect=POLICY),
    L("json-encoder-class-attribute", """
        import json
        def run():
            json.JSONEncoder.item_separator = ";"
            return 1
    """, """
        import json
        def run():
            return json.dumps([1, 2])
    """, "[1, 2]", first_expect=POLICY),
    L("math-constant", """
        def run():
            math.pi = 3
            return 1
    """, """
        def run():
            return math.pi > 3.14
    """, True, first_expect=POLICY),
    L("string-template-delimiter", """
        def run():
            string.Template.delimiter = "#"
            return 1
    """, """
        def run():
            return string.Template("$a").substitute(a="ok")
    """, "ok", first_expect=POLICY),
    L("builtin-class-method", """
        import collections
        def run():
            collections.Counter.most_common = lambda self, n=None: "pwned"
            return 1
    """, """
        import collections
        def run():
            return collections.Counter("aab").most_common(1)
    """, [["a", 2]], first_expect=POLICY),
    L("tool-error-class", """
        def run():
            ToolError.tool = "forged"
            return 1
    """, """
        def run():
            try:
                tools.boom()
            except ToolError as e:
                return e.tool
    """, "boom", first_expect=POLICY),
    L("generator-finalizer-calls-next-calls-tool", """
        def gen(ping):
            try:
                yield 1
            finally:
                ping()
        def run():
            g = gen(tools.ping)
            next(g)
            box = [g]
            box.append(box)  # a cycle: only the garbage collector frees it
            return 1
    """, """
        def run():
            garbage = []
            for i in range(100000):
                cell = [i]
                cell.append(cell)
            return 2
    """, 2, check_second=_no_tool_calls),
    L("generator-finalizer-prints-into-next-call", """
        def gen():
            try:
                yield 1
            finally:
                print("leaked from the first call")
        def run():
            g = gen()
            next(g)
            box = [g]
            box.append(box)
            return 1
    """, """
        def run():
            for i in range(100000):
                cell = [i]
                cell.append(cell)
            return 2
    """, 2),
    L("generator-finalizer-burns-next-calls-cpu", """
        def gen():
            try:
                yield 1
            finally:
                while True:
                    pass
        def run():
            g = gen()
            next(g)
            box = [g]
            box.append(box)
            return 1
    """, """
        def run():
            for i in range(100000):
                cell = [i]
                cell.append(cell)
            return 2
    """, 2, first_expect=limit("cpu"), limits=CPU, fresh_first_ok=True),
    L("compile-cache-keeps-a-huge-skill", "X = '" + "a" * 40_000_000 + """'
def run():
    return len(X)
""", """
        def run():
            return len(" " * (215 * 1024 * 1024))
    """, 215 * 1024 * 1024, limits=Limits(timeout_s=8, cpu_s=4, memory_mb=256)),
    L("regex-flag-cache-eats-next-calls-memory", """
        import re
        def run():
            for i in range(80000):
                re.RegexFlag(i)  # each value becomes a cached pseudo-member of the class
            return 1
    """, """
        def run():
            return len(" " * (120 * 1024 * 1024))
    """, 120 * 1024 * 1024, limits=Limits(timeout_s=8, cpu_s=4, memory_mb=160)),
]  # fmt: skip


# ------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def secret_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The secret, in the host's environment and in a file whose path the skill is told."""
    path = tmp_path_factory.mktemp("secret") / "secret.txt"
    path.write_text(SECRET)
    previous = os.environ.get(SECRET_ENV)
    os.environ[SECRET_ENV] = SECRET
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop(SECRET_ENV, None)
        else:
            os.environ[SECRET_ENV] = previous


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    # The default: a fresh process for every call.
    with Sandbox(max_idle_workers=1) as shared:
        yield shared


@pytest.fixture(scope="module")
def reuse_sb() -> Iterator[Sandbox]:
    # One idle worker, so consecutive successful calls run in the same warm process.
    with Sandbox(max_idle_workers=1, isolation="reuse") as shared:
        yield shared


def _ping() -> str:
    return "pong"


def _echo(**kwargs: Any) -> dict[str, Any]:
    return kwargs


def _boom() -> None:
    raise RuntimeError("the tool failed")


TOOLS: dict[str, Callable[..., Any]] = {"ping": _ping, "echo": _echo, "boom": _boom}


def _fill(source: str, marker: Path, secret_file: Path) -> str:
    return (
        source.replace("MARKER", repr(str(marker)))
        .replace("SECRET_FILE", repr(str(secret_file)))
        .replace("SECRET_ENV", repr(SECRET_ENV))
    )


@dataclass(frozen=True)
class FollowUp:
    """A benign call made right after an escape attempt, on the same sandbox."""

    n: int
    result: Result
    seconds: float

    @classmethod
    def run(cls, sandbox: Sandbox) -> FollowUp:
        n = secrets.randbelow(1000)
        started = time.monotonic()
        source = "def run(n):\n    return {'n': n + 1, 'tools': tools.ping()}\n"
        result = sandbox.run(source, "run", {"n": n}, TOOLS, LIGHT)
        return cls(n, result, time.monotonic() - started)

    def check(self) -> None:
        assert self.result.ok, self.result.error
        assert self.result.value == {"n": self.n + 1, "tools": "pong"}
        assert self.result.output == ""
        assert self.seconds < 5, "the host or the pool got slow"


def _assert_nothing_leaked(result: Result) -> None:
    error = result.error
    seen = " ".join(
        [repr(result.value), result.output, str(error), repr(vars(error) if error else None)]
        + [repr(call) for call in result.tool_calls]
    )
    assert SECRET not in seen


def _assert_host_intact(secret_file: Path, marker: Path) -> None:
    assert not marker.exists(), "the skill wrote the marker file"
    assert os.environ.get(SECRET_ENV) == SECRET
    assert secret_file.read_text() == SECRET


def _idle_pid(sb: Sandbox) -> int | None:
    pool = getattr(sb, "_pool", None)
    idle = pool.pids()["idle"] if pool is not None else []
    return idle[0] if len(idle) == 1 else None


# --------------------------------------------------------------------------- tests

LIGHT_ROWS = [row for row in ESCAPES if not row.heavy]
HEAVY_ROWS = [row for row in ESCAPES if row.heavy]


@pytest.mark.parametrize("row", LIGHT_ROWS, ids=[row.id for row in LIGHT_ROWS])
def test_escape_attempt_fails(sb, secret_file, tmp_path, row):
    marker = tmp_path / "marker"
    result = sb.run(_fill(row.source, marker, secret_file), "run", {}, TOOLS, row.limits)
    row.expect.check(result)
    if row.check is not None:
        row.check(result)
    _assert_nothing_leaked(result)
    assert list(tmp_path.iterdir()) == []
    _assert_host_intact(secret_file, marker)
    FollowUp.run(sb).check()


@pytest.fixture(scope="module")
def heavy_results(secret_file, tmp_path_factory) -> dict[str, tuple[Result, Path, FollowUp]]:
    """Run the rows that burn a whole CPU or wall-clock budget two at a time (2 cores).

    Each row is followed by a benign call on the same sandbox, from the same thread.
    """
    folder = tmp_path_factory.mktemp("heavy")

    def one(row: Escape) -> tuple[str, Result, Path, FollowUp]:
        marker = folder / f"marker-{row.id}"
        source = _fill(row.source, marker, secret_file)
        result = box.run(source, "run", {}, TOOLS, row.limits)
        return row.id, result, marker, FollowUp.run(box)

    with Sandbox(max_idle_workers=2) as box, ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(one, HEAVY_ROWS))
    return {row_id: (result, marker, after) for row_id, result, marker, after in outcomes}


# Slow: the rows burn whole CPU and wall-clock budgets (8-11 s together, in heavy_results).
@pytest.mark.slow
@pytest.mark.parametrize("row", HEAVY_ROWS, ids=[row.id for row in HEAVY_ROWS])
def test_resource_exhaustion_is_contained(secret_file, heavy_results, row):
    result, marker, after = heavy_results[row.id]
    row.expect.check(result)
    _assert_nothing_leaked(result)
    _assert_host_intact(secret_file, marker)
    after.check()


@pytest.mark.parametrize("isolation", ["fresh", "reuse"])
@pytest.mark.parametrize("row", LEAK_ROWS, ids=[row.id for row in LEAK_ROWS])
def test_state_does_not_leak_into_the_next_call(request, secret_file, row, isolation):
    sb = request.getfixturevalue("sb" if isolation == "fresh" else "reuse_sb")
    first = sb.run(row.first, "run", {}, TOOLS, row.limits)
    first_expect = None if isolation == "fresh" and row.fresh_first_ok else row.first_expect
    if first_expect is None:
        assert first.ok, first.error
    else:
        first_expect.check(first)
    worker = _idle_pid(sb) if isolation == "reuse" else None
    second = sb.run(row.second, "run", {}, TOOLS, row.limits)
    assert second.ok, second.error
    assert second.value == row.expected
    assert second.output == ""
    if row.check_second is not None:
        row.check_second(second)
    if first_expect is None and worker is not None:
        assert _idle_pid(sb) == worker, "the two calls did not share a worker"
    _assert_nothing_leaked(first)
    _assert_nothing_leaked(second)


def test_the_table_covers_the_threat_model():
    rows = [row.id for row in ESCAPES] + [row.id for row in LEAK_ROWS]
    assert len(rows) == len(set(rows)), "row ids must be unique"
    assert len(rows) >= 100
    sources = [row.source for row in ESCAPES]
    assert len(sources) == len(set(sources)), "every row must try something different"
    covered = {row.category for row in ESCAPES} | {"leaks"}
    assert covered == set(CATEGORIES)


def test_worker_trims_the_caches_a_call_can_fill():
    """White-box: what a call leaves in ``re``'s process-wide caches is dropped after it."""
    import re

    from sandbox import worker

    named = {member.value for member in re.RegexFlag.__members__.values()}
    for value in range(1 << 20, (1 << 20) + 500):
        re.RegexFlag(value)
    for i in range(40):
        re.compile("a" * 10_000 + str(i))
    re.sub("a", "\\g<0>" * 100, "a")
    assert len(re.RegexFlag._value2member_map_) >= len(named) + 500
    worker._trim_shared_caches()
    assert set(re.RegexFlag._value2member_map_) == named
    assert re._cache == {} and re._compile_repl.cache_info().currsize == 0
    assert re.compile("b+").match("bb")  # still works afterwards


def test_worker_crash_is_reported_and_contained(sb, secret_file, tmp_path):
    """The one failure a skill cannot cause itself: its worker dies under it."""
    pool = getattr(sb, "_pool", None)
    if pool is None:
        pytest.skip("the executor exposes no worker pids")

    def kill_my_worker() -> str:
        for pid in pool.pids()["busy"]:
            os.killpg(pid, signal.SIGKILL)
        time.sleep(0.05)
        return "too late"

    result = sb.run("def run():\n    return tools.kill()\n", "run", {}, {"kill": kill_my_worker})
    assert type(result.error) is WorkerCrashed
    _assert_host_intact(secret_file, tmp_path / "marker")
    FollowUp.run(sb).check()


# ---------------------------------------------------------------------- benign code


@dataclass(frozen=True)
class Benign:
    name: str
    source: str
    expected: object
    args: dict[str, Any] = field(default_factory=dict)


def B(name: str, source: str, expected: object, /, **args: Any) -> Benign:
    return Benign(name, textwrap.dedent(source).lstrip("\n"), expected, args)


BENIGN: list[Benign] = [
    B("comprehensions", """
        def run(words):
            lengths = {w: len(w) for w in words}
            upper = [w.upper() for w in words if len(w) > 1]
            letters = {c for w in words for c in w}
            return [lengths, upper, sorted(letters)]
    """, [{"ab": 2, "c": 1}, ["AB"], ["a", "b", "c"]], words=["ab", "c"]),
    B("item-augmented-assignment", """
        def run(words):
            counts = {}
            for w in words:
                counts[w] = counts.get(w, 0)
                counts[w] += 1
            grid = [[0, 0], [0, 0]]
            grid[1][0] += 5
            return [counts, grid]
    """, [{"a": 2, "b": 1}, [[0, 0], [5, 0]]], words=["a", "b", "a"]),
    B("attribute-augmented-assignment", """
        class Account:
            def __init__(self, balance):
                self.balance = balance
                self.history = []
        def run():
            account = Account(10)
            account.balance += 5
            account.balance *= 2
            account.history += ["deposit"]
            return [account.balance, account.history]
    """, [30, ["deposit"]]),
    B("attribute-writes-on-own-instances", """
        class Node:
            def __init__(self, value):
                self.value = value
                self.next = None
        def run():
            a, b = Node(1), Node(2)
            a.next = b
            setattr(b, "value", 3)
            b.label = "second"
            del b.label
            Node.kind = "linked"
            return [a.next.value, hasattr(b, "label"), a.kind]
    """, [3, False, "linked"]),
    B("sorted-key-lambda", """
        def run(people):
            by_age = sorted(people, key=lambda p: (p["age"], p["name"]))
            return [p["name"] for p in by_age]
    """, ["bo", "al", "cy"], people=[
        {"name": "al", "age": 30}, {"name": "bo", "age": 25}, {"name": "cy", "age": 30}]),
    B("data-builtins", """
        def run(xs):
            pairs = list(zip(xs, xs[1:]))
            indexed = [i * x for i, x in enumerate(xs)]
            return [min(xs), max(xs), sum(xs), any(x > 2 for x in xs),
                    all(x > 0 for x in xs), pairs, indexed, list(reversed(xs))]
    """, [1, 3, 6, True, True, [[1, 2], [2, 3]], [0, 2, 6], [3, 2, 1]], xs=[1, 2, 3]),
    B("json", """
        import json
        def run(text):
            data = json.loads(text)
            data["b"] = [1, 2]
            return json.dumps(data, sort_keys=True)
    """, '{"a": 1, "b": [1, 2]}', text='{"a": 1}'),
    B("regular-expressions", """
        import re
        def run(text):
            words = re.findall(r"[a-z]+", text)
            masked = re.sub(r"\\d", "#", text)
            pattern = re.compile(r"(?P<key>\\w+)=(?P<value>\\d+)", re.I)
            pairs = {m.group("key"): int(m.group("value")) for m in pattern.finditer(text)}
            return [words, masked, pairs]
    """, [["a", "b"], "a=# b=##", {"a": 1, "b": 22}], text="a=1 b=22"),
    B("math", """
        import math
        def run():
            return [math.sqrt(16), math.floor(2.7), math.gcd(12, 18), round(math.pi, 3),
                    math.isclose(0.1 + 0.2, 0.3), math.inf > 10 ** 100]
    """, [4.0, 2, 6, 3.142, True, True]),
    B("datetime", """
        import datetime
        def run():
            start = datetime.datetime(2024, 2, 28, 12, 30)
            later = start + datetime.timedelta(days=2, hours=3)
            delta = later - start
            day = datetime.date(2024, 3, 1)
            parsed = datetime.datetime.strptime("2024-01-31 08:15", "%Y-%m-%d %H:%M")
            return [later.isoformat(), delta.total_seconds(), day.weekday(),
                    datetime.date.fromisoformat("2024-01-31").month, parsed.hour,
                    day.strftime("%a %d"), datetime.date.today().year > 2000]
    """, ["2024-03-01T15:30:00", 183600.0, 4, 1, 8, "Fri 01", True]),
    B("collections", """
        from collections import Counter, OrderedDict, defaultdict, deque, namedtuple
        Point = namedtuple("Point", ["x", "y"])
        def run():
            counts = Counter("abracadabra").most_common(2)
            groups = defaultdict(list)
            for word in ["apple", "avocado", "banana"]:
                groups[word[0]].append(word)
            ordered = OrderedDict([("b", 1), ("a", 2)])
            ordered.move_to_end("b")
            window = deque([1, 2, 3], maxlen=3)
            window.append(4)
            p = Point(1, 2)
            return [counts, dict(groups), list(ordered), list(window), p.x + p.y, list(p)]
    """, [[["a", 5], ["b", 2]], {"a": ["apple", "avocado"], "b": ["banana"]}, ["a", "b"],
          [2, 3, 4], 3, [1, 2]]),
    B("itertools", """
        import itertools
        def run(words):
            grouped = {k: list(g) for k, g in itertools.groupby(sorted(words), key=len)}
            chained = list(itertools.chain([1], [2, 3]))
            first = list(itertools.islice(itertools.count(10, 5), 3))
            combos = list(itertools.combinations("abc", 2))
            return [grouped, chained, first, len(combos)]
    """, [{"1": ["a", "b"], "2": ["cd"]}, [1, 2, 3], [10, 15, 20], 3],
      words=["b", "cd", "a"]),
    B("statistics", """
        import statistics
        def run(xs):
            return [statistics.mean(xs), statistics.median(xs), statistics.mode(xs),
                    round(statistics.stdev(xs), 4)]
    """, [2.5, 2.5, 1, 1.291], xs=[1, 2, 3, 4]),
    B("decimal", """
        from decimal import Decimal, ROUND_HALF_UP, localcontext
        def run(prices):
            total = sum(Decimal(p) for p in prices)
            with localcontext() as context:
                rounded = (total / 3).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
            return [str(total), str(rounded)]
    """, ["3.30", "1.10"], prices=["1.10", "2.20"]),
    B("strings-and-f-strings", """
        def run(name, score):
            title = name.strip().title()
            parts = "a,b,,c".split(",")
            return [f"{title}: {score:.1f} ({score!r})", "-".join(p for p in parts if p),
                    title.startswith("Ad"), "%s=%d" % ("x", 3), f"{title:>8}|",
                    string.capwords("hello world"), string.ascii_lowercase[:3]]
    """, ["Ada Lovelace: 9.5 (9.5)", "a-b-c", True, "x=3", "Ada Lovelace|",
          "Hello World", "abc"], name="  ada lovelace ", score=9.5),
    B("own-exceptions", """
        class ValidationFailed(Exception):
            def __init__(self, field):
                self.field = field
        def check(value):
            if value < 0:
                raise ValidationFailed("amount")
            return value
        def run(values):
            log = []
            for v in values:
                try:
                    log.append(check(v))
                except ValidationFailed as e:
                    log.append("bad " + e.field)
                else:
                    log.append("ok")
                finally:
                    log.append("done")
            return log
    """, [5, "ok", "done", "bad amount", "done"], values=[5, -1]),
    B("generators", """
        def evens(limit):
            n = 0
            while n < limit:
                yield n
                n += 2
        def pairs(items):
            yield from zip(items, items[1:])
        def run():
            squares = (x * x for x in evens(7))
            return [list(squares), list(pairs([1, 2, 3])), next(evens(1))]
    """, [[0, 4, 16, 36], [[1, 2], [2, 3]], 0]),
    B("closures", """
        def make_counter():
            counts = {"n": 0}
            def bump(step=1):
                counts["n"] += step
                return counts["n"]
            return bump
        def compose(f, g):
            return lambda x: f(g(x))
        def run():
            bump = make_counter()
            bump()
            bump(5)
            inc_then_double = compose(lambda x: x * 2, lambda x: x + 1)
            return [bump(), inc_then_double(3)]
    """, [7, 8]),
    B("recursion", """
        def fib(n, memo={}):
            if n < 2:
                return n
            if n not in memo:
                memo[n] = fib(n - 1) + fib(n - 2)
            return memo[n]
        def flatten(x):
            return [y for item in x for y in flatten(item)] if isinstance(x, list) else [x]
        def run():
            return [fib(80), flatten([1, [2, [3, [4]]]])]
    """, [23416728348467685, [1, 2, 3, 4]]),
    B("unpacking", """
        def run(rows):
            first, *middle, last = [1, 2, 3, 4]
            (a, b), c = (1, 2), 3
            merged = {**{"x": 1}, **{"y": 2}}
            heads = [head for head, *tail in [[1, 2], [3, 4]]]
            total = sum(x * y for x, y in rows)
            return [first, middle, last, a + b + c, merged, heads, [*"ab", *[1]], total]
    """, [1, [2, 3], 4, 6, {"x": 1, "y": 2}, [1, 3], ["a", "b", 1], 11],
      rows=[[1, 2], [3, 3]]),
    B("loops", """
        def run(limit):
            found = []
            n = 0
            while True:
                n += 1
                if n > limit:
                    break
                if n % 3:
                    continue
                found.append(n)
            else_ran = False
            for i in range(3):
                pass
            else:
                else_ran = True
            return [found, else_ran]
    """, [[3, 6, 9], True], limit=10),
    B("tools-in-a-loop", """
        def run(ids):
            total = 0
            titles = []
            for i in ids:
                doc = tools.fetch(id=i)
                total += doc["words"]
                titles.append(doc["title"])
            try:
                tools.fetch(id=-1)
            except ToolError as e:
                missing = e.tool
            return {"total": total, "titles": titles, "missing": missing}
    """, {"total": 60, "titles": ["doc 1", "doc 2", "doc 3"], "missing": "fetch"},
      ids=[1, 2, 3]),
    B("print-and-classes", """
        class Shape:
            def __init__(self, sides):
                self.sides = sides
            def __eq__(self, other):
                return self.sides == other.sides
            def __lt__(self, other):
                return self.sides < other.sides
        class Square(Shape):
            def __init__(self):
                self.sides = 4
        def run():
            shapes = sorted([Square(), Shape(3)])
            print("smallest", shapes[0].sides, flush=True)
            return [s.sides for s in shapes] + [Square() == Shape(4), isinstance(Square(), Shape)]
    """, [3, 4, True, True]),
    B("hasattr-on-names-a-skill-may-not-read", """
        import decimal
        def run():
            return [hasattr("x", "format"), hasattr(decimal, "setcontext"),
                    hasattr((), "__class__"), hasattr([], "append"), hasattr(tools, "fetch")]
    """, [False, False, False, True, True]),
    B("string-template-and-json-keys", """
        import json
        def run():
            text = string.Template("$who likes $what").substitute(who="ann", what="tea")
            return [text, json.loads(json.dumps({1: "a"}))]
    """, ["ann likes tea", {"1": "a"}]),
]  # fmt: skip


def _fetch(id: int) -> dict[str, Any]:
    if id < 0:
        raise KeyError(id)
    return {"title": f"doc {id}", "words": 10 * id}


@pytest.mark.parametrize("program", BENIGN, ids=[program.name for program in BENIGN])
def test_benign_program_runs(sb, program):
    result = sb.run(program.source, "run", program.args, {"fetch": _fetch}, LIGHT)
    assert result.ok, result.error
    assert result.value == program.expected


def test_benign_table_size():
    assert len(BENIGN) >= 20
    assert len({program.name for program in BENIGN}) == len(BENIGN)
