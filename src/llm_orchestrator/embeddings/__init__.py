"""Text embeddings: OpenAI, Cohere, OpenAI-compatible servers, and a local MiniLM model."""

from llm_orchestrator.embeddings.base import Embedder as Embedder
from llm_orchestrator.embeddings.base import EmbeddingRequest as EmbeddingRequest
from llm_orchestrator.embeddings.base import EmbeddingResponse as EmbeddingResponse
from llm_orchestrator.embeddings.registry import EmbedderRegistry as EmbedderRegistry
from llm_orchestrator.settings import EmbedderSettings as EmbedderSettings

__all__ = [
    "Embedder",
    "EmbedderRegistry",
    "EmbedderSettings",
    "EmbeddingRequest",
    "EmbeddingResponse",
]
