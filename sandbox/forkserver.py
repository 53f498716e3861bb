"""Host side of the template process: start it, take the workers it forked ahead of demand.

:class:`Template` owns one template process (:mod:`sandbox.template`) and the control
socket to it. The template forks workers before anyone asks for them (``prefork`` of them are
kept ready or on their way), so taking a worker costs no fork: :meth:`Template.take` pops a
ready one (:meth:`Template.take_ready` only if one is there already, without waiting).

Workers are children of the template, not of the host, so the host learns how one ended
(exit code, the signal that killed it) by asking the template (:meth:`Template.exit_status`),
and kills one through its pidfd, which cannot hit a recycled pid.

No thread runs in the background: whichever caller needs a message from the template reads
the socket while the others wait on a condition (a leader/follower hand-off), so a call's
path never waits for a thread switch.
"""

from __future__ import annotations

import json
import math
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from sandbox.confine import ON, ConfinementWarning, describe

__all__ = ["ForkedWorker", "Template", "TemplateGone", "kill_worker"]

#: Imports the template without running the package's ``__init__`` (which would import this
#: module, subprocess, threading...), then runs it; argv: config JSON, then sys.path entries.
_BOOTSTRAP: Final = """\
import sys
sys.path[:0] = sys.argv[2:]
package = type(sys)("sandbox")
package.__path__ = [sys.argv[2] + "/sandbox"]
sys.modules["sandbox"] = package
from sandbox.template import main
main()
"""
_MESSAGE_BYTES: Final = 64 * 1024
#: One file descriptor in ``SCM_RIGHTS`` data.
_FDS: Final = struct.Struct("i")
#: Room for the three descriptors handed over with a worker.
_ANCILLARY_BYTES: Final = socket.CMSG_SPACE(3 * _FDS.size)
#: Largest skill source the template is asked to compile ahead (see Template.teach).
_TEACH_BYTES: Final = 64 * 1024
_STDERR_SHOWN: Final = 4000
#: How long a template may take to import and warm everything before it is declared broken.
_START_TIMEOUT_S: Final = 60.0
#: A worker's warm-up (:func:`sandbox.worker.prewarm`) costs about a millisecond of CPU
#: to take 0.1-0.3 ms off its call: worth it only when the CPU would otherwise idle. A
#: replacement warms up if the call it replaces found the pool idle for at least this long.
_WARM_AFTER_IDLE_S: Final = 0.001
#: ... or if that call kept its worker at least this long (ten times the warm-up).
_WARM_AFTER_BUSY_S: Final = 0.01
_T = TypeVar("_T")
#: (layer, reason) pairs already warned about in this process: one warning each, not one per
#: Sandbox.
_warned: set[tuple[str, str]] = set()


class TemplateGone(Exception):
    """The template process exited (or never started); the message says what it printed."""


@dataclass(frozen=True)
class ForkedWorker:
    """A worker the template forked: its pid and the host's ends of its pipes."""

    #: The worker's process id (its own process group and session).
    pid: int
    #: A pidfd for the worker: signals through it cannot reach a recycled pid.
    pidfd: int
    #: The pipe the host writes requests to (non-blocking).
    request_fd: int
    #: The pipe the host reads the worker's messages from (non-blocking).
    reply_fd: int

    def close(self) -> None:
        """Close the host's descriptors (the worker is not signalled)."""
        for fd in (self.pidfd, self.request_fd, self.reply_fd):
            try:
                os.close(fd)
            except OSError:
                pass


class Template:
    """One template process and the workers it has forked but nobody has taken yet.

    Args:
        python: The interpreter to run.
        sys_path: Directories to prepend to its ``sys.path`` (the first holds ``sandbox``).
        reuse: Its workers serve calls until retired (reuse mode), not one call each.
        prefork: Workers kept forked ahead of demand.
        test_hook: Test harness only: workers accept ``raw`` requests (plain Python).
        disabled_layers: Test harness only (with ``test_hook``): process layers left off.
    """

    def __init__(
        self,
        python: str,
        sys_path: list[str],
        *,
        reuse: bool,
        prefork: int,
        test_hook: bool = False,
        disabled_layers: Iterable[str] = (),
    ) -> None:
        self._prefork = max(prefork, 0)
        self._cond = threading.Condition()
        self._ready: deque[ForkedWorker] = deque()
        self._statuses: dict[int, int] = {}
        self._status: dict[str, str] | None = None
        self._asked = 0  # forks requested and not yet received
        self._reading = False
        #: The last take() found no worker waiting.
        self._starved = False
        #: Workers taken and not yet replaced (see :meth:`replenish`).
        self._out = 0
        #: When the last taken worker was replaced (``time.monotonic()``).
        self._idle_since = 0.0
        #: The latest take() came after the pool had been idle for a while (so the next
        #: replacement may warm up: see :data:`_WARM_AFTER_IDLE_S`).
        self._calm = True
        self._gone: str | None = None
        self._closed = False
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._socket = ours
        #: Messages are read into this one buffer: a new 64 KiB buffer per message (as
        #: socket.recv_fds makes) costs page faults on every read, 15 us of a call's path.
        self._buffer = bytearray(_MESSAGE_BYTES)
        config = {
            "control_fd": theirs.fileno(),
            "reuse": reuse,
            "test_hook": test_hook,
            "disabled_layers": list(disabled_layers) if test_hook else [],
        }
        # Empty, read-only working directory: nothing to read or write there, even for a
        # worker that escaped every layer.
        self.workdir = tempfile.mkdtemp(prefix="sandbox-template-")
        os.chmod(self.workdir, 0o500)
        try:
            self.proc = subprocess.Popen(
                [python, "-I", "-S", "-B", "-c", _BOOTSTRAP, json.dumps(config), *sys_path],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,  # start-up errors; /dev/null once it is warm
                # Resolve every dynamic symbol at start-up: a lazily bound one is resolved in
                # the first process that calls it, which writes to (and so copies) a page of
                # the library's symbol table in every worker that does.
                env={"LD_BIND_NOW": "1"},
                cwd=self.workdir,
                close_fds=True,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
            )
        except BaseException:
            ours.close()
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self._ask_for(self._prefork)

    # ------------------------------------------------------------------ public API

    @property
    def pid(self) -> int:
        """The template's process id."""
        return self.proc.pid

    def alive(self) -> bool:
        """False once the template has exited or been closed."""
        return self._gone is None and not self._closed

    def status(self, timeout: float = _START_TIMEOUT_S) -> dict[str, str]:
        """Each process layer and whether it is in force (``"on"``) or why not.

        Raises:
            TemplateGone: The template died before it was ready.
        """
        status = self._wait_for(lambda: self._status, timeout)
        if status is None:
            raise TemplateGone(f"the sandbox template was not ready after {timeout:g} s")
        return dict(status)

    def take(self, timeout: float = _START_TIMEOUT_S) -> ForkedWorker:
        """A ready worker for the caller's exclusive use (see :meth:`replenish`).

        Raises:
            TemplateGone: The template exited; start a new one.
        """
        worker = self._wait_for(self._pop_ready, timeout)
        if worker is None:
            raise TemplateGone(f"the sandbox template forked no worker within {timeout:g} s")
        return worker

    def take_ready(self) -> ForkedWorker | None:
        """A worker already forked, or None at once: never waits for a fork (an event loop
        may call it). Reads what the template has sent so far.

        Raises:
            TemplateGone: The template exited; start a new one.
        """
        return self._wait_for(self._pop_ready, 0.0)

    def watch_fd(self) -> int:
        """A duplicate of the socket the template's messages arrive on, for an event loop to
        watch (readable: a worker forked, most often; then :meth:`take_ready` reads it). The
        caller closes it. Being a duplicate, it stays valid when the template is closed
        meanwhile, so a loop never watches a closed descriptor or one reused for another file.

        Raises:
            TemplateGone: The template was closed.
        """
        try:
            return os.dup(self._socket.fileno())
        except OSError:
            raise TemplateGone("the sandbox was closed") from None

    def exit_status(self, pid: int, timeout: float) -> int | None:
        """The wait status of worker ``pid`` once it has exited, or None after ``timeout``."""
        with self._cond:
            known = self._statuses.pop(pid, None)
        if known is not None:
            return known
        try:
            self._send(b"W %d" % pid)
            return self._wait_for(lambda: self._statuses.pop(pid, None), timeout)
        except TemplateGone:
            return None

    def teach(self, source: str) -> None:
        """Have the template compile ``source``, so workers forked later find it compiled.

        Only for a source a worker has already compiled and run without crashing; sources
        over 64 KiB are not sent (they are compiled per call).
        """
        data = b"C" + source.encode("utf-8", "surrogatepass")
        if len(data) <= _TEACH_BYTES:
            try:
                self._send(data)
            except TemplateGone:
                pass

    def ready_pids(self) -> list[int]:
        """Pids of the workers forked and not yet taken (reads what the template sent)."""
        try:
            self._wait_for(lambda: None, 0.0)
        except TemplateGone:
            return []
        with self._cond:
            return [worker.pid for worker in self._ready]

    def close(self) -> None:
        """Kill the template and the workers nobody took. Taken workers are their owners'."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            ready, self._ready = list(self._ready), deque()
        for worker in ready:
            _signal(worker.pidfd)
            worker.close()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        self._socket.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # ------------------------------------------------------------------ messages

    def replenish(self, busy_s: float = 0.0) -> None:
        """A taken worker is done: fork its replacement now.

        Not when the worker is taken: the fork and the new worker's start-up would then
        compete for the CPU with the call itself. ``busy_s``: how long the worker was taken.
        """
        with self._cond:
            self._out = max(self._out - 1, 0)
            # The new worker warms up (worker.prewarm) if the call just done came to an idle
            # pool and none is running now, or if it was long (the warm-up is small beside
            # such calls). Otherwise short calls come back to back, the CPU is busy, and the
            # warm-up would cost more than it saves.
            warm = not self._starved and (
                (self._calm and self._out == 0) or busy_s >= _WARM_AFTER_BUSY_S
            )
            if self._out == 0:
                self._idle_since = time.monotonic()
            if not self._prefork or not self.alive():
                return
            self._asked += 1
        try:
            self._send(b"F" if warm else b"f")
        except TemplateGone:
            pass

    def _pop_ready(self) -> ForkedWorker | None:
        if self._ready:
            self._starved = False
            self._calm = (
                self._out == 0 and time.monotonic() - self._idle_since >= _WARM_AFTER_IDLE_S
            )
            self._out += 1
            return self._ready.popleft()
        self._starved = True
        if self._asked == 0:  # nothing on its way (no pre-forking, or all taken): fork one
            self._asked += 1
            self._send(b"f")  # non-blocking: cheap enough to do under the lock
        return None

    def _ask_for(self, count: int) -> None:
        with self._cond:
            self._asked += count
        for _ in range(count):
            self._send(b"F")

    def _send(self, message: bytes) -> None:
        try:
            self._socket.send(message)
        except BlockingIOError:  # the template is far behind; wait for room
            _wait_until(self._socket.fileno(), select.POLLOUT, _START_TIMEOUT_S)
            self._send(message)
        except OSError as exc:
            raise TemplateGone(self._describe_death()) from exc

    def _wait_for(self, predicate: Callable[[], _T | None], timeout: float) -> _T | None:
        """Return ``predicate()`` once it is not None, reading messages as needed."""
        deadline = time.monotonic() + timeout
        read_once = False  # even with no time left, read what has already arrived
        while True:
            with self._cond:
                while True:
                    value = predicate()
                    if value is not None:
                        return value
                    if self._closed:
                        raise TemplateGone("the sandbox was closed")
                    if self._gone is not None:
                        raise TemplateGone(self._gone)
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 and (read_once or self._reading):
                        return None  # (a reader is at work: it will hand out what came)
                    if not self._reading:
                        self._reading = True
                        break
                    self._cond.wait(remaining)
            messages: list[tuple[dict[str, Any], list[int]]] = []
            eof = False
            try:
                eof = self._receive(messages, max(remaining, 0.0))
            finally:
                # One message per read (each is one system call on a call's path); with no
                # time left, read on only while messages keep coming.
                read_once = not messages
                with self._cond:
                    self._reading = False
                    for message, fds in messages:
                        self._dispatch(message, fds)
                    if eof and self._gone is None:
                        self._gone = self._describe_death()
                    self._cond.notify_all()

    def _receive(self, into: list[tuple[dict[str, Any], list[int]]], timeout: float) -> bool:
        """Read one message (waiting up to ``timeout`` for it) into ``into``; True at EOF."""
        waited = False
        while True:
            try:
                size, ancillary, _, _ = self._socket.recvmsg_into([self._buffer], _ANCILLARY_BYTES)
            except BlockingIOError:
                if waited or timeout <= 0:
                    return False
                _wait_until(self._socket.fileno(), select.POLLIN, timeout)
                waited = True
                continue
            except OSError:
                return True
            fds = [
                fd
                for level, kind, payload in ancillary
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS
                for fd in _FDS.iter_unpack(payload[: len(payload) - len(payload) % _FDS.size])
                for fd in fd
            ]
            if not size:
                for fd in fds:
                    os.close(fd)
                return True
            try:
                message = json.loads(self._buffer[:size])
            except ValueError:
                message = {}
            into.append((message if isinstance(message, dict) else {}, fds))
            return False

    def _dispatch(self, message: dict[str, Any], fds: list[int]) -> None:
        """Act on one message (the condition's lock is held)."""
        if "worker" in message and len(fds) == 3:
            self._asked = max(self._asked - 1, 0)
            worker = ForkedWorker(int(message["worker"]), *fds)
            if self._closed:
                _signal(worker.pidfd)
                worker.close()
            else:
                self._ready.append(worker)
            return
        for fd in fds:  # descriptors nobody expects
            os.close(fd)
        if "exit" in message:
            self._statuses[int(message["exit"])] = int(message["status"])
        elif "ready" in message and isinstance(message["ready"], dict):
            self._status = {str(k): str(v) for k, v in message["ready"].items()}
            _warn_about(self._status)

    def _describe_death(self) -> str:
        try:
            self.proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            return "the sandbox template process stopped answering"
        printed = ""
        if self.proc.stderr is not None:
            try:
                os.set_blocking(self.proc.stderr.fileno(), False)
                printed = (self.proc.stderr.read(_STDERR_SHOWN) or b"").decode(errors="replace")
            except (OSError, ValueError):
                printed = ""
        said = f"; it printed:\n{printed.strip()}" if printed.strip() else ""
        return (
            f"the sandbox template process exited with status {self.proc.returncode}{said}\n"
            "Check that RestrictedPython imports in this interpreter "
            "(python -c 'import RestrictedPython')"
        )


def _wait_until(fd: int, events: int, timeout: float) -> None:
    """poll(), not select(): the host may hold more than FD_SETSIZE descriptors."""
    poller = select.poll()
    poller.register(fd, events)
    poller.poll(max(0, math.ceil(timeout * 1000)))


def _signal(pidfd: int) -> None:
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except (ProcessLookupError, OSError):
        pass


def kill_worker(worker: ForkedWorker) -> None:
    """SIGKILL a worker through its pidfd (a no-op if it is already gone)."""
    _signal(worker.pidfd)


def _warn_about(status: dict[str, str]) -> None:
    for layer, why in status.items():
        if why == ON or (layer, why) in _warned:
            continue
        _warned.add((layer, why))
        for line in describe({layer: why}):
            warnings.warn(line, ConfinementWarning, stacklevel=2)
