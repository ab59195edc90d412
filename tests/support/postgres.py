"""A real PostgreSQL server for tests.

`LLMO_TEST_POSTGRES_URL` (postgresql+asyncpg://user:pw@127.0.0.1:5432/db, a role that may
CREATE DATABASE) names an existing server; without it a throwaway cluster is started with the
machine's initdb/pg_ctl (/usr/lib/postgresql/*/bin), as the `postgres` user when we are root,
on a free loopback port in a temporary directory, and removed at the end of the session.
If neither is possible the tests are skipped, or fail under CI=true.

Fixtures (import them into a conftest, or list this module in `pytest_plugins`):
`postgres_server` (session), `postgres_url` (a new database at the head schema per test,
cloned from a template migrated once) and `empty_postgres_url` (a new empty database).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest
from sqlalchemy.engine import make_url

from llm_orchestrator.state import migrate

ENV_URL = "LLMO_TEST_POSTGRES_URL"
#: read at import: the autouse `_clean_env` fixture removes LLMO_* variables from each test
URL_FROM_ENV = os.environ.get(ENV_URL)


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    password: str
    #: database the admin connection uses to create and drop test databases
    admin_database: str = "postgres"

    def url(self, database: str) -> str:
        """SQLAlchemy async URL of `database` on this server."""
        return (
            make_url("postgresql+asyncpg://")
            .set(
                username=self.user,
                password=self.password,
                host=self.host,
                port=self.port,
                database=database,
            )
            .render_as_string(hide_password=False)
        )

    def connect_kwargs(self, database: str | None = None) -> dict[str, object]:
        """Keyword arguments for asyncpg.connect."""
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "database": database or self.admin_database,
        }


def unavailable(reason: str) -> NoReturn:
    """Skip, or under CI=true fail: CI must run the PostgreSQL tests."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but no PostgreSQL server for the tests: {reason}")
    pytest.skip(f"no PostgreSQL server: {reason}")


def server_from_url(url: str) -> PostgresServer:
    parsed = make_url(url)
    return PostgresServer(
        host=parsed.host or "127.0.0.1",
        port=parsed.port or 5432,
        user=parsed.username or "postgres",
        password=parsed.password or "",
        admin_database=parsed.database or "postgres",
    )


def find_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin that has initdb, pg_ctl and postgres."""
    candidates = []
    for bin_dir in Path("/usr/lib/postgresql").glob("*/bin"):
        if all((bin_dir / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            with contextlib.suppress(ValueError):
                candidates.append((float(bin_dir.parent.name), bin_dir))
    return max(candidates)[1] if candidates else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def throwaway_problem() -> str | None:
    """Why a throwaway cluster cannot be started here, or None."""
    if find_bin_dir() is None:
        return (
            "no initdb/pg_ctl under /usr/lib/postgresql/*/bin "
            "(apt-get install -y postgresql), and LLMO_TEST_POSTGRES_URL is not set"
        )
    return run_as_problem()


def run_as_problem() -> str | None:
    """Why we cannot run a server's binaries as the right user, or None."""
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` user to run the server as"
        if shutil.which("runuser") is None:
            return "running as root and `runuser` is missing"
    return None


@contextlib.contextmanager
def throwaway_cluster(
    *, fast: bool = True, bin_dir: Path | None = None
) -> Iterator[PostgresServer]:
    """Start a private cluster on 127.0.0.1 with the binaries of `bin_dir` (default: the
    machine's newest PostgreSQL); `fast` turns fsync off (tests only)."""
    bin_dir = bin_dir or find_bin_dir()
    assert bin_dir is not None
    root = Path(tempfile.mkdtemp(prefix="llmo-pg-"))
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
                f"{' '.join(args[:2])} failed ({done.returncode}):\n"
                f"{done.stdout}\n{done.stderr}\n{server_log}"
            )

    port = free_port()
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=200"
    if fast:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
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


# -- fixtures ----------------------------------------------------------------------------


def _run_in_own_loop(coro_fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
    """Run an async setup step on a private loop in a worker thread (session fixtures run
    outside the tests' event loops)."""

    def target() -> None:
        asyncio.run(coro_fn(*args))

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(target).result()


async def _execute(server: PostgresServer, *statements: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(**server.connect_kwargs())
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """LLMO_TEST_POSTGRES_URL's server, or a throwaway cluster for this session."""
    if URL_FROM_ENV:
        yield server_from_url(URL_FROM_ENV)
        return
    problem = throwaway_problem()
    if problem is not None:
        unavailable(problem)
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(throwaway_cluster())
        except (RuntimeError, OSError) as exc:
            unavailable(f"could not start a throwaway cluster: {exc}")
        yield server


@pytest.fixture(scope="session")
def postgres_template(postgres_server: PostgresServer) -> Iterator[str]:
    """A database upgraded to head once, cloned by every test that needs a current schema."""
    name = f"llmo_template_{uuid.uuid4().hex[:12]}"
    _run_in_own_loop(_execute, postgres_server, f'CREATE DATABASE "{name}"')
    _run_in_own_loop(migrate.upgrade, postgres_server.url(name))
    yield name
    _run_in_own_loop(_execute, postgres_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _fresh_database(server: PostgresServer, template: str | None) -> AsyncIterator[str]:
    name = f"llmo_test_{uuid.uuid4().hex[:12]}"
    clause = f' TEMPLATE "{template}"' if template else ""
    await _execute(server, f'CREATE DATABASE "{name}"{clause}')
    try:
        yield server.url(name)
    finally:
        await _execute(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def postgres_url(
    postgres_server: PostgresServer, postgres_template: str
) -> AsyncIterator[str]:
    """URL of a new database at the head schema revision, dropped after the test."""
    async for url in _fresh_database(postgres_server, postgres_template):
        yield url


@pytest.fixture
async def empty_postgres_url(postgres_server: PostgresServer) -> AsyncIterator[str]:
    """URL of a new empty database (no schema), dropped after the test."""
    async for url in _fresh_database(postgres_server, None):
        yield url
