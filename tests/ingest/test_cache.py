"""The SQLite embedding cache and `CachedEmbed`: lookups in input order, only distinct misses
embedded (in batches), vectors that survive a reopen, and model keys that change only with
what changes the vectors."""

from __future__ import annotations

import hashlib
import math
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from llm_orchestrator.embeddings.base import EmbeddingRequest, EmbeddingResponse
from llm_orchestrator.embeddings.registry import EmbedderRegistry
from llm_orchestrator.exceptions import ProviderResponseError
from llm_orchestrator.ingest.cache import (
    CachedEmbed,
    EmbeddingCache,
    as_float32,
    cache_path,
    model_key,
)
from llm_orchestrator.settings import EmbedderSettings, Settings


def fake_vector(text: str, dimension: int = 8) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    raw = [b - 127.5 for b in digest[:dimension]]
    norm = math.sqrt(sum(x * x for x in raw))
    return [x / norm for x in raw]


class CountingEmbedder:
    """An `Embedder` with deterministic vectors that records every request."""

    def __init__(self, name: str = "fake", max_batch_size: int | None = None) -> None:
        self.name = name
        self.default_model = "fake-model"
        self.max_batch_size = max_batch_size
        self.requests: list[tuple[str, ...]] = []

    @property
    def texts(self) -> list[str]:
        return [t for request in self.requests for t in request]

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        self.requests.append(request.texts)
        return EmbeddingResponse([fake_vector(t) for t in request.texts], request.model)

    async def aclose(self) -> None:
        return None


@pytest.fixture
async def cache(tmp_path: Path) -> AsyncIterator[EmbeddingCache]:
    opened = EmbeddingCache(tmp_path / "cache" / "embeddings.sqlite")
    yield opened
    await opened.aclose()


async def test_get_many_returns_hits_and_misses_in_input_order(cache: EmbeddingCache) -> None:
    await cache.put_many("m", ["a", "b"], [[1.0, 0.0], [0.0, 1.0]])
    got = await cache.get_many("m", ["b", "x", "a", "b"])
    assert got == [[0.0, 1.0], None, [1.0, 0.0], [0.0, 1.0]]
    assert await cache.get_many("other-model", ["a"]) == [None]
    assert await cache.get_many("m", []) == []


async def test_vectors_are_float32_and_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    vector = [0.1, -0.2, 1 / 3]
    first = EmbeddingCache(path)
    await first.put_many("m", ["t"], [vector])
    await first.aclose()
    second = EmbeddingCache(path)
    try:
        (got,) = await second.get_many("m", ["t"])
    finally:
        await second.aclose()
    assert got == as_float32(vector)
    assert got is not None and got != vector  # really stored as float32
    assert all(abs(a - b) < 1e-7 for a, b in zip(got, vector, strict=True))
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        dim, blob = conn.execute("SELECT dimension, vector FROM embeddings").fetchone()
    assert (dim, len(blob)) == (3, 12)


async def test_put_many_replaces_and_checks_lengths(cache: EmbeddingCache) -> None:
    await cache.put_many("m", ["a"], [[1.0]])
    await cache.put_many("m", ["a"], [[2.0]])
    assert await cache.get_many("m", ["a"]) == [[2.0]]
    assert await cache.count("m") == 1
    with pytest.raises(ValueError, match="1 texts but 2 vectors"):
        await cache.put_many("m", ["a"], [[1.0], [2.0]])


async def test_many_texts_are_looked_up_in_chunks(cache: EmbeddingCache) -> None:
    texts = [f"text {i}" for i in range(1200)]
    await cache.put_many("m", texts[::2], [[float(i)] for i in range(0, 1200, 2)])
    got = await cache.get_many("m", texts)
    assert got[::2] == [[float(i)] for i in range(0, 1200, 2)]
    assert got[1::2] == [None] * 600


async def test_cache_io_does_not_block_the_event_loop(
    cache: EmbeddingCache, blockbuster: object
) -> None:
    await cache.put_many("m", ["a"], [[1.0]])
    assert await cache.get_many("m", ["a", "b"]) == [[1.0], None]


async def test_cached_embed_sends_only_distinct_misses_in_batches(
    cache: EmbeddingCache,
) -> None:
    fake = CountingEmbedder(max_batch_size=2)
    embed = CachedEmbed(fake, cache, "k", model="fake-model", batch_size=10)
    texts = ["a", "b", "a", "c", "d", "b"]
    vectors = await embed(texts)
    assert vectors == [as_float32(fake_vector(t)) for t in texts]
    assert fake.requests == [("a", "b"), ("c", "d")]  # deduplicated, max_batch_size kept
    assert (embed.hits, embed.misses) == (0, 4)

    again = await embed(["d", "e", "a"])
    assert again == [as_float32(fake_vector(t)) for t in ["d", "e", "a"]]
    assert fake.requests[2:] == [("e",)]
    assert (embed.hits, embed.misses) == (2, 5)


async def test_cached_embed_shares_the_cache_across_instances_of_one_key(
    cache: EmbeddingCache,
) -> None:
    first, second = CountingEmbedder(), CountingEmbedder()
    await CachedEmbed(first, cache, "k", model="fake-model")(["x", "y"])
    assert await CachedEmbed(second, cache, "k", model="fake-model")(["y", "x"]) == [
        as_float32(fake_vector("y")),
        as_float32(fake_vector("x")),
    ]
    assert second.requests == []
    await CachedEmbed(second, cache, "other", model="fake-model")(["x"])
    assert second.requests == [("x",)]


async def test_cached_embed_without_a_cache_still_deduplicates() -> None:
    fake = CountingEmbedder()
    embed = CachedEmbed(fake, None, "k", model="fake-model")
    await embed(["a", "a"])
    await embed(["a"])
    assert fake.texts == ["a", "a"]
    assert (embed.hits, embed.misses) == (0, 2)


async def test_an_embedder_error_propagates_and_caches_nothing(cache: EmbeddingCache) -> None:
    class Broken(CountingEmbedder):
        async def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await CachedEmbed(Broken(), cache, "k", model="m")(["a"])
    assert await cache.count() == 0


def test_model_key_follows_model_dimensions_and_base_url_not_the_api_key(
    settings: Settings,
) -> None:
    def key(cfg: EmbedderSettings, model: str = "m", dimensions: int | None = None) -> str:
        return model_key(EmbedderRegistry(settings, configs={"e": cfg}), "e", model, dimensions)

    base = EmbedderSettings(type="openai_compatible", base_url="http://127.0.0.1:1/v1")
    same = EmbedderSettings(
        type="openai_compatible",
        base_url="http://127.0.0.1:1/v1",
        api_key="secret",
        timeout_seconds=5,
    )
    other_url = EmbedderSettings(type="openai_compatible", base_url="http://127.0.0.1:2/v1")
    assert key(base) == key(same)
    assert key(base) != key(other_url)
    assert key(base) != key(base, model="m2")
    assert key(base) != key(base, dimensions=256)
    registry = EmbedderRegistry(settings, instances={"fake": CountingEmbedder()})
    assert model_key(registry, "fake", "m") != model_key(registry, "local", "m")


def test_cache_path_is_under_home(tmp_path: Path) -> None:
    assert cache_path(tmp_path) == tmp_path / "cache" / "embeddings.sqlite"


async def test_a_wrong_number_of_vectors_is_a_provider_error(cache: EmbeddingCache) -> None:
    class Short(CountingEmbedder):
        async def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
            return EmbeddingResponse([fake_vector("x")], request.model)

    with pytest.raises(ProviderResponseError, match="1 vectors for 2 texts"):
        await CachedEmbed(Short(), cache, "k", model="m")(["a", "b"])
    assert await cache.count() == 0
