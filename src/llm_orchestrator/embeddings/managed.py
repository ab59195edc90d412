"""An embedder with its circuit breaker and throttle, as chat providers have them.

Remote embedders (openai, openai_compatible, cohere) are wrapped by the registry: one breaker
and one throttle per instance, shared by every run in the process. The throttle counts one
request per call and estimates tokens at 4 characters each. The local embedder is not wrapped:
it has no service to protect or be limited by.
"""

from __future__ import annotations

from llm_orchestrator.embeddings.base import Embedder, EmbeddingRequest, EmbeddingResponse
from llm_orchestrator.providers.circuit import CircuitBreaker
from llm_orchestrator.providers.ratelimit import Throttle


class ManagedEmbedder:
    def __init__(
        self, name: str, embedder: Embedder, breaker: CircuitBreaker, throttle: Throttle
    ) -> None:
        self.name = name
        self.embedder = embedder
        self.breaker = breaker
        self.throttle = throttle
        self.default_model = embedder.default_model
        self.max_batch_size = embedder.max_batch_size

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        """One call. Raises CircuitOpenError while the circuit is open, else as the embedder;
        a rejected request or a cancellation does not count against the breaker."""
        with self.breaker.guard():
            await self.throttle.acquire(sum(len(t) for t in request.texts) // 4)
            return await self.embedder.embed(request)

    async def aclose(self) -> None:
        await self.embedder.aclose()
