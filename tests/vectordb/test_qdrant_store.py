"""QdrantStore passes the contract in local mode (embedded, on disk)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.modules import require_module
from tests.vectordb.contract import VectorStoreContract

require_module("qdrant_client")

from llm_orchestrator.vectordb.base import VectorRecord  # noqa: E402
from llm_orchestrator.vectordb.qdrant import QdrantStore, point_id  # noqa: E402


class TestQdrantLocal(VectorStoreContract):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[QdrantStore]:
        opened = QdrantStore(tmp_path / "qdrant")
        yield opened
        await opened.aclose()


def test_point_ids_are_deterministic_and_namespaced() -> None:
    assert point_id("", "a") == point_id("", "a")
    assert point_id("", "a") != point_id("n", "a")
    assert point_id("", '["x"') != point_id("x", "")


async def test_reopen_keeps_data(tmp_path: Path) -> None:
    first = QdrantStore(tmp_path / "q")
    await first.create_index("keep", 2, metadata={"embedder": "e"})
    await first.upsert("keep", [VectorRecord("x", [1.0, 0.0], "hello")])
    await first.aclose()
    again = QdrantStore(tmp_path / "q")
    assert (await again.stats("keep")).count == 1
    assert await again.index_metadata("keep") == {"embedder": "e"}
    [hit] = await again.search("keep", [1.0, 0.0])
    assert (hit.id, hit.text) == ("x", "hello")
    await again.aclose()


def test_location_is_required() -> None:
    with pytest.raises(ValueError, match="exactly one|either path"):
        QdrantStore()
