"""Remote embedders get a circuit breaker and a throttle from the registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_orchestrator.embeddings.base import EmbeddingRequest
from llm_orchestrator.embeddings.local import LocalEmbedder
from llm_orchestrator.embeddings.managed import ManagedEmbedder
from llm_orchestrator.embeddings.registry import EmbedderRegistry
from llm_orchestrator.exceptions import (
    CircuitOpenError,
    ProviderBadRequestError,
    ProviderServerError,
)
from llm_orchestrator.settings import (
    CircuitBreakerSettings,
    EmbedderSettings,
    ProviderSettings,
    RateLimits,
    Settings,
)
from tests.support.embedding_servers import EmbeddingServer, Reply

ERROR = {"error": {"message": "boom", "type": "server_error", "code": None}}
BAD = {"error": {"message": "bad input", "type": "invalid_request_error", "code": None}}


def registry(server: EmbeddingServer, tmp_path: Path) -> EmbedderRegistry:
    cfg = EmbedderSettings(
        type="openai_compatible",
        base_url=f"{server.base_url}/v1",
        default_model="m",
        circuit_breaker=CircuitBreakerSettings(failure_threshold=2, recovery_seconds=60),
        rate_limits=RateLimits(requests_per_minute=6000),
    )
    return EmbedderRegistry(Settings(home=tmp_path), configs={"emb": cfg})


async def test_breaker_opens_after_consecutive_failures(
    server: EmbeddingServer, tmp_path: Path
) -> None:
    embedder = registry(server, tmp_path).get("emb")
    assert isinstance(embedder, ManagedEmbedder)
    assert embedder.throttle.requests_per_minute == 6000
    # a rejected request does not count; two server errors open the circuit
    server.script(Reply(400, BAD), Reply(500, ERROR), Reply(500, ERROR))
    with pytest.raises(ProviderBadRequestError):
        await embedder.embed(EmbeddingRequest("m", ("a",)))
    for _ in range(2):
        with pytest.raises(ProviderServerError):
            await embedder.embed(EmbeddingRequest("m", ("a",)))
    sent = len(server.requests)
    with pytest.raises(CircuitOpenError) as caught:
        await embedder.embed(EmbeddingRequest("m", ("a",)))
    assert caught.value.provider == "emb"
    assert len(server.requests) == sent  # refused without a request


async def test_success_resets_the_count(server: EmbeddingServer, tmp_path: Path) -> None:
    embedder = registry(server, tmp_path).get("emb")
    server.script(Reply(500, ERROR), Reply(), Reply(500, ERROR))
    with pytest.raises(ProviderServerError):
        await embedder.embed(EmbeddingRequest("m", ("a",)))
    response = await embedder.embed(EmbeddingRequest("m", ("a", "bb")))
    assert len(response.vectors) == 2
    with pytest.raises(ProviderServerError):
        await embedder.embed(EmbeddingRequest("m", ("a",)))
    await embedder.embed(EmbeddingRequest("m", ("a",)))  # still closed


def test_providers_lend_their_limits_and_local_is_not_wrapped(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path,
        providers={
            "oa": ProviderSettings(
                type="openai_compatible",
                base_url="http://127.0.0.1:9/v1",
                rate_limits=RateLimits(requests_per_minute=30),
            )
        },
    )
    reg = EmbedderRegistry(settings)
    managed = reg.get("oa")
    assert isinstance(managed, ManagedEmbedder)
    assert managed.throttle.requests_per_minute == 30
    assert isinstance(reg.get("local"), LocalEmbedder)
