from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from llm_orchestrator.embeddings.registry import close_all_embedders
from tests.support.embedding_servers import EmbeddingServer, serve


@pytest.fixture(autouse=True)
async def _fresh_embedders() -> AsyncIterator[None]:
    await close_all_embedders()
    yield
    await close_all_embedders()


@pytest.fixture
def server() -> Iterator[EmbeddingServer]:
    yield from serve()
