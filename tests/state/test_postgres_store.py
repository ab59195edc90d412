"""SQLStateStore on a real PostgreSQL server: the contract, plus what only PostgreSQL has."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.engine import make_url

from llm_orchestrator.exceptions import SchemaOutOfDateError, StateError
from llm_orchestrator.settings import StateSettings
from llm_orchestrator.state.sql import SQLStateStore
from tests.state.contract import StateStoreContract
from tests.support.postgres import free_port


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[SQLStateStore]:
    async with SQLStateStore(postgres_url, StateSettings(pool_min_size=2)) as opened:
        yield opened


@pytest.fixture
async def second_store(postgres_url: str) -> AsyncIterator[SQLStateStore]:
    async with SQLStateStore(postgres_url, StateSettings(pool_min_size=2)) as opened:
        yield opened


class TestPostgresStore(StateStoreContract):
    pass


async def test_open_refuses_a_database_without_schema(empty_postgres_url: str) -> None:
    with pytest.raises(SchemaOutOfDateError, match="llm-orchestrator db upgrade"):
        await SQLStateStore(empty_postgres_url).open()


async def test_open_reports_an_unreachable_server(postgres_url: str) -> None:
    bad = make_url(postgres_url).set(port=free_port()).render_as_string(hide_password=False)
    store = SQLStateStore(bad, StateSettings(pool_timeout_seconds=2))
    with pytest.raises(StateError, match="cannot connect") as caught:
        await store.open()
    assert "***" in str(caught.value), "the password is masked"
    assert make_url(postgres_url).password not in str(caught.value)
