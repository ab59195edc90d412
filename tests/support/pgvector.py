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
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support.postgres import PostgresServer, _execute, free_port, unavailable


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
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` user to run the server as"
        if shutil.which("runuser") is None:
            return "running as root and `runuser` is missing"
    return None


@contextlib.contextmanager
def pgvector_cluster() -> Iterator[PostgresServer]:
    """initdb + pg_ctl start with pgserver's binaries; fsync off (tests only)."""
    bin_dir = pgserver_bin_dir()
    assert bin_dir is not None
    root = Path(tempfile.mkdtemp(prefix="llmo-pgvector-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        as_postgres = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, user="postgres")
    data, log, pwfile = root / "data", root / "server.log", root / "pwfile"
    password = secrets.token_hex(16)
    pwfile.write_text(password + "\n")
    if as_postgres:
        shutil.chown(pwfile, user="postgres")

    def run(*args: str) -> None:
        done = subprocess.run(
            [*as_postgres, *args], capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            server_log = log.read_text(errors="replace") if log.exists() else ""
            raise RuntimeError(
                f"{Path(args[0]).name} failed ({done.returncode}):\n"
                f"{done.stdout}\n{done.stderr}\n{server_log}"
            )

    port = free_port()
    options = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=100 "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    started = False
    try:
        run(
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "scram-sha-256",
            f"--pwfile={pwfile}",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        )
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-o", options, "start")
        started = True
        yield PostgresServer(host="127.0.0.1", port=port, user="postgres", password=password)
    finally:
        if started:
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pgvector_server() -> Iterator[PostgresServer]:
    """A PostgreSQL 16 + pgvector cluster for this session."""
    reason = problem()
    if reason is not None:
        unavailable(f"pgvector: {reason}")
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(pgvector_cluster())
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
