"""Real servers for the tests and the scale benchmark: PostgreSQL and Ray, on loopback only.

Nothing here is a stand-in: `PostgresServer` runs ``initdb`` and ``pg_ctl`` (as an
unprivileged user when we are root, since PostgreSQL refuses to run as root) in a temp dir,
listening on 127.0.0.1 on a free port with no Unix socket; `RayCluster` runs ``ray start
--head`` and, for a second node, ``ray start --address``, each with
``--node-ip-address=127.0.0.1``, no dashboard and no usage statistics.

When the binaries are missing the fixtures skip with the reason, unless the environment says
``TEST_SERVERS_REQUIRED=1`` (``.ci/run`` sets it, after installing them): then they fail.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "PostgresServer",
    "RayCluster",
    "find_postgres_bin",
    "free_port",
    "missing",
    "ray_env",
]

LOOPBACK = "127.0.0.1"


def missing(reason: str) -> None:
    """Skip the test (or fail it, when ``TEST_SERVERS_REQUIRED=1``) because ``reason``."""
    import pytest

    if os.environ.get("TEST_SERVERS_REQUIRED") == "1":
        pytest.fail(f"{reason} (TEST_SERVERS_REQUIRED=1: CI must provide it)")
    pytest.skip(reason)


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def find_postgres_bin() -> Path | None:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``: on PATH, or Debian's
    ``/usr/lib/postgresql/<version>/bin`` (newest first)."""
    on_path = shutil.which("initdb")
    candidates = [Path(on_path).resolve().parent] if on_path else []
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for folder in candidates:
        if all((folder / name).exists() for name in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


@dataclass
class PostgresServer:
    """A throw-away PostgreSQL server on 127.0.0.1 (``start``, then ``stop``)."""

    bin_dir: Path
    #: Turn off fsync (tests: faster, and a crash of the test machine loses nothing we keep).
    fast: bool = True
    port: int = 0
    folder: Path = field(default_factory=lambda: Path())
    _uid: int | None = None
    _gid: int | None = None

    @property
    def admin_url(self) -> str:
        """The superuser's URL to the ``postgres`` database (trust authentication, loopback)."""
        return f"postgresql://skillbank@{LOOPBACK}:{self.port}/postgres"

    def url(self, database: str) -> str:
        """The URL of a database on this server."""
        return f"postgresql://skillbank@{LOOPBACK}:{self.port}/{database}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args,
            capture_output=True,
            text=True,
            check=False,
            user=self._uid,
            group=self._gid,
            extra_groups=[] if self._uid is not None else None,
            env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C", "HOME": str(self.folder)},
            cwd=self.folder,
            timeout=120,
        )

    def start(self) -> PostgresServer:
        """initdb, then start the server; raises RuntimeError with what it printed."""
        self.folder = Path(tempfile.mkdtemp(prefix="skillbank-pg-"))
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            nobody = pwd.getpwnam("nobody")
            self._uid, self._gid = nobody.pw_uid, nobody.pw_gid
            os.chown(self.folder, self._uid, self._gid)
        data = self.folder / "data"
        done = self._run(str(self.bin_dir / "initdb"), "-D", str(data), "-U", "skillbank",
                         "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stdout}{done.stderr}")
        self.port = free_port()
        options = (
            f"-c listen_addresses={LOOPBACK} -p {self.port} -c unix_socket_directories='' "
            "-c max_connections=200"
        )
        if self.fast:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        done = self._run(str(self.bin_dir / "pg_ctl"), "-D", str(data), "-l",
                         str(self.folder / "server.log"), "-o", options, "-w", "-t", "60",
                         "start")  # fmt: skip
        if done.returncode != 0:
            log = (self.folder / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"pg_ctl start failed: {done.stdout}{done.stderr}\n{log}")
        return self

    def create_database(self, name: str) -> str:
        """Create database ``name``; return its URL."""
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Stop the server and delete its folder."""
        if self.port:
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.folder / "data"),
                      "-m", "immediate", "-w", "stop")  # fmt: skip
        shutil.rmtree(self.folder, ignore_errors=True)


#: One token for every test cluster of this process: Ray's token authentication stays on (a
#: node or driver without it is refused), and a driver caches the token it first read.
_RAY_TOKEN = secrets.token_hex(32)

#: ``ray start`` as the CLI runs it, except that 127.0.0.1 stays 127.0.0.1. Ray (2.60) turns a
#: loopback ``--node-ip-address`` into the machine's routable address "so other nodes can reach
#: it", and its servers would then listen on the network; for a cluster on one machine we keep
#: every node on loopback (the same hook `sandbox.ray_backend` uses for its driver).
_RAY_START = (
    "import sys\n"
    "import ray._private.services as services\n"
    "services.resolve_ip_for_localhost = lambda host: host\n"
    "from ray.scripts.scripts import main\n"
    "sys.argv[0] = 'ray'\n"
    "sys.exit(main())\n"
)


def ray_env() -> dict[str, str]:
    """The environment every Ray process of ours gets (this one too, from `RayCluster.start`):
    no usage statistics, no cluster started implicitly by a Ray call made while not connected,
    token authentication with this session's token."""
    return {
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_ENABLE_AUTO_CONNECT": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": _RAY_TOKEN,
        "RAY_DISABLE_DOCKER_CPU_WARNING": "1",
    }


@dataclass
class RayCluster:
    """A Ray cluster of one or two nodes on this machine, every node on 127.0.0.1.

    Each node is a ``ray start --block`` process (the head, then ``--address`` for a second
    node) in a process group of its own: separate raylets, as on two machines, so a call can
    be placed on (and die with) a node other than the head. Stopping a node signals its
    group, by id: nothing but the processes that node started.
    """

    nodes: int = 1
    cpus_per_node: int = 1
    port: int = 0
    temp_dir: Path = field(default_factory=lambda: Path())
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def address(self) -> str:
        """``HOST:PORT`` of the head, as ``ray_address`` takes it."""
        return f"{LOOPBACK}:{self.port}"

    def _node(self, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.temp_dir / f"node-{len(self.procs)}.log", "wb")  # noqa: SIM115
        common = [
            "--block", "--node-ip-address", LOOPBACK, f"--num-cpus={self.cpus_per_node}",
            "--num-gpus=0", f"--object-store-memory={100 * 1024 * 1024}",
            "--disable-usage-stats",
        ]  # fmt: skip
        proc = subprocess.Popen(
            [sys.executable, "-c", _RAY_START, "start", *args, *common], stdout=log,
            stderr=subprocess.STDOUT, env={**os.environ, **ray_env()}, start_new_session=True,
        )  # fmt: skip
        log.close()
        self.procs.append(proc)
        return proc

    def start(self) -> RayCluster:
        """Start the nodes (raises RuntimeError with Ray's output when one does not start).

        Sets this process's Ray environment too (`ray_env`), so a driver here may join.
        """
        os.environ.update(ray_env())
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> RayCluster:
        self.port = free_port()
        # Short: Ray's socket paths must fit in 107 bytes.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="sbray-", dir="/tmp"))
        self._node("--head", f"--port={self.port}", "--include-dashboard=false",
                   f"--temp-dir={self.temp_dir}")  # fmt: skip
        self._wait(lambda: _listening(self.port), "the head's port")
        for _ in range(self.nodes - 1):
            self._node(f"--address={self.address}")
        self._wait_for_nodes()
        return self

    def _wait(self, ready: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            dead = [p for p in self.procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                logs = "\n".join(
                    f.read_text(errors="replace")[-1500:] for f in self.temp_dir.glob("node-*.log")
                )
                self.stop()
                raise RuntimeError(f"the Ray cluster did not start ({what}):\n{logs}")
            time.sleep(0.2)

    def _wait_for_nodes(self) -> None:
        import ray

        with _ray_driver(self.address):
            self._wait(lambda: sum(1 for n in ray.nodes() if n["Alive"]) >= self.nodes,
                       f"{self.nodes} node(s) alive")  # fmt: skip

    def kill_node(self, index: int) -> None:
        """Kill node ``index`` (0 is the head) and every process it started, at once."""
        proc = self.procs[index]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def stop(self) -> None:
        """Stop every node: SIGKILL to each node's process group (a SIGTERM makes Ray drain
        for 30 s; these clusters hold nothing worth draining)."""
        for proc in reversed(self.procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        self.procs.clear()
        if self.temp_dir != Path():
            shutil.rmtree(self.temp_dir, ignore_errors=True)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((LOOPBACK, port)) == 0


@contextlib.contextmanager
def _ray_driver(address: str) -> Iterator[None]:
    import ray

    from sandbox.ray_backend import keep_loopback

    with keep_loopback(ray):
        ray.init(address=address, _node_ip_address=LOOPBACK, include_dashboard=False,
                 logging_level="ERROR", log_to_driver=False)  # fmt: skip
    try:
        yield
    finally:
        ray.shutdown()
