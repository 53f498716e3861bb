"""Shared fixtures: an isolated environment per test, hypothesis profiles, example data."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from skillbank.trajectory import Trajectory, load_trajectories

settings.register_profile(
    "dev", max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "fuzz", max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

#: The scripted OpenAI-compatible server (fixture ``fake_openai``) for LLM and agent tests.
pytest_plugins = ["tests.fake_openai"]

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_TRAJECTORIES = REPO / "skillbank" / "examples" / "trajectories" / "shop.jsonl"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # No user git config, no skillbank settings from the developer's shell.
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for key in list(os.environ):
        if key.startswith(("SKILLBANK_", "GIT_AUTHOR_", "GIT_COMMITTER_")):
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def example_trajectories() -> list[Trajectory]:
    """The bundled shop trajectories."""
    return load_trajectories(EXAMPLE_TRAJECTORIES)


@pytest.fixture
def bank(tmp_path: Path) -> Iterator[object]:
    """A fresh bank in a temp dir: real folder, real git repo."""
    from skillbank import SkillBank

    with SkillBank.init(tmp_path / "bank") as b:
        yield b


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[object]:
    """A real PostgreSQL server on 127.0.0.1 for the session (`tests.servers.PostgresServer`).

    Skips when no server binaries are found (fails instead under TEST_SERVERS_REQUIRED=1).
    """
    from tests.servers import PostgresServer, find_postgres_bin, missing

    folder = find_postgres_bin()
    if folder is None:
        missing(
            "no PostgreSQL server binaries (initdb, pg_ctl, postgres) on PATH or in "
            "/usr/lib/postgresql/*/bin; install them (apt-get install postgresql) to run the "
            "shared-ledger tests"
        )
    try:
        import psycopg  # noqa: F401
    except ImportError:
        missing("psycopg is not installed: pip install -e '.[test]'")
    assert folder is not None
    server = PostgresServer(folder).start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: object, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database on the session's PostgreSQL server; its URL."""
    import re

    from tests.servers import PostgresServer

    assert isinstance(postgres_server, PostgresServer)
    name = "t_" + re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:40]
    name += f"_{abs(hash(request.node.nodeid)) % 10**8}"
    return postgres_server.create_database(name)
