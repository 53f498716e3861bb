"""Security rows for the process layer and for state crossing calls (issue 13).

Each row bypasses the RestrictedPython policy on purpose: the test harness starts a
template with ``test_hook=True``, whose workers accept a ``raw`` request, plain Python run
inside the confined worker. A row asserts the exact failure (exception class and errno) that
the layer under test produces, then that the next ordinary call on the same pool is clean and
correct. The layer tables run each layer *alone* (every other process layer left off), so a
layer is shown to hold on its own; the full table runs with every layer on.

Linux only: the layers are Linux features. Rows that need root (uids, capabilities,
namespaces) are skipped with the reason when the suite runs unprivileged.
"""

from __future__ import annotations

import inspect
import os
import secrets
import socket
import sys
import textwrap
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sandbox import Limits, LocalExecutor, MappingToolHost, Sandbox, WorkerCrashed
from sandbox.confine import LAYERS, ON, SECCOMP_ALLOWED, ConfinementWarning
from sandbox.forkserver import Template
from sandbox.pool import WorkerPool, worker_sys_path
from sandbox.protocol import encode_frame
from sandbox.relay import InlineRunner

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux layers")
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (uids, namespaces)")

LIMITS = Limits(timeout_s=10, cpu_s=5, memory_mb=512, output_bytes=100_000)
EPERM, EAGAIN, EACCES, EFBIG, EMFILE, ENETUNREACH = 1, 11, 13, 27, 24, 101


# ------------------------------------------------------------------------ harness


def _sandbox_on(pool: WorkerPool) -> Sandbox:
    executor = LocalExecutor(max_idle_workers=0)  # its own pool is never started
    executor.pool.close()
    executor.pool = pool
    return Sandbox(executor=executor)


class Harness:
    """A test-hook pool, raw calls into its workers, and ordinary calls on the same pool."""

    def __init__(self, disabled: tuple[str, ...] = (), isolation: str = "fresh") -> None:
        self.pool = WorkerPool(
            max_idle=1, isolation=isolation, test_hook=True, disabled_layers=disabled
        )
        self.sandbox = _sandbox_on(self.pool)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self.status = self.pool.confinement()
        for warning in caught:  # each layer left off is announced, never silently
            assert warning.category is ConfinementWarning
            assert any(f"layer {layer!r} is off" in str(warning.message) for layer in disabled)

    def raw(self, source: str, limits: Limits = LIMITS) -> dict[str, Any]:
        """Run plain Python in a confined worker; its ``result`` or what it raised."""
        worker = self.pool.acquire()
        try:
            frame = encode_frame(
                {"op": "raw", "source": textwrap.dedent(source), "limits": limits.to_wire()}
            )
            deadline = time.monotonic() + limits.timeout_s
            outcome = worker.execute(
                frame, (), MappingToolHost({}), limits, deadline, InlineRunner()
            )
        finally:
            self.pool.release(worker, reusable=True)
        assert outcome.error is None, outcome.error
        assert isinstance(outcome.value, dict)
        return outcome.value

    def template_pid(self) -> int:
        """The template's pid (the parent of a worker forked ahead of demand)."""
        return int(_status_of(_ready_worker(self))["PPid"])

    def fill(self, source: str) -> str:
        return source.replace("TEMPLATE_PID", str(self.template_pid()))

    def check_next_call(self) -> None:
        """The next ordinary call on this pool is clean and correct."""
        n = secrets.randbelow(1000)
        source = "def run(n):\n    return {'n': n + 1, 'tools': tools.ping()}\n"
        result = self.sandbox.run(source, "run", {"n": n}, {"ping": lambda: "pong"}, LIMITS)
        assert result.ok, result.error
        assert result.value == {"n": n + 1, "tools": "pong"}
        assert result.output == ""

    def close(self) -> None:
        self.sandbox.close()


@pytest.fixture(scope="module")
def harnesses() -> Iterator[Callable[..., Harness]]:
    made: dict[tuple[tuple[str, ...], str], Harness] = {}

    def get(disabled: tuple[str, ...] = (), isolation: str = "fresh") -> Harness:
        key = (tuple(sorted(disabled)), isolation)
        if key not in made:
            made[key] = Harness(key[0], isolation)
        return made[key]

    yield get
    for harness in made.values():
        harness.close()


def only(*layers: str) -> tuple[str, ...]:
    """The layers in force for a row; every other process layer is disabled."""
    assert set(layers) <= set(LAYERS), layers
    return layers


def raised(kind: str, errno: int | None) -> Callable[[dict[str, Any]], None]:
    def check(value: dict[str, Any]) -> None:
        assert value.get("raised") == kind, value
        assert value.get("errno") == errno, value

    check.__name__ = f"raised {kind} errno={errno}"
    return check


def result_is(expected: object) -> Callable[[dict[str, Any]], None]:
    def check(value: dict[str, Any]) -> None:
        assert "raised" not in value, value
        assert value["result"] == expected, value

    return check


# libc calls the allowed modules never make, reached through ctypes (loaded by the template).
LIBC = "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"


def syscall(number_x86_64: int, *args: int | str) -> str:
    """Raw code that makes a system call and raises OSError with its errno on failure."""
    arguments = ", ".join(str(a) for a in args)
    return (
        LIBC
        + f"if libc.syscall({number_x86_64}{', ' if args else ''}{arguments}) == -1:\n"
        + "    e = ctypes.get_errno()\n    raise OSError(e, 'failed')\nresult = 'made'\n"
    )


x86_64_only = pytest.mark.skipif(
    os.uname().machine != "x86_64", reason="the row names an x86_64 system call number"
)


@dataclass(frozen=True)
class Row:
    """Raw code that attacks the process layer, and what must stop it."""

    name: str
    source: str
    check: Callable[[dict[str, Any]], None]
    #: The layers in force for this row (all of them: the full table).
    layers: tuple[str, ...] = LAYERS
    marks: tuple[Any, ...] = ()

    def param(self) -> Any:
        return pytest.param(self, id=self.name, marks=self.marks)


def sys_row(name: str, number: int, *args: int | str) -> Row:
    """A row that makes system call ``number`` (x86_64) directly; seccomp must refuse it."""
    return Row(name, syscall(number, *args), raised("PermissionError", EPERM), marks=(x86_64_only,))


# ---------------------------------------------------------- every layer on, one attack each

FULL_ROWS = [
    Row("read-a-system-file", "open('/etc/hostname').read()", raised("PermissionError", EPERM)),
    Row("list-the-root-directory", "import os\nos.listdir('/')", raised("PermissionError", EPERM)),
    Row("write-a-file", "open('/tmp/sandbox-escape', 'w')", raised("PermissionError", EPERM)),
    Row("make-a-directory", "import os\nos.mkdir('/tmp/sbx')", raised("PermissionError", EPERM)),
    Row("stat-a-path", "import os\nos.stat('/etc/passwd')", raised("PermissionError", EPERM)),
    Row(
        "symlink-to-a-secret",
        "import os\nos.symlink('/etc/shadow', '/tmp/sbx-link')",
        raised("PermissionError", EPERM),
    ),
    Row(
        "rename-a-file",
        "import os\nos.rename('/etc/hostname', '/tmp/sbx-renamed')",
        raised("PermissionError", EPERM),
    ),
    Row("change-directory", "import os\nos.chdir('/')", raised("PermissionError", EPERM)),
    Row(
        "read-the-interpreter",
        "import os, sys\nopen(os.__file__).read()",
        raised("PermissionError", EPERM),
    ),
    Row(
        "import-a-module-not-loaded",
        "import sqlite3",
        raised("ModuleNotFoundError", None),
    ),
    Row("fork", "import os\nos.fork()", raised("PermissionError", EPERM)),
    Row(
        "execve-a-shell",
        "import os\nos.execv('/bin/sh', ['sh', '-c', 'true'])",
        raised("PermissionError", EPERM),
    ),
    Row(
        "start-a-thread",
        "import _thread\n_thread.start_new_thread(print, ())",
        raised("RuntimeError", None),
    ),
    Row(
        "kill-the-template",
        "import os, signal\nos.kill(TEMPLATE_PID, signal.SIGKILL)",
        raised("PermissionError", EPERM),
    ),
    Row("kill-pid-1", "import os\nos.kill(1, 0)", raised("PermissionError", EPERM)),
    Row("setuid-root", "import os\nos.setuid(0)", raised("PermissionError", EPERM)),
    Row("chroot", "import os\nos.chroot('/')", raised("PermissionError", EPERM)),
    Row("tcp-socket", "import socket\nsocket.socket()", raised("PermissionError", EPERM)),
    Row(
        "udp-socket",
        "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_DGRAM)",
        raised("PermissionError", EPERM),
    ),
    Row(
        "unix-socket-to-a-sibling",
        "import socket\nsocket.socket(socket.AF_UNIX, socket.SOCK_STREAM)",
        raised("PermissionError", EPERM),
    ),
    Row("socketpair", "import socket\nsocket.socketpair()", raised("PermissionError", EPERM)),
    sys_row("ptrace-attach-the-template", 101, 16, "TEMPLATE_PID", 0, 0),
    sys_row("mount", 165, 0, 0, 0, 0, 0),
    sys_row("unshare-a-user-namespace", 272, 0x10000000),
    sys_row("setns", 308, 0, 0),
    sys_row("bpf", 321, 0, 0, 0),
    sys_row("io-uring-setup", 425, 1, 0),
    sys_row("userfaultfd", 323, 0),
    sys_row("perf-event-open", 298, 0, 0, -1, -1, 0),
    sys_row("process-vm-readv-the-template", 310, "TEMPLATE_PID", 0, 0, 0, 0, 0),
    sys_row("keyctl", 250, 0, 0, 0, 0, 0),
    sys_row("memfd-create", 319, 0, 0),
    sys_row("pidfd-open-the-template", 434, "TEMPLATE_PID", 0),
    Row(
        "raise-the-hard-memory-limit",
        "import resource\nresource.setrlimit(resource.RLIMIT_AS, (-1, -1))",
        raised("ValueError", None),
    ),
    Row(
        "raise-the-hard-cpu-limit",
        "import resource\nresource.setrlimit(resource.RLIMIT_CPU, (10**6, 10**6))",
        raised("ValueError", None),
    ),
    Row(
        "raise-the-open-files-limit",
        "import resource\nresource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))",
        raised("ValueError", None),
    ),
    Row("allocate-past-the-limit", "x = bytearray(2 * 1024 ** 3)", raised("MemoryError", None)),
    Row(
        "no-inherited-descriptors",
        """
        import os
        open_fds = []
        for fd in range(5, 256):
            try:
                os.write(fd, b"")
                open_fds.append(fd)
            except OSError:
                pass
        result = open_fds
        """,
        result_is([]),
    ),
    # LC_CTYPE is the interpreter's own locale coercion (PEP 538), set at its start-up.
    Row(
        "empty-environment",
        "import os\nresult = sorted(set(os.environ) - {'LC_CTYPE'})",
        result_is([]),
    ),
    Row(
        "unprivileged-identity",
        "import os\nresult = [os.getuid() == 0, os.getgid() == 0, os.geteuid() == 0]",
        result_is([False, False, False]),
        marks=(root_only,),
    ),
]


@pytest.mark.parametrize("row", [row.param() for row in FULL_ROWS])
def test_every_layer_on_stops_the_raw_attack(harnesses, row: Row) -> None:
    harness = harnesses()
    if os.geteuid() == 0:
        assert harness.pool.confinement() == dict.fromkeys(LAYERS, ON)
    row.check(harness.raw(harness.fill(row.source)))
    harness.check_next_call()


# --------------------------------------------------- each layer alone (the others are off)

LAYER_ROWS = [
    # seccomp alone: the system call itself is refused.
    Row("seccomp-socket", "import socket\nsocket.socket()", raised("PermissionError", EPERM),
        only("seccomp")),
    Row("seccomp-open", "open('/etc/hostname')", raised("PermissionError", EPERM),
        only("seccomp")),
    Row("seccomp-fork", "import os\nos.fork()", raised("PermissionError", EPERM),
        only("seccomp")),
    Row("seccomp-execve", "import os\nos.execv('/bin/true', ['true'])",
        raised("PermissionError", EPERM), only("seccomp")),
    # Landlock alone: the file system answers "access denied".
    Row("landlock-read", "open('/etc/hostname').read()", raised("PermissionError", EACCES),
        only("landlock")),
    Row("landlock-list", "import os\nos.listdir('/')", raised("PermissionError", EACCES),
        only("landlock")),
    Row("landlock-write", "open('/tmp/sandbox-escape-landlock', 'w')",
        raised("PermissionError", EACCES), only("landlock")),
    Row("landlock-execve", "import os\nos.execv('/bin/true', ['true'])",
        raised("PermissionError", EACCES), only("landlock")),
    # The network namespace alone: a socket can be made, but there is no route anywhere.
    Row("network-loopback", """
        import socket
        s = socket.socket()
        s.settimeout(2)
        s.connect(('127.0.0.1', PORT))
        """, raised("OSError", ENETUNREACH), only("network"), (root_only,)),
    # The uid alone: root's files and processes are out of reach.
    Row("uid-read-a-root-only-file", "open(SECRET_FILE).read()",
        raised("PermissionError", EACCES), only("uid"), (root_only,)),
    Row("uid-kill-the-template", "import os\nos.kill(TEMPLATE_PID, 0)",
        raised("PermissionError", EPERM), only("uid"), (root_only,)),
    # Capabilities (with the uid change that clears them): privileged calls fail.
    Row("capabilities-chroot", "import os\nos.chroot('/')", raised("PermissionError", EPERM),
        only("uid", "capabilities"), (root_only,)),
    Row("capabilities-setuid-root", "import os\nos.setuid(0)",
        raised("PermissionError", EPERM), only("uid", "capabilities"), (root_only,)),
    # rlimits (with the uid, since root ignores RLIMIT_NPROC): no process, no memory.
    Row("rlimits-fork", "import os\nos.fork()", raised("BlockingIOError", EAGAIN),
        only("uid", "rlimits"), (root_only,)),
    Row("rlimits-open-files", "import os\nfor _ in range(64):\n    os.dup(0)",
        raised("OSError", EMFILE), only("rlimits")),
    Row("rlimits-file-size", "with open(SCRATCH_FILE, 'w') as f:\n    f.write('x')",
        raised("OSError", EFBIG), only("rlimits")),
]  # fmt: skip


@pytest.fixture(scope="module")
def listener() -> Iterator[socket.socket]:
    """A TCP listener on the host's loopback that no worker may reach."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.setblocking(False)
    yield server
    server.close()


@pytest.fixture(scope="module")
def root_only_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("root-only")
    os.chmod(folder, 0o755)
    path = folder / "secret.txt"
    path.write_text("sandbox-secret-" + secrets.token_hex(8))
    os.chmod(path, 0o600)
    return path


@pytest.mark.parametrize("row", [row.param() for row in LAYER_ROWS])
def test_each_layer_alone_stops_the_raw_attack(
    harnesses, listener, root_only_file, tmp_path, row
) -> None:
    harness = harnesses(tuple(layer for layer in LAYERS if layer not in row.layers))
    status = harness.pool.confinement()
    for layer in row.layers:
        assert status[layer] == ON, f"{layer} is off here: {status[layer]}"
    for layer in set(LAYERS) - set(row.layers):
        assert status[layer] == "disabled by the test harness"
    source = row.source.replace("PORT", str(listener.getsockname()[1]))
    source = source.replace("SECRET_FILE", repr(str(root_only_file)))
    source = source.replace("SCRATCH_FILE", repr(str(tmp_path / "scratch")))
    row.check(harness.raw(harness.fill(source)))
    with pytest.raises(BlockingIOError):
        listener.accept()  # nothing got through
    harness.check_next_call()


# ------------------------------------------------------------- what the host can observe


def _status_of(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def _ready_worker(harness: Harness) -> int:
    harness.pool.confinement()  # the template runs (and forks one worker ahead of demand)
    for _ in range(500):
        idle = harness.pool.pids()["idle"]
        if idle:
            return idle[0]
        time.sleep(0.01)
    raise AssertionError("no worker was forked ahead of demand")


def _waiting_for_its_request(pid: int) -> None:
    """Return once worker ``pid`` sleeps in its first read (it was just forked, maybe)."""
    for _ in range(500):
        if "pipe_read" in Path(f"/proc/{pid}/wchan").read_text():
            return
        time.sleep(0.01)
    raise AssertionError(f"worker {pid} never waited for its request")


def test_the_template_never_preempts_on_wake_up_and_its_workers_are_normal(harnesses) -> None:
    harness = harnesses()
    pid = _ready_worker(harness)
    _waiting_for_its_request(pid)  # it switched back before it confined itself
    assert os.sched_getscheduler(harness.template_pid()) == os.SCHED_BATCH
    assert os.sched_getscheduler(pid) == os.SCHED_OTHER
    harness.check_next_call()


@root_only
def test_a_waiting_worker_is_confined_before_it_reads_anything(harnesses) -> None:
    harness = harnesses()
    pid = _ready_worker(harness)
    _waiting_for_its_request(pid)  # handed to the host at fork: it may still be starting
    status = _status_of(pid)
    # Not dumpable: its /proc files stay root's, so a process of its own uid cannot read or
    # trace it.
    assert os.stat(f"/proc/{pid}/environ").st_uid == 0
    assert status["CapEff"].strip("0") == "" and status["CapPrm"].strip("0") == ""
    assert status["CapBnd"].strip("0") == "" and status["CapAmb"].strip("0") == ""
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"  # filter mode
    uid = status["Uid"].split()
    assert len(set(uid)) == 1 and uid[0] != "0"
    assert status["Groups"].strip() == ""


@root_only
def test_workers_have_distinct_uids_and_no_network_of_the_hosts(harnesses) -> None:
    harness = harnesses()
    workers = [harness.pool.acquire(), harness.pool.acquire()]  # both alive at once
    try:
        uids = {_status_of(worker.pid)["Uid"] for worker in workers}
        assert len(uids) == 2
        host_net = os.readlink("/proc/self/ns/net")
        for worker in workers:
            assert os.readlink(f"/proc/{worker.pid}/ns/net") != host_net
    finally:
        for worker in workers:
            harness.pool.release(worker, reusable=False)


def test_the_seccomp_allow_list_is_small() -> None:
    # A reviewer reads the whole list; nothing that reaches outside the process is on it.
    assert len(SECCOMP_ALLOWED) < 50
    for name in ("open", "openat", "socket", "connect", "execve", "clone", "fork", "kill",
                 "ptrace", "mount", "unshare", "setuid", "prctl", "ioctl", "bpf"):  # fmt: skip
        assert name not in SECCOMP_ALLOWED


# ------------------------------------------------------------ the hook stays in the harness


def test_production_entry_points_cannot_enable_the_test_hook() -> None:
    for entry in (Sandbox, LocalExecutor):
        parameters = inspect.signature(entry).parameters
        assert "test_hook" not in parameters and "disabled_layers" not in parameters
    with pytest.raises(ValueError, match="for the test harness only"):
        WorkerPool(disabled_layers=["seccomp"])
    # A production worker treats a raw request as a broken host: it exits, running nothing.
    with Sandbox(max_idle_workers=1) as box:
        pool = box.executor.pool  # type: ignore[attr-defined]
        worker = pool.acquire()
        frame = encode_frame({"op": "raw", "source": "result = 1", "limits": LIMITS.to_wire()})
        deadline = time.monotonic() + LIMITS.timeout_s
        outcome = worker.execute(frame, (), MappingToolHost({}), LIMITS, deadline, InlineRunner())
        pool.release(worker, reusable=False)
        assert type(outcome.error) is WorkerCrashed and outcome.value is None
        assert outcome.error.exitcode == 0
        assert box.run("def run():\n    return 'clean'\n", "run", {}, {}).value == "clean"


def test_a_template_without_the_hook_ignores_disabled_layers() -> None:
    template = Template(
        sys.executable, worker_sys_path(), reuse=False, prefork=0, disabled_layers=["seccomp"]
    )
    try:
        assert template.status()["seccomp"] != "disabled by the test harness"
    finally:
        template.close()


# ---------------------------------------------------- state crossing calls (fresh workers)


@dataclass(frozen=True)
class Plant:
    """Raw code leaves state behind in one call; the next call must not see it."""

    name: str
    plant: str
    probe: str
    #: What the probe's ``result`` must be in a worker no earlier call touched.
    clean: object

    def param(self) -> Any:
        return pytest.param(self, id=self.name)


PLANTS = [
    Plant("re-cache-str-subclass-key", """
        import re
        class Key(str):
            token = "secret-token"
        re.compile(Key("abc"))
        result = any(hasattr(k[1], "token") for k in re._cache)
        """, """
        import re
        result = [k for k in re._cache if getattr(k[1], "token", None)]
        """, []),
    Plant("typing-cache-keeps-an-object", """
        import typing
        class Marker:
            pass
        typing.Literal[Marker()]
        result = True
        """, """
        import gc
        result = [type(o).__name__ for o in gc.get_objects() if type(o).__name__ == "Marker"]
        """, []),
    Plant("strptime-regex-cache", """
        import _strptime
        _strptime._regex_cache["%Q-planted"] = "planted"
        result = True
        """, """
        import _strptime
        result = "%Q-planted" in _strptime._regex_cache
        """, False),
    Plant("generator-finally-changes-decimal", """
        import decimal, re
        def gen():
            try:
                yield 1
            finally:
                decimal.getcontext().prec = 3
        g = gen()
        next(g)
        class Key(str):
            pass
        key = Key("gen-key")
        key.g = g
        re.compile(key)
        result = True
        """, """
        import decimal, gc
        gc.collect()
        result = str(decimal.Decimal(1) / decimal.Decimal(3))
        """, "0.3333333333333333333333333333"),
    Plant("gc-freeze-keeps-a-big-object", """
        import gc
        keep = [bytearray(100 * 1024 * 1024)]
        gc.freeze()
        result = gc.get_freeze_count() > 0
        """, """
        x = bytearray(400 * 1024 * 1024)
        result = len(x)
        """, 400 * 1024 * 1024),
    # (The worker itself encodes its answer with json.dumps and len: those stay intact.)
    Plant("builtins-replaced", """
        import builtins
        builtins.sorted = lambda x: "pwned"
        builtins.abs = lambda x: -1
        result = True
        """, """
        result = [sorted([2, 1]), abs(-3)]
        """, [[1, 2], 3]),
    Plant("allowed-module-replaced", """
        import json, sys
        json.loads = lambda s: "pwned"
        sys.modules["statistics"].mean = lambda xs: "pwned"
        result = True
        """, """
        import json, statistics
        result = [json.loads('"x"'), statistics.mean([1, 3])]
        """, ["x", 2]),
    Plant("policy-guard-patched", """
        from sandbox import policy
        policy.ALLOWED_MODULES += ("os",)
        result = True
        """, """
        from sandbox import policy
        result = "os" in policy.ALLOWED_MODULES
        """, False),
    Plant("decimal-context-changed", """
        import decimal
        decimal.setcontext(decimal.Context(prec=2))
        result = True
        """, """
        import decimal
        result = decimal.getcontext().prec
        """, 28),
    Plant("regex-flag-pseudo-members", """
        import re
        for i in range(1 << 20, (1 << 20) + 2000):
            re.RegexFlag(i)
        result = True
        """, """
        import re
        result = len(re.RegexFlag._value2member_map_) > 100
        """, False),
    Plant("module-level-global-of-the-worker", """
        from sandbox import worker
        worker._MAX_MESSAGE_CHARS = 1
        result = True
        """, """
        from sandbox import worker
        result = worker._MAX_MESSAGE_CHARS
        """, 4000),
]  # fmt: skip


@pytest.mark.parametrize("plant", [p.param() for p in PLANTS])
def test_state_planted_by_one_call_is_gone_in_the_next(harnesses, plant: Plant) -> None:
    harness = harnesses()
    planted = harness.raw(plant.plant)
    assert "raised" not in planted, planted
    probe = harness.raw(plant.probe)
    assert "raised" not in probe, probe
    assert probe["result"] == plant.clean
    harness.check_next_call()


def test_a_poisoned_compile_cache_does_not_reach_the_next_call(harnesses) -> None:
    """Raw code swaps the compiled code of a skill in its worker's cache; the next call of
    that very skill (an ordinary call) still runs the real source."""
    harness = harnesses()
    source = "def run(x):\n    return x * 2\n"
    poison = f"""
        from sandbox import policy
        real = policy.compile_skill({source!r})
        fake = policy.compile_skill("def run(x):\\n    return 'poisoned'\\n")
        for key, (code, size) in list(policy._compiled.items()):
            if code is real:
                policy._compiled[key] = (fake, size)
        result = policy.compile_skill({source!r}) is fake
        """
    assert harness.raw(poison) == {"result": True}  # the poison works within its own call
    result = harness.sandbox.run(source, "run", {"x": 21}, {}, LIMITS)
    assert result.ok and result.value == 42
    harness.check_next_call()


def test_constant_folding_in_one_call_leaves_the_next_its_memory(harnesses) -> None:
    """720 KB of source folded to ~245 MB in a reused worker's compile cache; a fresh worker
    drops it with the process."""
    harness = harnesses()
    lines = "".join(f"c{i} = '{i:05d}' * 800\n" for i in range(10_000))  # 0.25 MB -> 40 MB
    source = lines + "def run():\n    return 1\n"
    limits = Limits(timeout_s=30, cpu_s=20, memory_mb=512)
    first = harness.sandbox.run(source, "run", {}, {}, limits)
    assert first.ok, first.error
    grab = "def run():\n    return len(' ' * (400 * 1024 * 1024))\n"
    second = harness.sandbox.run(grab, "run", {}, {}, limits)
    assert second.ok and second.value == 400 * 1024 * 1024, second.error
    harness.check_next_call()


def test_reuse_mode_is_the_documented_exception(harnesses) -> None:
    """In reuse mode raw-planted state does cross calls: that is why it is opt-in."""
    harness = harnesses(isolation="reuse")
    harness.raw("import builtins\nbuiltins.sandbox_planted = 'still here'\nresult = True")
    assert harness.raw("import builtins\nresult = builtins.sandbox_planted") == {
        "result": "still here"
    }


# ------------------------------------------------------------- compiled ahead, within budget


def test_workers_are_forked_from_a_template_without_threading(harnesses) -> None:
    """The seccomp bindings import threading (through ctypes.util); a helper process builds
    the program, so no worker runs threading's after-fork handler, and the layer holds."""
    harness = harnesses()
    probe = "import sys\nresult = sorted({'threading', 'subprocess'} & set(sys.modules))"
    assert harness.raw(probe) == {"result": []}
    if harness.status["seccomp"] == ON:
        socket_call = "import socket\nsocket.socket()\nresult = 'opened'"
        assert harness.raw(socket_call)["errno"] == EPERM


def test_the_template_compiles_a_skill_once_it_has_run(harnesses) -> None:
    harness = harnesses()
    doc = "A skill long enough to need more than one small read. " * 200  # ~11 KB
    source = f'def run(x):\n    """{doc}"""\n    return x + {secrets.randbelow(10**6)}\n'
    probe = f"""
        from sandbox import policy
        before = len(policy._compiled)
        policy.compile_skill({source!r})
        result = len(policy._compiled) == before  # True: it was compiled already
        """
    assert harness.raw(probe) == {"result": False}
    assert harness.sandbox.run(source, "run", {"x": 1}, {}, LIMITS).ok
    for _ in range(3):  # the workers forked ahead before the template learned it
        harness.check_next_call()
    assert harness.raw(probe) == {"result": True}


def test_the_compile_cache_is_bounded_by_compiled_size_not_source_size() -> None:
    from sandbox.policy import compile_skill

    small = "def run():\n    return 1\n"
    assert compile_skill(small) is compile_skill(small)
    # ~50 KB of source folds into ~8 MB of distinct constants: too big to keep between calls.
    folded = "".join(f"c{i} = '{i:05d}' * 800\n" for i in range(2000)) + small
    assert compile_skill(folded) is not compile_skill(folded)


def test_a_layer_that_is_off_is_announced_once_with_what_is_lost(monkeypatch) -> None:
    from sandbox import forkserver

    monkeypatch.setattr(forkserver, "_warned", set())
    template = Template(
        sys.executable,
        worker_sys_path(),
        reuse=False,
        prefork=0,
        test_hook=True,
        disabled_layers=["landlock"],
    )
    try:
        with pytest.warns(ConfinementWarning) as caught:
            status = template.status()
        assert status["landlock"] == "disabled by the test harness"
        assert [str(w.message) for w in caught] == [
            "sandbox layer 'landlock' is off (disabled by the test harness); a worker that "
            "escapes the policy can read the files its uid can read"
        ]
    finally:
        template.close()


def test_a_killed_template_is_replaced_and_calls_go_on() -> None:
    harness = Harness()
    try:
        harness.check_next_call()
        template_pid = harness.template_pid()
        os.kill(template_pid, 9)
        for _ in range(5):  # the workers it forked ahead still serve, then a new template
            harness.check_next_call()
        assert harness.template_pid() != template_pid
    finally:
        harness.close()
