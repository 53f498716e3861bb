"""The process layer: what confines a worker even if the RestrictedPython policy falls.

The policy (:mod:`sandbox.policy`) decides what skill code may *say*; this module decides what
the process running it can *do*. Every layer here works on its own, so a hole in one (or in
the policy) is still caught by the others. The template process (:mod:`sandbox.template`)
applies them after it has imported everything a skill may use, so neither it nor its workers
need the file system afterwards (the interpreter may live under a directory, such as
``/root``, that the unprivileged worker could not even read).

=================  =============================================  =============================
layer              how                                            what it stops
=================  =============================================  =============================
``uid``            each worker gets its own unprivileged uid and  reading or signalling the host
                   gid and no supplementary groups (when          and other workers, files owned
                   started as root); not dumpable                 by root, ptrace by a sibling
``capabilities``   the template empties the bounding set; the     every privileged operation
                   uid change clears the worker's capabilities    (mount, raw sockets, setuid)
``no_new_privs``   ``PR_SET_NO_NEW_PRIVS``                        regaining privileges via
                                                                  set-uid files (no execve too)
``seccomp``        an allow-list of the system calls a computing  execve, socket, ptrace, mount,
                   Python process needs; the rest fail with       fork, kill, bpf, io_uring,
                   ``EPERM`` (pyseccomp, libseccomp's binding)    open, unshare, ...
``network``        the template moves to a new, empty network     any network traffic, even to
                   namespace, which its workers share             127.0.0.1
``rlimits``        hard limits: no files written, no core dumps,  fork bombs, disk filling, fd
                   no new processes, few open files; per call     exhaustion; CPU and memory
                   (fresh mode) hard CPU and address space        past the call's limits
``landlock``       a Landlock ruleset that handles every file     opening, listing, creating or
                   access right and allows none (landlock         executing any file
                   package), applied to the template itself
=================  =============================================  =============================

Each layer degrades with a :class:`ConfinementWarning` (never silently) when the kernel, the
platform or a missing optional package cannot provide it; :func:`prepare` records why in
:attr:`Confinement.status`, which the host turns into the warning. Not covered, and why: the
template keeps its root capabilities (it must switch its workers to their uids) but runs no
skill code and is not reachable from a worker; workers share one empty network namespace
(seccomp's ``socket`` denial keeps them from reaching each other through abstract Unix
sockets); ``stat`` of a path is not a Landlock right (seccomp denies the ``stat`` family).

Only the standard library is required: the seccomp and Landlock layers use the optional
``pyseccomp`` and ``landlock`` packages (``pip install 'skillbank[hardening]'``), imported
behind guards. The seccomp program is built and exported by a short-lived child of the
template, because the bindings import ``threading``, whose after-fork handler every worker
would otherwise run; the template keeps only the program's bytes.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "LAYERS",
    "ON",
    "Confinement",
    "ConfinementWarning",
    "SECCOMP_ALLOWED",
    "describe",
    "prepare",
]

#: The process layers, in the order a worker gets them.
LAYERS: Final = (
    "uid",
    "capabilities",
    "no_new_privs",
    "seccomp",
    "network",
    "rlimits",
    "landlock",
)

#: The status of a layer that is in force (any other status says why it is not).
ON: Final = "on"


class ConfinementWarning(UserWarning):
    """A process layer of the sandbox is missing on this machine; the message says which."""


#: System calls a worker may make once confined: what CPython needs to compute, allocate
#: memory, read and write its two pipes, keep time and exit. Everything else fails with
#: EPERM. Names missing on this architecture are skipped.
SECCOMP_ALLOWED: Final = (
    "read",
    "write",
    "readv",
    "writev",
    "close",
    "mmap",
    "munmap",
    "mremap",
    "mprotect",
    "madvise",
    "brk",
    "futex",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "sigaltstack",
    "restart_syscall",
    "getpid",
    "gettid",
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "clock_gettime",
    "clock_getres",
    "clock_nanosleep",
    "gettimeofday",
    "time",
    "nanosleep",
    "poll",
    "ppoll",
    "select",
    "pselect6",
    "lseek",
    "getrandom",
    "sched_yield",
    "getrusage",
    "prlimit64",
    "getrlimit",
    "setrlimit",
    "exit",
    "exit_group",
)

_PR_SET_DUMPABLE: Final = 4
_PR_CAPBSET_DROP: Final = 24
_PR_SET_SECCOMP: Final = 22
_SECCOMP_MODE_FILTER: Final = 2
_PR_SET_NO_NEW_PRIVS: Final = 38
_PR_GET_NO_NEW_PRIVS: Final = 39
_CLONE_NEWNET: Final = 0x40000000
#: Per-worker uids are taken from [_UID_BASE, _UID_BASE + _UID_SPAN): far above any uid a
#: distribution hands out, so no file on the machine belongs to a worker.
_UID_BASE: Final = 1_900_000_000
_UID_SPAN: Final = 1 << 20
_MAX_OPEN_FILES: Final = 32


def _libc() -> Any:
    # The C library through the interpreter's own symbols: ``ctypes.util.find_library``
    # would import subprocess and threading into the template (see _build_seccomp).
    return ctypes.CDLL(None, use_errno=True)


def _prctl(libc: Any, option: int, value: int) -> None:
    ctypes.set_errno(0)
    if libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


@dataclass
class Confinement:
    """What :func:`prepare` found and built in the template, applied per worker by :meth:`enter`."""

    #: Layer name -> :data:`ON`, or why the layer is off on this machine.
    status: dict[str, str] = field(default_factory=dict)
    #: The pyseccomp filter for workers, when the template had to build it itself (None
    #: when a helper process built the program, or without the seccomp layer).
    seccomp_filter: Any = None
    #: The same filter as the BPF program libseccomp compiled from it, exported once
    #: so each worker only hands it to the kernel (None: workers load ``seccomp_filter``).
    seccomp_program: Any = None
    #: The template itself runs with ``no_new_privs``, so its workers inherit it.
    template_nnp: bool = False
    #: The first uid/gid handed to a worker (None: uids are not switched).
    uid_start: int | None = None
    #: ``fs.suid_dumpable`` is 0: the kernel makes a worker non-dumpable when its uid
    #: changes, so it need not ask (``prctl(PR_SET_DUMPABLE, 0)`` otherwise).
    uid_change_clears_dumpable: bool = False
    libc: Any = None

    def off(self, layer: str, why: str) -> None:
        """Record that ``layer`` is not in force, and why."""
        self.status[layer] = why

    def worker_uid(self, index: int) -> int | None:
        """The uid (and gid) of the ``index``-th worker of this template, or None."""
        if self.uid_start is None:
            return None
        return _UID_BASE + (self.uid_start - _UID_BASE + index) % _UID_SPAN

    def enter(self, index: int) -> None:
        """Confine the calling process, a freshly forked worker (the last step before it serves).

        Raises:
            OSError: A layer that :func:`prepare` found working failed here; the worker must
                not serve (the caller exits, and the host reports a crash).
        """
        # Its own process group (the host can kill all it may start at once) and session.
        # With autogrouping on, setsid() also makes it its own scheduler group: 1-2 ms in
        # the child before it is ready (off the call's path while forks keep ahead), but
        # under load from other sessions the worker is then scheduled sooner (measured:
        # see the commit that restored it).
        os.setsid()
        if self.status.get("rlimits") == ON:
            for kind, value in (
                (resource.RLIMIT_CORE, 0),
                (resource.RLIMIT_FSIZE, 0),
                (resource.RLIMIT_NOFILE, _MAX_OPEN_FILES),
                (resource.RLIMIT_NPROC, 0),
            ):
                resource.setrlimit(kind, (value, value))
        uid = self.worker_uid(index)
        if uid is not None and self.status.get("uid") == ON:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)  # clears every capability: root -> non-root
            if os.getresuid() != (uid, uid, uid):
                raise OSError(errno.EPERM, f"the worker is still uid {os.getresuid()!r}")
            if not self.uid_change_clears_dumpable:
                _prctl(self.libc, _PR_SET_DUMPABLE, 0)
        seccomp = self.seccomp_filter is not None or self.seccomp_program is not None
        if (self.status.get("no_new_privs") == ON or seccomp) and not self.template_nnp:
            _prctl(self.libc, _PR_SET_NO_NEW_PRIVS, 1)  # seccomp needs it without root
        if self.seccomp_program is not None:
            ctypes.set_errno(0)
            if self.libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, self.seccomp_program,
                               0, 0) != 0:  # fmt: skip
                code = ctypes.get_errno()
                raise OSError(code, f"PR_SET_SECCOMP: {os.strerror(code)}")
        elif seccomp:
            self.seccomp_filter.load()


def prepare(disabled: Iterable[str] = ()) -> Confinement:
    """Load the bindings, build the filters and confine the template itself.

    Runs once in the template, after it has imported everything; afterwards the template
    has no network and (with Landlock) no file system. ``disabled`` names layers to leave
    off; only the test harness passes it (see :mod:`sandbox.template`).
    """
    confinement = Confinement(libc=_libc())
    skip = set(disabled)
    for layer in skip:
        if layer not in LAYERS:
            raise ValueError(f"unknown sandbox layer {layer!r}; the layers are {LAYERS}")
        confinement.off(layer, "disabled by the test harness")
    if not sys.platform.startswith("linux"):
        for layer in LAYERS:
            if layer not in skip and layer != "rlimits":
                confinement.off(layer, f"needs Linux, this is {sys.platform}")
    steps = (
        ("rlimits", _check_rlimits),
        ("uid", _prepare_uid),
        ("network", _enter_network_namespace),
        ("capabilities", _drop_bounding_set),
        ("seccomp", _build_seccomp),
        ("landlock", _apply_landlock),
        ("no_new_privs", _set_no_new_privs),
    )
    for layer, step in steps:
        if layer in confinement.status:
            continue
        try:
            step(confinement)
        except Exception as exc:  # noqa: BLE001 - any failure means: this layer is off
            confinement.off(layer, f"{type(exc).__name__}: {exc}")
        else:
            confinement.status.setdefault(layer, ON)
    if confinement.status.get("uid") != ON and confinement.status.get("capabilities") == ON:
        if os.geteuid() == 0:
            confinement.off(
                "capabilities", "workers keep root's capabilities: the uid layer is off"
            )
    return confinement


def _check_rlimits(confinement: Confinement) -> None:
    resource.getrlimit(resource.RLIMIT_NPROC)


def _prepare_uid(confinement: Confinement) -> None:
    if os.geteuid() != 0:
        confinement.off(
            "uid",
            f"the sandbox runs as uid {os.geteuid()}, not root, so its workers keep that uid "
            "and can signal each other (start it as root to give each worker its own uid)",
        )
        return
    confinement.uid_start = _UID_BASE + int.from_bytes(os.urandom(4), "big") % _UID_SPAN
    try:  # read now: Landlock closes the file system to the template later
        with open("/proc/sys/fs/suid_dumpable", encoding="ascii") as setting:
            confinement.uid_change_clears_dumpable = setting.read().strip() == "0"
    except OSError:
        confinement.uid_change_clears_dumpable = False


def _enter_network_namespace(confinement: Confinement) -> None:
    unshare = getattr(os, "unshare", None)  # Python 3.12+
    if unshare is not None:
        unshare(_CLONE_NEWNET)
        return
    ctypes.set_errno(0)
    if confinement.libc.unshare(_CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        hint = " (needs root, or CAP_SYS_ADMIN)" if code == errno.EPERM else ""
        raise OSError(code, f"unshare(CLONE_NEWNET): {os.strerror(code)}{hint}")


def _drop_bounding_set(confinement: Confinement) -> None:
    if os.geteuid() != 0:
        return  # nothing to drop: the workers have no capabilities to start with
    last = 0
    while True:
        ctypes.set_errno(0)
        if confinement.libc.prctl(_PR_CAPBSET_DROP, ctypes.c_ulong(last), 0, 0, 0) != 0:
            if ctypes.get_errno() == errno.EINVAL:  # past the kernel's last capability
                break
            code = ctypes.get_errno()
            raise OSError(code, f"PR_CAPBSET_DROP({last}): {os.strerror(code)}")
        last += 1
    if last == 0:
        raise OSError(errno.EINVAL, "the kernel reported no capabilities to drop")


def _build_seccomp(confinement: Confinement) -> None:
    program = _program_from_helper()
    if program is not None:
        confinement.seccomp_program = _fprog(program)
        return
    # No helper result: build it here (the same filter), which says why if it cannot.
    syscall_filter = _build_filter()
    if syscall_filter is None:
        confinement.off(
            "seccomp",
            "no seccomp binding is installed: pip install 'skillbank[hardening]' "
            "(pyseccomp), or apt-get install python3-seccomp for the system Python",
        )
        return
    confinement.seccomp_filter = syscall_filter
    try:
        confinement.seccomp_program = _fprog(_export_bpf(syscall_filter))
    except OSError:  # the workers load the filter through libseccomp instead
        confinement.seccomp_program = None


def _build_filter() -> Any:
    """The workers' pyseccomp filter (:data:`SECCOMP_ALLOWED`), or None without a binding."""
    try:
        import pyseccomp as seccomp  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        try:
            import seccomp  # type: ignore[import-not-found, no-redef, unused-ignore]
        except ImportError:
            return None
    syscall_filter = seccomp.SyscallFilter(seccomp.ERRNO(errno.EPERM))
    for name in SECCOMP_ALLOWED:
        try:
            syscall_filter.add_rule(seccomp.ALLOW, name)
        except (OSError, ValueError, RuntimeError):  # not a system call on this architecture
            continue
    return syscall_filter


def _program_from_helper() -> bytes | None:
    """The filter's BPF program, built and exported by a short-lived child process.

    The bindings import ``ctypes.util``, hence ``subprocess`` and ``threading``, and
    ``threading`` registers an after-fork handler that every worker forked from the
    template would run (about a hundred copied pages, 0.2-0.3 ms of CPU a worker). The child
    imports them and exits; the template only keeps the bytes. None if the child could not
    build the program (the caller then builds it in the template, and reports why not).
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the helper: no output, no traceback, just the program or a failed status
        status = 1
        try:
            os.close(read_end)
            syscall_filter = _build_filter()
            if syscall_filter is not None:
                program = _export_bpf(syscall_filter)
                view = memoryview(program)
                while view:
                    view = view[os.write(write_end, view) :]
                status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    program = b""
    try:
        while chunk := os.read(read_end, 65536):
            program += chunk
    finally:
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
    if status != 0 or not program or len(program) % _BPF_INSTRUCTION:
        return None
    return program


class _SockFprog(ctypes.Structure):
    """``struct sock_fprog``: how a BPF program is handed to the kernel."""

    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


#: Bytes per BPF instruction (``struct sock_filter``: u16 code, u8 jt, u8 jf, u32 k).
_BPF_INSTRUCTION: Final = 8


def _export_bpf(syscall_filter: Any) -> bytes:
    """The filter as libseccomp compiles it (``seccomp_export_bpf``).

    Loading it costs each worker one system call instead of libseccomp building the same
    program again in every worker.
    """
    read_end, write_end = os.pipe()
    try:
        with os.fdopen(write_end, "wb") as sink:
            syscall_filter.export_bpf(sink)
        program = b""
        while chunk := os.read(read_end, 65536):
            program += chunk
    finally:
        os.close(read_end)
    if not program or len(program) % _BPF_INSTRUCTION:
        raise OSError(errno.EINVAL, f"libseccomp exported {len(program)} bytes of BPF")
    return program


def _fprog(program: bytes) -> Any:
    """A pointer to a ``struct sock_fprog`` for ``prctl`` (it keeps its buffer alive)."""
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // _BPF_INSTRUCTION, ctypes.cast(buffer, ctypes.c_void_p))
    pointer = ctypes.pointer(fprog)
    pointer._sandbox_keep = buffer  # type: ignore[attr-defined]
    return pointer


def _apply_landlock(confinement: Confinement) -> None:
    try:
        import landlock  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        confinement.off(
            "landlock",
            "the landlock package is not installed: pip install 'skillbank[hardening]'",
        )
        return
    ctypes.set_errno(0)  # its error check reads errno even after a call that succeeded
    if landlock.landlock_abi_version() < 1:
        raise OSError(errno.EOPNOTSUPP, "the kernel has no Landlock ABI")
    ctypes.set_errno(0)
    ruleset = landlock.Ruleset()  # handles every file access right, allows none
    ctypes.set_errno(0)
    ruleset.apply()  # sets no_new_privs on the template first
    confinement.template_nnp = True
    os.close(ruleset._fd)  # noqa: SLF001 - the package keeps the fd and never closes it


def _set_no_new_privs(confinement: Confinement) -> None:
    _prctl(confinement.libc, _PR_SET_NO_NEW_PRIVS, 1)
    confinement.template_nnp = True


def describe(status: Mapping[str, str]) -> list[str]:
    """One line per layer that is off: which, why, and what it leaves open."""
    return [
        f"sandbox layer {layer!r} is off ({why}); {_WHAT_IS_LOST[layer]}"
        for layer, why in status.items()
        if why != ON and layer in _WHAT_IS_LOST
    ]


_WHAT_IS_LOST: Final = {
    "uid": "workers run with the host's uid",
    "capabilities": "workers keep their capabilities",
    "no_new_privs": "a worker could gain privileges through a set-uid file",
    "seccomp": "every system call is open to a worker that escapes the policy",
    "network": "a worker that escapes the policy can use the host's network",
    "rlimits": "workers have no hard process limits",
    "landlock": "a worker that escapes the policy can read the files its uid can read",
}
