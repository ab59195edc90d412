"""OpenAI embeddings against a loopback server speaking the wire format."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_orchestrator.embeddings.base import EmbeddingRequest
from llm_orchestrator.embeddings.openai import OpenAIEmbedder
from llm_orchestrator.exceptions import (
    ProviderBadRequestError,
    ProviderConnectionError,
    ProviderRateLimitedError,
)
from tests.support.embedding_servers import EmbeddingServer, Reply


def embedder(base_url: str) -> OpenAIEmbedder:
    return OpenAIEmbedder(
        "openai",
        api_key="sk-test",
        base_url=f"{base_url}/v1",
        default_model="text-embedding-3-small",
        timeout_seconds=5,
    )


async def test_request_body_and_vectors(server: EmbeddingServer) -> None:
    client = embedder(server.base_url)
    try:
        response = await client.embed(
            EmbeddingRequest("text-embedding-3-small", ("one two", "three"), dimensions=4)
        )
    finally:
        await client.aclose()
    path, headers, body = server.requests[0]
    assert path == "/v1/embeddings"
    assert headers["authorization"] == "Bearer sk-test"
    assert body == {
        "model": "text-embedding-3-small",
        "input": ["one two", "three"],
        "dimensions": 4,
        "encoding_format": "float",
    }
    assert response.vectors == [[7.0, 0.0, 1.0, 1.0], [5.0, 1.0, 1.0, 1.0]]
    assert response.model == "text-embedding-3-small"
    assert response.input_tokens == 3


async def test_429_is_retryable_with_retry_after(server: EmbeddingServer) -> None:
    server.script(
        Reply(
            429,
            {"error": {"message": "Rate limit reached", "type": "requests", "code": None}},
            {"retry-after": "7"},
        )
    )
    client = embedder(server.base_url)
    try:
        with pytest.raises(ProviderRateLimitedError) as caught:
            await client.embed(EmbeddingRequest("m", ("x",)))
    finally:
        await client.aclose()
    assert caught.value.retryable
    assert caught.value.retry_after == 7.0
    assert caught.value.status_code == 429
    assert "Rate limit reached" in str(caught.value)


async def test_400_is_not_retryable(server: EmbeddingServer) -> None:
    server.script(
        Reply(400, {"error": {"message": "dimensions too large", "type": "invalid_request"}})
    )
    client = embedder(server.base_url)
    try:
        with pytest.raises(ProviderBadRequestError, match="dimensions too large") as caught:
            await client.embed(EmbeddingRequest("m", ("x",), dimensions=99999))
    finally:
        await client.aclose()
    assert not caught.value.retryable


async def test_connection_refused_is_retryable() -> None:
    client = embedder("http://127.0.0.1:9")
    try:
        with pytest.raises(ProviderConnectionError) as caught:
            await client.embed(EmbeddingRequest("m", ("x",)))
    finally:
        await client.aclose()
    assert caught.value.retryable


def test_missing_key_says_where_an_embedders_key_goes(tmp_path: Path) -> None:
    from llm_orchestrator.embeddings.registry import EmbedderRegistry
    from llm_orchestrator.settings import ProviderSettings, Settings

    bare = EmbedderRegistry(Settings(home=tmp_path)).check("openai")
    assert bare is not None
    assert "embedder 'openai' has no API key" in bare
    assert "OPENAI_API_KEY" in bare and "embedders.openai" in bare
    via_provider = EmbedderRegistry(
        Settings(home=tmp_path, providers={"gw": ProviderSettings(type="openai")})
    ).check("gw")
    assert via_provider is not None and "providers.gw" in via_provider
