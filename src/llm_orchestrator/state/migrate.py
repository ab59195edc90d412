"""Schema migrations from code: what `SQLStateStore.open()` and `llm-orchestrator db ...` use.

The Alembic scripts ship inside the package (`state/migrations`); no alembic.ini is needed.
SQLite databases are upgraded with the standard library driver in a worker thread, inside one
`BEGIN IMMEDIATE` transaction (so processes opening the same file at once upgrade it once);
PostgreSQL ones through the async driver, serialized by an advisory lock.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from llm_orchestrator.exceptions import SchemaOutOfDateError, StateError

__all__ = [
    "MIGRATIONS_DIR",
    "current_revision",
    "head_revision",
    "history",
    "read_revision",
    "require_head",
    "upgrade",
]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

UPGRADE_HINT = "run: llm-orchestrator db upgrade"


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return cfg


@functools.cache
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head_revision() -> str:
    """The revision this version of the package expects."""
    head = _script().get_current_head()
    if head is None:  # pragma: no cover - the package always ships migrations
        raise StateError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def history() -> list[tuple[str, str]]:
    """(revision, message) of every migration, oldest first."""
    revisions = list(_script().walk_revisions())
    revisions.reverse()
    return [(rev.revision, (rev.doc or "").strip()) for rev in revisions]


def display_url(url: str | URL) -> str:
    """The URL with its password masked, for messages."""
    return make_url(url).render_as_string(hide_password=True)


def is_sqlite(url: str | URL) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_path(url: str | URL) -> Path:
    """The database file of a SQLite URL; in-memory databases are refused."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        raise StateError(
            f"{display_url(url)}: an in-memory SQLite database cannot be shared by the store's "
            "connections; give a file path (sqlite+aiosqlite:///path/state.db)"
        )
    return Path(database)


def _wal(cursor: Any, busy_timeout_seconds: float) -> None:
    """Switch the file to WAL (it stays so). Switching needs an exclusive lock and SQLite
    may answer "locked" at once, without its busy handler, when another connection (say a
    concurrent first open) is doing the same: wait and try again within the busy timeout."""
    cursor.execute("PRAGMA journal_mode")
    mode = cursor.fetchone()[0]
    if str(mode).lower() == "wal":
        return
    deadline = time.monotonic() + busy_timeout_seconds
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except Exception as exc:  # sqlite3's, or the async driver's wrapper of it
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def configure_sqlite(
    engine: sa.engine.Engine, *, busy_timeout_seconds: float, begin: str = "BEGIN"
) -> None:
    """WAL, busy timeout, synchronous=NORMAL and foreign keys on every new connection; the
    driver's own transaction handling is replaced by an explicit `begin` statement."""

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_seconds * 1000)}")
            _wal(cursor, busy_timeout_seconds)
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql(begin)


def _upgrade_on(connection: Connection, revision: str) -> None:
    cfg = _config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


def _upgrade_sqlite(url: str, revision: str, busy_timeout_seconds: float) -> None:
    path = sqlite_path(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    sync_url = make_url(url).set(drivername="sqlite")
    engine = sa.create_engine(sync_url, poolclass=NullPool)
    configure_sqlite(engine, busy_timeout_seconds=busy_timeout_seconds, begin="BEGIN IMMEDIATE")
    try:
        with engine.begin() as connection:
            _upgrade_on(connection, revision)
    finally:
        engine.dispose()


async def upgrade(url: str, revision: str = "head", *, busy_timeout_seconds: float = 30.0) -> None:
    """Upgrade the database at `url` to `revision` (default: the newest)."""
    try:
        if is_sqlite(url):
            await asyncio.to_thread(_upgrade_sqlite, url, revision, busy_timeout_seconds)
            return
        engine = create_async_engine(url, poolclass=NullPool, hide_parameters=True)
        try:
            async with engine.begin() as connection:
                await connection.run_sync(_upgrade_on, revision)
        finally:
            await engine.dispose()
    except CommandError as exc:
        raise SchemaOutOfDateError(
            f"{display_url(url)}: cannot upgrade to {revision}: {exc}; if the database was "
            "upgraded by a newer llm-orchestrator, upgrade this one"
        ) from exc
    except (SQLAlchemyError, OSError) as exc:
        raise StateError(f"{display_url(url)}: schema upgrade failed: {exc}") from exc


def _revision_sync(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def read_revision(connection: AsyncConnection) -> str | None:
    """The Alembic revision recorded in the database, None if it has none."""
    return await connection.run_sync(_revision_sync)


async def current_revision(url: str) -> str | None:
    """The database's revision; None if it has no schema (or, for SQLite, no file) yet."""
    if is_sqlite(url) and not await asyncio.to_thread(os.path.exists, sqlite_path(url)):
        return None
    engine = create_async_engine(url, poolclass=NullPool, hide_parameters=True)
    try:
        async with engine.connect() as connection:
            return await read_revision(connection)
    except (SQLAlchemyError, OSError) as exc:
        raise StateError(f"{display_url(url)}: cannot read the schema revision: {exc}") from exc
    finally:
        await engine.dispose()


def require_head(current: str | None, url: str | URL) -> None:
    """Raise SchemaOutOfDateError unless `current` is the head revision."""
    head = head_revision()
    if current == head:
        return
    where = display_url(url)
    if current is None:
        raise SchemaOutOfDateError(
            f"{where} has no llm-orchestrator schema (expected revision {head}); {UPGRADE_HINT}"
        )
    known = {rev for rev, _ in history()}
    if current in known:
        raise SchemaOutOfDateError(
            f"{where} is at schema revision {current}, this version needs {head}; {UPGRADE_HINT}"
        )
    raise SchemaOutOfDateError(
        f"{where} is at schema revision {current}, which this version of llm-orchestrator "
        f"does not know (its newest is {head}): the database was upgraded by a newer "
        "llm-orchestrator; upgrade this one"
    )
