"""The contract every embedding adapter implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class EmbeddingRequest:
    """One call: embed `texts` (already batched by the caller) with `model`."""

    model: str
    texts: tuple[str, ...]
    #: requested vector size; None: the model's own size
    dimensions: int | None = None


@dataclass(frozen=True, slots=True)
class EmbeddingResponse:
    """One vector per input text, in input order."""

    vectors: list[list[float]]
    model: str
    input_tokens: int = 0


@runtime_checkable
class Embedder(Protocol):
    """An embedding backend. Adapters raise the `ProviderError` family, never vendor errors."""

    name: str
    default_model: str
    #: the most texts one request may carry (a vendor limit), None: no limit
    max_batch_size: int | None

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResponse: ...

    async def aclose(self) -> None: ...
