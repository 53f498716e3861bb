"""The sandbox with the host running as an unprivileged user (issue 13's process layer).

The rest of the suite runs as whoever runs pytest, here usually root, where every layer is in
force. This module starts a host process as ``nobody`` (uid and gid 65534, no supplementary
groups) and looks at what its workers get: the layers an unprivileged process can apply to
itself (no capabilities, ``no_new_privs``, seccomp, hard rlimits, Landlock) must be in force,
shown by raw attacks through the test hook as in ``test_confinement``; the ones that need
root (a uid per worker, a fresh network namespace) must be off *with a warning* that says
why and what that leaves open, never silently. A public ``Sandbox`` then runs a call.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from typing import Any

import pytest

from sandbox.confine import LAYERS, ON
from sandbox.forkserver import Template
from sandbox.pool import worker_sys_path

NOBODY = 65534
EPERM, EAGAIN, EACCES = 1, 11, 13

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux layers"),
    pytest.mark.skipif(
        os.geteuid() != 0,
        reason="switching the host to another user needs root; this suite already runs "
        "unprivileged, so its other rows show the unprivileged case",
    ),
]

#: Runs as ``nobody``: the public Sandbox's warnings, then raw code in confined workers of
#: test-hook pools (all layers; seccomp left off, to reach the layers behind it), then an
#: ordinary call. Prints one JSON object.
HOST = """
import json, os, textwrap, time, warnings

from sandbox import Limits, MappingToolHost, Sandbox
from sandbox.confine import ConfinementWarning
from sandbox.pool import WorkerPool
from sandbox.protocol import encode_frame
from sandbox.relay import InlineRunner

LIMITS = Limits(timeout_s=10, cpu_s=5, memory_mb=512)

def raw(pool, source):
    worker = pool.acquire()
    try:
        frame = encode_frame(
            {"op": "raw", "source": textwrap.dedent(source), "limits": LIMITS.to_wire()}
        )
        outcome = worker.execute(
            frame, (), MappingToolHost({}), LIMITS, time.monotonic() + 10, InlineRunner()
        )
    finally:
        pool.release(worker, reusable=False)
    assert outcome.error is None, outcome.error
    return outcome.value

out = {"euid": os.geteuid(), "groups": os.getgroups()}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    sandbox = Sandbox()
    out["status"] = sandbox.executor.confinement()
out["warnings"] = [str(w.message) for w in caught if w.category is ConfinementWarning]
result = sandbox.run("def run(n):\\n    return {'n': n + 1}\\n", "run", {"n": 41}, {})
out["call"] = [result.ok, result.value, repr(result.error)]
sandbox.close()

LIBC = "import ctypes\\nlibc = ctypes.CDLL(None, use_errno=True)\\n"
ATTACKS = json.loads(os.environ["ATTACKS"])
for name, disabled in (("full", []), ("no_seccomp", ["seccomp"])):
    pool = WorkerPool(max_idle=1, test_hook=True, disabled_layers=disabled)
    try:
        out[name] = {key: raw(pool, LIBC + code) for key, code in ATTACKS[name].items()}
    finally:
        pool.close()
print(json.dumps(out))
"""

ATTACKS = {
    # Every layer that applies, in force together.
    "full": {
        "identity": "import os\nresult = [os.getuid(), os.geteuid(), os.getgid()]",
        "socket": "import socket\nsocket.socket()",
        "open": "open('/etc/hostname').read()",
        "fork": "import os\nos.fork()",
    },
    # Seccomp left off: what the layers behind it do on their own.
    "no_seccomp": {
        # Landlock: no file access at all, even to a world-readable file.
        "landlock-read": "open('/etc/hostname').read()",
        "landlock-write": "open('/tmp/sandbox-unprivileged-escape', 'w')",
        # no_new_privs (PR_GET_NO_NEW_PRIVS is 39).
        "no-new-privs": "result = libc.prctl(39, 0, 0, 0, 0)",
        # Hard rlimits: no new process (RLIMIT_NPROC 0 holds for an unprivileged uid).
        "nproc": "import resource\nresult = list(resource.getrlimit(resource.RLIMIT_NPROC))",
        "fork": "import os\nos.fork()",
        "raise-nofile": "import resource\nresource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))",
        # Capabilities: the worker has none, so the kernel refuses setuid(0).
        "setuid-root": "import os\nos.setuid(0)",
    },
}


def _layers_as_root() -> dict[str, str]:
    """What this kernel gives a root host (to tell a missing feature from a missing privilege)."""
    template = Template(sys.executable, worker_sys_path(), reuse=False, prefork=0)
    try:
        return template.status()
    finally:
        template.close()


def _as_nobody(command: list[str], env: dict[str, str], timeout: float) -> Any:
    return subprocess.run(
        command,
        cwd="/",
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _interpreter_for_nobody() -> str:
    """A Python >= 3.11 that uid 65534 can execute: ours often lives under a directory it
    cannot enter (``/root/.pyenv``), which is the issue's point about the interpreter."""
    candidates = [sys.executable, shutil.which("python3.11"), "/usr/bin/python3"]
    tried = []
    for candidate in dict.fromkeys(c for c in candidates if c):
        try:
            done = _as_nobody(
                [candidate, "-c", "import sys; print(sys.version_info >= (3, 11))"], {}, 30
            )
        except OSError as exc:  # not executable for nobody
            tried.append(f"{candidate}: {exc.strerror}")
            continue
        if done.returncode == 0 and done.stdout.strip() == "True":
            return candidate
        tried.append(f"{candidate}: not Python >= 3.11")
    pytest.skip(f"no Python >= 3.11 that uid {NOBODY} can execute ({'; '.join(tried)})")


def _run_as_nobody() -> dict[str, Any]:
    python = _interpreter_for_nobody()
    home = tempfile.mkdtemp(prefix="sandbox-nobody-")
    os.chown(home, NOBODY, NOBODY)
    try:
        done = _as_nobody(
            [python, "-B", "-c", textwrap.dedent(HOST)],
            {
                "HOME": home,
                "TMPDIR": home,
                # Ours, RestrictedPython's and the hardening packages' folders: what the
                # template itself is given (all pure Python).
                "PYTHONPATH": os.pathsep.join(worker_sys_path()),
                "PYTHONDONTWRITEBYTECODE": "1",
                "ATTACKS": json.dumps(ATTACKS),
            },
            180,
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def nobody() -> dict[str, Any]:
    return _run_as_nobody()


def test_the_host_really_runs_unprivileged(nobody: dict[str, Any]) -> None:
    assert nobody["euid"] == NOBODY
    assert set(nobody["groups"]) <= {NOBODY}


def test_layers_that_need_root_are_off_with_a_warning_never_silently(
    nobody: dict[str, Any],
) -> None:
    status, warned = nobody["status"], nobody["warnings"]
    assert set(status) == set(LAYERS)
    for layer, why in status.items():
        if why != ON:  # every layer that is off says so, naming what is lost
            assert any(f"layer {layer!r} is off ({why})" in w for w in warned), (layer, warned)
    assert not [w for w in warned if not any(f"layer {n!r}" in w for n in status)]
    # A worker per uid needs root: off, and the reason says how to get it.
    assert status["uid"] != ON
    assert f"runs as uid {NOBODY}, not root" in status["uid"]
    assert any("workers run with the host's uid" in w for w in warned)
    # A fresh network namespace needs CAP_SYS_ADMIN: off with the system's own reason.
    assert status["network"] != ON
    assert "unshare" in status["network"] or "CLONE_NEWNET" in status["network"]


def test_layers_an_unprivileged_process_can_apply_are_in_force(nobody: dict[str, Any]) -> None:
    as_root = _layers_as_root()
    status = nobody["status"]
    for layer in ("capabilities", "no_new_privs", "rlimits"):
        assert status[layer] == ON, (layer, status[layer])
    for layer in ("seccomp", "landlock"):  # optional packages, and a kernel feature
        if as_root[layer] != ON:
            pytest.skip(f"{layer} is off even for root here: {as_root[layer]}")
        assert status[layer] == ON, (layer, status[layer])


def test_raw_attacks_are_stopped_by_the_layers_left(nobody: dict[str, Any]) -> None:
    full, alone = nobody["full"], nobody["no_seccomp"]
    # The uid layer is off: workers keep the host's uid, as the warning said.
    assert full["identity"] == {"result": [NOBODY, NOBODY, NOBODY]}
    # Seccomp: the system calls themselves are refused.
    for attack in ("socket", "open", "fork"):
        assert (full[attack]["raised"], full[attack]["errno"]) == ("PermissionError", EPERM)
    # Behind seccomp, each layer still holds on its own.
    for attack in ("landlock-read", "landlock-write"):
        assert (alone[attack]["raised"], alone[attack]["errno"]) == ("PermissionError", EACCES)
    assert alone["no-new-privs"] == {"result": 1}
    assert alone["nproc"] == {"result": [0, 0]}
    assert (alone["fork"]["raised"], alone["fork"]["errno"]) == ("BlockingIOError", EAGAIN)
    assert alone["raise-nofile"]["raised"] == "ValueError"
    assert (alone["setuid-root"]["raised"], alone["setuid-root"]["errno"]) == (
        "PermissionError",
        EPERM,
    )


def test_an_ordinary_call_runs_and_is_correct(nobody: dict[str, Any]) -> None:
    assert nobody["call"][:2] == [True, {"n": 42}], nobody["call"]
