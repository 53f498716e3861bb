"""The template process: warm once, confine once, then fork a fresh worker for every call.

The host (:mod:`sandbox.pool`) starts one template per pool as
``python -I -S -B -c <bootstrap> <config JSON> <sys.path entries...>`` with an empty
environment, ``/dev/null`` as stdio and one end of a ``SOCK_SEQPACKET`` socket pair as its
only other file descriptor. The template then

1. imports everything a skill may use (the policy, RestrictedPython, every allowed module and
   the lazily imported helpers they reach, such as ``_strptime`` and common codecs) and
   exercises it once, so no worker ever needs to open a file;
2. applies the process layers to itself (:func:`sandbox.confine.prepare`: a new network
   namespace, an empty capability bounding set, Landlock, ``no_new_privs``) and freezes its
   objects (``gc.freeze``), so its workers share them copy-on-write and never scan them;
3. serves the host. For each ``F`` message it forks one worker ahead of demand: two pipes,
   ``fork()``, and the worker confines itself the rest of the way (its own uid, rlimits,
   seccomp) before it reads anything. The template sends the host the worker's pid, a pidfd
   and the host's ends of the two pipes (``SCM_RIGHTS``), then closes its own copies, so no
   later worker inherits another's pipes. It reaps every worker and answers ``W <pid>`` with
   the worker's wait status once it has exited.

Every worker starts from the same template state, so in the default (fresh) mode a call runs
in a process no earlier call has touched: there is nothing to clean up between calls, and
the red-team findings about state crossing calls (module caches, a suspended generator's
``finally``, ``gc.freeze`` of trimmed objects, the compile cache) have nothing to cross.

The test harness alone may start a template with ``test_hook`` set: its workers then accept a
``raw`` request that runs plain Python (no policy) inside the confined worker, and some layers
may be left off, so each process layer can be tested with the ones before it bypassed.
``sandbox.Sandbox`` and ``sandbox.LocalExecutor`` have no way to set it.

Control messages (host -> template): ``F`` (fork one worker; ``f``: one that skips its
warm-up, when callers are already waiting), ``W <pid>`` (report its exit),
``C<source>`` (compile a skill the host has run, so later workers find it compiled);
(template -> host, JSON): ``{"ready": {layer: status}}`` once, ``{"worker": pid}`` with three
file descriptors, ``{"exit": pid, "status": wait status}``.
"""

from __future__ import annotations

import fcntl
import gc
import json
import os
import select
import signal
import socket
import struct
import sys
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Final

__all__ = ["main", "warm_up"]

#: How many exit statuses the template remembers for the host to ask about.
_EXITED_KEPT: Final = 4096
#: Longest control message from the host: ``C`` and a skill source of up to 64 KiB.
_REQUEST_BYTES: Final = 64 * 1024 + 1
#: Most file descriptors the template keeps open (one pidfd per live worker).
_TEMPLATE_OPEN_FILES: Final = 4096
#: The three descriptors handed over with a worker, as ``SCM_RIGHTS`` data.
_WORKER_FDS: Final = struct.Struct("3i")
#: The codecs a skill reaches through ``str.encode``/``bytes.decode`` besides UTF-8; imported
#: up front because a confined worker cannot import anything from disk.
_CODECS: Final = (
    "ascii",
    "latin_1",
    "utf_16",
    "utf_16_le",
    "utf_16_be",
    "utf_32",
    "utf_32_le",
    "utf_32_be",
    "utf_8_sig",
    "cp1252",
    "unicode_escape",
    "raw_unicode_escape",
    "idna",
    "punycode",
    "hex_codec",
    "base64_codec",
)


def warm_up() -> None:
    """Import and exercise everything a skill may reach, so workers never touch the disk."""
    import datetime
    import decimal
    import encodings
    import importlib

    from sandbox import policy, worker

    for name in (*policy.ALLOWED_MODULES, "typing", "_strptime"):
        importlib.import_module(name)
    for codec in _CODECS:
        try:
            importlib.import_module(f"encodings.{codec}")
        except ImportError:  # pragma: no cover - a Python without this codec
            continue
    encodings.search_function("utf-8")
    # Lazily imported or lazily built state of the allowed modules, built once here.
    datetime.datetime.strptime("2024-01-02 03:04", "%Y-%m-%d %H:%M")
    decimal.Decimal(1) / decimal.Decimal(3)
    source = (
        "import json, re, math, datetime, collections, itertools, statistics, decimal\n"
        "from typing import Literal, Optional, TypedDict, Union\n"
        "class Row(TypedDict, total=False):\n    name: str\n"
        "def run(x: Optional[int] = None) -> dict:\n"
        "    total = 0\n    for i in range(3):\n        total += i\n"
        "    words = re.findall(r'\\w+', 'a b')\n    print(words)\n"
        "    return {'x': x, 't': total, 'm': statistics.mean([1, 2]),\n"
        "            'j': json.loads(json.dumps({'a': [1.5]})), 'w': words,\n"
        "            's': f'{total:>3}', 'c': collections.Counter('ab').most_common(1)}\n"
    )
    output = policy.OutputBuffer(1000)
    namespace = policy.build_globals(worker.ToolsProxy((), _no_tool), output.collector)
    exec(policy.compile_skill(source, "<warm-up>"), namespace)
    namespace["run"](x=1)
    policy.compile_skill("def run():\n    return 1\n")
    policy.compile_skill(worker.PREWARM_SOURCE)


def _no_tool(name: str, arguments: dict[str, Any]) -> Any:
    raise RuntimeError("no tools during warm-up")


class _Template:
    def __init__(self, control: socket.socket, config: Mapping[str, Any]) -> None:
        from sandbox import confine, worker

        self.control = control
        #: Bound here, so a worker starts serving without going through the import system.
        self.serve_worker = worker.serve
        self.reuse = bool(config.get("reuse", False))
        self.test_hook = bool(config.get("test_hook", False))
        disabled = config.get("disabled_layers", []) if self.test_hook else []
        self.confinement = confine.prepare(disabled)
        self.forked = 0
        #: The template runs as ``SCHED_BATCH`` (see :func:`_schedule_as_batch`).
        self.batch = False
        #: pidfd -> pid of every worker not yet reaped.
        self.live: dict[int, int] = {}
        self.exited: OrderedDict[int, int] = OrderedDict()
        self.waiting: set[int] = set()
        self.poller = select.poll()
        self.poller.register(control, select.POLLIN)

    def send(self, message: Mapping[str, Any]) -> None:
        self.control.send(json.dumps(message, separators=(",", ":")).encode())

    def serve(self) -> None:
        self.send({"ready": self.confinement.status})
        while True:
            for fd, _ in self.poller.poll():
                if fd == self.control.fileno():
                    if not self.handle_request():
                        return
                else:
                    self.reap(fd)

    def handle_request(self) -> bool:
        try:
            data = self.control.recv(_REQUEST_BYTES)  # one message; longer ones are cut
        except OSError:
            return False
        if not data:
            return False  # the host is gone; its workers see their pipes close and exit
        if data in (b"F", b"f"):
            self.fork_worker(warm=data == b"F")
        elif data.startswith(b"C"):
            self.learn(data[1:])
        elif data.startswith(b"W "):
            pid = int(data[2:])
            if pid in self.exited:
                self.send({"exit": pid, "status": self.exited[pid]})
            else:
                self.waiting.add(pid)
        return True

    def learn(self, data: bytes) -> None:
        """Compile a skill the host has run, so workers forked from now on need not.

        The host sends only sources that a confined worker already compiled and ran without
        crashing, up to 64 KiB; the compile cache is bounded by the size of the compiled
        code (constant folding included), so a source cannot bloat every later worker.
        """
        from sandbox import policy

        try:
            policy.compile_skill(data.decode("utf-8", "surrogatepass"))
        except Exception:  # noqa: BLE001 - a source that fails here is compiled per call
            pass

    def reap(self, pidfd: int) -> None:
        pid = self.live.pop(pidfd)
        self.poller.unregister(pidfd)
        os.close(pidfd)
        _, status = os.waitpid(pid, 0)
        self.exited[pid] = status
        while len(self.exited) > _EXITED_KEPT:
            self.exited.popitem(last=False)
        if pid in self.waiting:
            self.waiting.discard(pid)
            self.send({"exit": pid, "status": status})

    def fork_worker(self, warm: bool) -> None:
        index = self.forked
        self.forked += 1
        request_read, request_write = os.pipe()
        reply_read, reply_write = os.pipe()
        # The host's ends are non-blocking (it polls them), set here rather than on the
        # host's side of a call; the worker's ends stay blocking.
        os.set_blocking(request_write, False)
        os.set_blocking(reply_read, False)
        pid = os.fork()
        if pid == 0:  # the worker
            status = 70
            try:
                _become_worker(self, request_read, reply_write, index, warm)
                status = 0
            finally:
                os._exit(status)
        os.close(request_read)
        os.close(reply_write)
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise
        try:
            # Written by hand (not json.dumps, socket.send_fds): every page the template
            # touches between forks is copied, because its last worker still shares it.
            self.control.sendmsg(
                [b'{"worker":%d}' % pid],
                [
                    (
                        socket.SOL_SOCKET,
                        socket.SCM_RIGHTS,
                        _WORKER_FDS.pack(pidfd, request_write, reply_read),
                    )
                ],
            )
        finally:
            os.close(request_write)
            os.close(reply_read)
        self.live[pidfd] = pid
        self.poller.register(pidfd, select.POLLIN)


def _become_worker(template: _Template, in_fd: int, out_fd: int, index: int, warm: bool) -> None:
    """Runs in the forked worker: keep only its pipes, confine itself, serve."""
    # Move the pipes to fds 3 and 4 (through high numbers: either may sit on 3 or 4 now),
    # then close everything else: the control socket, other workers' pidfds.
    high_in = fcntl.fcntl(in_fd, fcntl.F_DUPFD, 64)
    high_out = fcntl.fcntl(out_fd, fcntl.F_DUPFD, 64)
    in_fd, out_fd = os.dup2(high_in, 3), os.dup2(high_out, 4)
    os.closerange(5, _TEMPLATE_OPEN_FILES)
    if template.batch:  # back to the normal policy (see _schedule_as_batch)
        try:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        except OSError:  # a container that filters it: a batch worker still runs correctly
            pass
    template.confinement.enter(index)
    template.serve_worker(in_fd, out_fd, reuse=template.reuse, raw=template.test_hook, warm=warm)


def _schedule_as_batch() -> bool:
    """Run the template as ``SCHED_BATCH``: its wake-ups no longer preempt the host.

    The host's messages (fork one more, how did that worker end) and its workers' exits
    wake the template mid-call; as a normal task it would often take the host's (or the
    running worker's) CPU at once, and a fork holds it for about a millisecond. A batch
    task is never preferred on wake-up, so the template forks on whatever CPU time is
    free. Unprivileged processes may switch between the two normal policies; each worker
    switches back (:func:`_become_worker`) so its call is scheduled like any other process.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except (AttributeError, OSError):  # not Linux: the default policy is fine
        return False
    return True


def main() -> None:
    """The template's entry point (see the module docstring for its arguments)."""
    config = json.loads(sys.argv[1])
    os.environ.pop("LD_BIND_NOW", None)  # did its work when the interpreter loaded (forkserver)
    control = socket.socket(fileno=int(config["control_fd"]))
    null = os.open(os.devnull, os.O_WRONLY)  # opened now: Landlock closes the file system
    import resource

    resource.setrlimit(resource.RLIMIT_NOFILE, (_TEMPLATE_OPEN_FILES, _TEMPLATE_OPEN_FILES))
    # An ignored SIGXCPU survives exec; exceeding RLIMIT_CPU must really kill a worker.
    signal.signal(signal.SIGXCPU, signal.SIG_DFL)
    warm_up()
    template = _Template(control, config)
    template.batch = _schedule_as_batch()
    os.dup2(null, 2)  # start-up errors went to the host; from here on nothing is printed
    os.close(null)
    gc.collect()
    gc.freeze()  # shared copy-on-write with every worker, and never scanned by them
    template.serve()
