"""Batched embedding: split texts into requests, send a bounded number at once, keep order.

Shared by the `embed` step and the ingestion pipeline. One failed request fails the whole
call with that request's own error (the first one, the others' tasks are cancelled), not an
ExceptionGroup, so callers see the project's `ProviderError` family as adapters raise it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from llm_orchestrator.aio import first_leaf
from llm_orchestrator.embeddings.base import Embedder, EmbeddingRequest, EmbeddingResponse


def batches(texts: Sequence[str], size: int) -> list[list[str]]:
    """`texts` in consecutive groups of at most `size`."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    return [list(texts[i : i + size]) for i in range(0, len(texts), size)]


def batch_size_for(embedder: Embedder, requested: int) -> int:
    """The requested size, lowered to the embedder's own per-request limit."""
    if embedder.max_batch_size is not None:
        return min(requested, embedder.max_batch_size)
    return requested


async def embed_batched(
    embedder: Embedder,
    texts: Sequence[str],
    *,
    model: str,
    dimensions: int | None = None,
    batch_size: int = 100,
    max_concurrency: int = 4,
    before_request: Callable[[], None] | None = None,
    on_response: Callable[[EmbeddingResponse], None] | None = None,
) -> list[EmbeddingResponse]:
    """One response per batch, in input order (concatenate `.vectors` for one per text).

    `before_request` runs as each request takes its slot (e.g. a budget check that raises);
    `on_response` as each one returns (e.g. usage accounting).
    """
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
    groups = batches(texts, batch_size_for(embedder, batch_size))
    results: list[EmbeddingResponse | None] = [None] * len(groups)
    limiter = asyncio.Semaphore(max_concurrency)

    async def send(index: int, group: list[str]) -> None:
        async with limiter:
            if before_request is not None:
                before_request()
            response = await embedder.embed(
                EmbeddingRequest(model=model, texts=tuple(group), dimensions=dimensions)
            )
        if on_response is not None:
            on_response(response)
        results[index] = response

    try:
        async with asyncio.TaskGroup() as tg:
            for index, group in enumerate(groups):
                tg.create_task(send(index, group))
    except BaseExceptionGroup as group_error:
        raise first_leaf(group_error) from None
    done: list[EmbeddingResponse] = []
    for response in results:
        assert response is not None  # every task finished without error
        done.append(response)
    return done
