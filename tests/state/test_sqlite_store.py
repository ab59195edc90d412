"""SQLStateStore on SQLite: the contract, plus what only SQLite has (WAL, one writer)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from llm_orchestrator.exceptions import StateError
from llm_orchestrator.settings import Settings, StateSettings
from llm_orchestrator.state import migrate
from llm_orchestrator.state.models import RunState
from llm_orchestrator.state.sql import SQLStateStore
from tests.state.contract import WORKFLOW, StateStoreContract, completed, make_run


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "dir" / "state.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SQLStateStore]:
    async with SQLStateStore(sqlite_url(db_path)) as opened:
        yield opened


@pytest.fixture
async def second_store(store: SQLStateStore, db_path: Path) -> AsyncIterator[SQLStateStore]:
    async with SQLStateStore(sqlite_url(db_path)) as opened:
        yield opened


class TestSQLiteStore(StateStoreContract):
    pass


def _pragma(path: Path, name: str) -> object:
    connection = sqlite3.connect(path)
    try:
        return connection.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        connection.close()


async def test_wal_mode_and_parent_directory(store: SQLStateStore, db_path: Path) -> None:
    assert await asyncio.to_thread(db_path.is_file)
    assert await asyncio.to_thread(_pragma, db_path, "journal_mode") == "wal"


async def test_settings_default_url_opens(settings: Settings) -> None:
    async with SQLStateStore(settings.database(), settings.state) as opened:
        assert (await opened.storage_stats())["runs_rows"] == 0
    assert await asyncio.to_thread((settings.home / "state.db").is_file)


async def test_thousand_concurrent_runs_lose_nothing(store: SQLStateStore) -> None:
    await store.save_workflow(WORKFLOW)

    async def one_run(i: int) -> None:
        run_id = f"run-{i:04}"
        await store.create_run(make_run(run_id))
        for step in ("fetch", "summarize", "publish"):
            await store.record_step(
                completed(run_id, step, {"text": f"{step} of {i}", "shared": step})
            )
        await store.update_run(run_id, status=RunState.COMPLETED, usage=(i, 2 * i, i / 1000))

    results = await asyncio.gather(*(one_run(i) for i in range(1000)), return_exceptions=True)
    failures = [r for r in results if r is not None]
    assert failures == []
    stats = await store.storage_stats()
    assert stats["runs_rows"] == 1000
    assert stats["step_runs_rows"] == 3000
    assert stats["checkpoints_rows"] == 3000
    assert stats["outputs_rows"] == 3000
    assert len(await store.list_runs(status=RunState.COMPLETED, limit=5000)) == 1000
    steps = await store.get_steps("run-0777")
    assert [s.outputs for s in steps if s.step_id == "publish"] == [
        {"text": "publish of 777", "shared": "publish"}
    ]


async def test_two_stores_on_one_file_write_concurrently(
    store: SQLStateStore, second_store: SQLStateStore
) -> None:
    await store.save_workflow(WORKFLOW)

    async def one_run(target: SQLStateStore, i: int) -> None:
        await target.create_run(make_run(f"run-{i}"))
        await target.record_step(completed(f"run-{i}", "a", {"i": i}))

    await asyncio.gather(*(one_run(store if i % 2 else second_store, i) for i in range(200)))
    assert (await store.storage_stats())["step_runs_rows"] == 200


async def test_open_upgrades_an_old_schema(db_path: Path) -> None:
    url = sqlite_url(db_path)
    await migrate.upgrade(url, "0001")
    assert await migrate.current_revision(url) == "0001"
    async with SQLStateStore(url):
        pass
    assert await migrate.current_revision(url) == migrate.head_revision()


async def test_in_memory_database_is_refused() -> None:
    with pytest.raises(StateError, match="in-memory"):
        await SQLStateStore("sqlite+aiosqlite:///:memory:").open()


async def test_writes_after_close_are_refused(db_path: Path) -> None:
    opened = SQLStateStore(sqlite_url(db_path), StateSettings(busy_timeout_seconds=5))
    await opened.open()
    await opened.close()
    await opened.close()
    with pytest.raises(StateError, match="not open"):
        await opened.save_workflow(WORKFLOW)
    with pytest.raises(StateError, match="not open"):
        await opened.get_run("x")


async def test_close_finishes_queued_writes(db_path: Path) -> None:
    opened = SQLStateStore(sqlite_url(db_path))
    await opened.open()
    await opened.save_workflow(WORKFLOW)
    pending = [asyncio.create_task(opened.create_run(make_run(f"run-{i}"))) for i in range(20)]
    await asyncio.sleep(0)
    await opened.close()
    await asyncio.gather(*pending)
    async with SQLStateStore(sqlite_url(db_path)) as again:
        assert len(await again.list_runs()) == 20


@pytest.mark.usefixtures("blockbuster")
async def test_no_blocking_calls_in_the_event_loop(db_path: Path) -> None:
    async with SQLStateStore(sqlite_url(db_path)) as opened:
        await opened.save_workflow(WORKFLOW)
        await opened.create_run(make_run("run-1"))
        await opened.record_step(completed("run-1", "a", {"text": "x" * 400_000}))
        [step] = await opened.get_steps("run-1")
        assert step.outputs == {"text": "x" * 400_000}
        [checkpoint] = await opened.list_checkpoints("run-1")
        await opened.load_checkpoint(checkpoint.id)
        await opened.claim_interrupted("me", 30)
        await opened.storage_stats()
        await opened.delete_runs(finished_before=make_run("x").created_at)
