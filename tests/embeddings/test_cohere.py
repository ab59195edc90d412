"""Cohere (official SDK, v2 embed) against a loopback server speaking its wire format."""

from __future__ import annotations

import pytest

from llm_orchestrator.embeddings.base import EmbeddingRequest
from llm_orchestrator.embeddings.cohere import CohereEmbedder
from llm_orchestrator.exceptions import ProviderBadRequestError, ProviderRateLimitedError
from tests.support.embedding_servers import EmbeddingServer, Reply


def embedder(base_url: str) -> CohereEmbedder:
    return CohereEmbedder(
        "cohere",
        api_key="co-test",
        base_url=base_url,
        default_model="embed-v4.0",
        timeout_seconds=5,
    )


async def test_request_body_and_vectors(server: EmbeddingServer) -> None:
    client = embedder(server.base_url)
    try:
        response = await client.embed(
            EmbeddingRequest("embed-v4.0", ("hello there", "bye"), dimensions=3)
        )
    finally:
        await client.aclose()
    path, headers, body = server.requests[0]
    assert path == "/v2/embed"
    assert headers["authorization"] == "Bearer co-test"
    assert body["model"] == "embed-v4.0"
    assert body["texts"] == ["hello there", "bye"]
    assert body["input_type"] == "search_document"
    assert body["embedding_types"] == ["float"]
    assert body["output_dimension"] == 3
    assert response.vectors == [[11.0, 0.0, 1.0], [3.0, 1.0, 1.0]]
    assert response.input_tokens == 3


async def test_429_is_retryable_with_retry_after(server: EmbeddingServer) -> None:
    server.script(Reply(429, {"id": "x", "message": "too many requests"}, {"Retry-After": "3"}))
    client = embedder(server.base_url)
    try:
        with pytest.raises(ProviderRateLimitedError, match="too many requests") as caught:
            await client.embed(EmbeddingRequest("embed-v4.0", ("x",)))
    finally:
        await client.aclose()
    assert caught.value.retryable
    assert caught.value.retry_after == 3.0


async def test_400_is_not_retryable(server: EmbeddingServer) -> None:
    server.script(Reply(400, {"id": "x", "message": "invalid model"}))
    client = embedder(server.base_url)
    try:
        with pytest.raises(ProviderBadRequestError, match="invalid model") as caught:
            await client.embed(EmbeddingRequest("nope", ("x",)))
    finally:
        await client.aclose()
    assert not caught.value.retryable
    assert caught.value.status_code == 400
