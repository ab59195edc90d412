"""Vector stores behind one async interface (`VectorStore`), and the portable filter."""

from llm_orchestrator.vectordb.base import IndexInfo as IndexInfo
from llm_orchestrator.vectordb.base import IndexNotFoundError as IndexNotFoundError
from llm_orchestrator.vectordb.base import SearchHit as SearchHit
from llm_orchestrator.vectordb.base import VectorRecord as VectorRecord
from llm_orchestrator.vectordb.base import VectorStore as VectorStore
from llm_orchestrator.vectordb.base import VectorStoreError as VectorStoreError
from llm_orchestrator.vectordb.filters import parse_filter as parse_filter
from llm_orchestrator.vectordb.registry import VectorStoreRegistry as VectorStoreRegistry
from llm_orchestrator.vectordb.registry import (
    close_all_vector_stores as close_all_vector_stores,
)

__all__ = [
    "IndexInfo",
    "IndexNotFoundError",
    "SearchHit",
    "VectorRecord",
    "VectorStore",
    "VectorStoreError",
    "VectorStoreRegistry",
    "close_all_vector_stores",
    "parse_filter",
]
