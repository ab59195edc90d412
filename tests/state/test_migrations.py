"""Schema migrations: 0001 → head keeps data, head matches schema.py, old schemas are refused."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from llm_orchestrator.exceptions import SchemaOutOfDateError
from llm_orchestrator.state import migrate
from llm_orchestrator.state.codec import BlobCodec
from llm_orchestrator.state.models import RunState
from llm_orchestrator.state.schema import UTCDateTime, metadata
from llm_orchestrator.state.sql import SQLStateStore

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
CODEC = BlobCodec()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def empty_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A database without any schema, on each backend."""
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    url: str = request.getfixturevalue("empty_postgres_url")
    return url


def test_history_and_head() -> None:
    revisions = migrate.history()
    assert [rev for rev, _ in revisions] == ["0001", "0002"]
    assert all(message for _, message in revisions)
    assert migrate.head_revision() == "0002"
    assert (migrate.MIGRATIONS_DIR / "env.py").is_file()


async def _insert_0001_rows(url: str) -> None:
    """Rows written by a 0001-era store, inserted as plain SQL."""
    outputs = CODEC.seal({"text": "kept ✓"}, "test", outputs=True)
    snapshot = CODEC.seal(
        {
            "steps": {"a": outputs.hash},
            "usage": {"input_tokens": 1, "output_tokens": 2, "cost_usd": 0.5},
        },
        "test",
    )
    when = sa.bindparam("t", T0, type_=UTCDateTime)
    statements: list[tuple[str, dict[str, object]]] = [
        (
            "INSERT INTO workflows (hash, name, version, document, created_at) "
            "VALUES ('wf', 'summarize', '1', :doc, :t)",
            {"doc": '{"steps":[]}'},
        ),
        (
            "INSERT INTO runs (id, workflow_hash, workflow_name, status, user_id, inputs, "
            "created_at, input_tokens, output_tokens, cost_usd) VALUES ('run-1', 'wf', "
            "'summarize', 'completed', 'alice', :inputs, :t, 1, 2, 0.5)",
            {"inputs": CODEC.seal({"topic": "x"}, "test").data},
        ),
        (
            "INSERT INTO outputs (hash, data, size) VALUES (:h, :d, :s)",
            {"h": outputs.hash, "d": outputs.data, "s": outputs.size},
        ),
        (
            "INSERT INTO run_outputs (run_id, outputs_hash) VALUES ('run-1', :h)",
            {"h": outputs.hash},
        ),
        (
            "INSERT INTO step_runs (run_id, step_id, type, status, attempts, outputs_hash, "
            "info, skips, input_tokens, output_tokens, cost_usd, started_at) VALUES ('run-1', "
            "'a', 'llm', 'completed', '[]', :h, '{}', '[]', 1, 2, 0.5, :t)",
            {"h": outputs.hash},
        ),
        (
            "INSERT INTO checkpoints (id, run_id, step_id, created_at, seq, snapshot) "
            "VALUES ('cp1', 'run-1', 'a', :t, 1, :snap)",
            {"snap": snapshot.data},
        ),
        (
            "INSERT INTO ledger (run_id, step_id, idempotency_key, claimed_at, receipt) "
            "VALUES ('run-1', 'a', 'k', :t, :receipt)",
            {"receipt": '{"ok":true}'},
        ),
    ]
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            for statement, params in statements:
                clause = sa.text(statement)
                if ":t" in statement:
                    clause = clause.bindparams(when)
                await connection.execute(clause, params)
    finally:
        await engine.dispose()


def _columns_and_indexes(connection: Connection) -> tuple[set[str], set[str]]:
    inspector = sa.inspect(connection)
    columns = {c["name"] for c in inspector.get_columns("runs")}
    indexes = {str(i["name"]) for i in inspector.get_indexes("runs")}
    return columns, indexes


async def _inspect_runs(url: str) -> tuple[set[str], set[str]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_columns_and_indexes)
    finally:
        await engine.dispose()


async def test_upgrade_from_0001_keeps_data(empty_url: str) -> None:
    await migrate.upgrade(empty_url, "0001")
    assert await migrate.current_revision(empty_url) == "0001"
    columns, indexes = await _inspect_runs(empty_url)
    assert "parent_run_id" not in columns
    await _insert_0001_rows(empty_url)

    await migrate.upgrade(empty_url)
    assert await migrate.current_revision(empty_url) == "0002"
    columns, indexes = await _inspect_runs(empty_url)
    assert "parent_run_id" in columns
    assert "ix_runs_parent_run_id" in indexes

    async with SQLStateStore(empty_url) as store:
        run = await store.get_run("run-1")
        assert run is not None
        assert (run.status, run.user_id, run.inputs, run.created_at) == (
            RunState.COMPLETED,
            "alice",
            {"topic": "x"},
            T0,
        )
        assert run.parent_run_id is None
        [step] = await store.get_steps("run-1")
        assert step.outputs == {"text": "kept ✓"}
        _, steps = await store.load_checkpoint("cp1")
        assert [s.outputs for s in steps] == [{"text": "kept ✓"}]
        entry = await store.ledger_claim("run-1", "a", "k")
        assert entry.receipt == {"ok": True}
        assert entry.claimed_at == T0
    # upgrading again is a no-op
    await migrate.upgrade(empty_url)
    assert await migrate.current_revision(empty_url) == "0002"


def _diff(connection: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(connection), metadata))


async def test_head_matches_schema_py(empty_url: str) -> None:
    await migrate.upgrade(empty_url)
    engine = create_async_engine(empty_url)
    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(_diff) == []
    finally:
        await engine.dispose()


async def test_postgres_open_refuses_an_old_schema(empty_postgres_url: str) -> None:
    await migrate.upgrade(empty_postgres_url, "0001")
    with pytest.raises(SchemaOutOfDateError) as caught:
        await SQLStateStore(empty_postgres_url).open()
    message = str(caught.value)
    assert "run: llm-orchestrator db upgrade" in message
    assert "revision 0001" in message and "0002" in message
    assert "***" in message or "@" not in message, "the password is masked"
    await migrate.upgrade(empty_postgres_url)
    async with SQLStateStore(empty_postgres_url):
        pass


async def _set_revision(url: str, revision: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                sa.text("UPDATE alembic_version SET version_num = :r"), {"r": revision}
            )
    finally:
        await engine.dispose()


async def test_a_schema_from_a_newer_version_is_refused(empty_url: str) -> None:
    await migrate.upgrade(empty_url)
    await _set_revision(empty_url, "9999")
    with pytest.raises(SchemaOutOfDateError, match="newer llm-orchestrator"):
        await SQLStateStore(empty_url).open()


async def test_current_revision_of_a_missing_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "nothing" / "here.db"
    assert await migrate.current_revision(f"sqlite+aiosqlite:///{path}") is None
    assert not path.exists() and not path.parent.exists()


async def test_concurrent_sqlite_upgrades_apply_once(tmp_path: Path) -> None:
    import asyncio

    url = f"sqlite+aiosqlite:///{tmp_path / 'race.db'}"
    await asyncio.gather(*(migrate.upgrade(url) for _ in range(4)))
    assert await migrate.current_revision(url) == "0002"
