"""A real PostgreSQL 16 + pgvector server for the pgvector store's tests.

The PyPI package `pgserver` bundles PostgreSQL 16 with the pgvector extension. Its binaries
(`<pgserver>/pginstall/bin`, found without importing pgserver, whose import would run
`useradd` as root and warn) start a throwaway cluster in a temporary directory on a free
loopback port (unix socket in the same directory), as the `postgres` user when we are root,
with password authentication. It is stopped (`pg_ctl stop -m fast`) and removed at the end of
the session. If it cannot be started the tests are skipped, or fail under CI=true.

Fixtures: `pgvector_server` (session) and `pgvector_url` (a new empty database per test,
dropped after it: postgresql://postgres:<password>@127.0.0.1:<port>/<db>).
"""

from __future__ import annotations

import contextlib
import importlib.util
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support.postgres import (
    PostgresServer,
    _execute,
    run_as_problem,
    throwaway_cluster,
    unavailable,
)


def pgserver_bin_dir() -> Path | None:
    """pgserver's bundled PostgreSQL binaries, or None when pgserver is not installed."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        return None
    bin_dir = Path(spec.origin).parent / "pginstall" / "bin"
    if all((bin_dir / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
        return bin_dir
    return None


def problem() -> str | None:
    """Why the cluster cannot be started here, or None."""
    if pgserver_bin_dir() is None:
        return "the `pgserver` package (PostgreSQL 16 + pgvector) is not installed"
    return run_as_problem()


@pytest.fixture(scope="session")
def pgvector_server() -> Iterator[PostgresServer]:
    """A PostgreSQL 16 + pgvector cluster for this session."""
    reason = problem()
    if reason is not None:
        unavailable(f"pgvector: {reason}")
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(throwaway_cluster(bin_dir=pgserver_bin_dir()))
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            unavailable(f"could not start PostgreSQL + pgvector from pgserver: {exc}")
        yield server


@pytest.fixture
async def pgvector_url(pgvector_server: PostgresServer) -> AsyncIterator[str]:
    """postgresql:// URL of a new empty database on the pgvector server, dropped afterwards."""
    name = f"llmo_pgv_{uuid.uuid4().hex[:12]}"
    await _execute(pgvector_server, f'CREATE DATABASE "{name}"')
    try:
        s = pgvector_server
        yield f"postgresql://{s.user}:{s.password}@{s.host}:{s.port}/{name}"
    finally:
        await _execute(pgvector_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
