"""What every vector store offers, and the records that cross its boundary.

Scores are "higher is better" whatever the metric: cosine similarity for `cosine`, the dot
product for `dot`, and the negated (non-squared) Euclidean distance for `euclidean`.
Namespaces partition one index; the default namespace is "".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from llm_orchestrator.exceptions import ExecutionError

Metric = Literal["cosine", "dot", "euclidean"]
METRICS: tuple[Metric, ...] = ("cosine", "dot", "euclidean")

#: a metadata value a store can filter on
MetadataValue = str | int | float | bool

#: index metadata keys naming the embedder (and model) an index's vectors came from: written
#: by `ingest` and `upsert`, read by `vector_search` to embed a text query the same way
INDEX_EMBEDDER, INDEX_MODEL = "embedder", "embedding_model"

#: metadata keys the stores use for their own bookkeeping; records may not use them
RESERVED_METADATA_KEYS = frozenset({"_llmo_id", "_llmo_ns", "_llmo_text"})


class VectorStoreError(ExecutionError):
    """A vector store refused or failed an operation (the message names the store and index)."""

    code = "vector_store_error"


class IndexNotFoundError(VectorStoreError):
    code = "vector_index_not_found"


#: what to do about a missing index, appended to every store's IndexNotFoundError
MISSING_INDEX_FIX = (
    "write it first (`llm-orchestrator ingest PATH --index NAME`, or an `upsert` step); "
    "`llm-orchestrator index list` shows the indexes there are"
)


@dataclass(frozen=True, slots=True)
class VectorRecord:
    id: str
    vector: Sequence[float]
    text: str | None = None
    metadata: Mapping[str, MetadataValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SearchHit:
    id: str
    score: float
    text: str | None
    metadata: Mapping[str, MetadataValue]
    vector: tuple[float, ...] | None = None

    def to_dict(
        self, *, include_metadata: bool = True, include_vector: bool = False
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "score": self.score,
            "text": self.text,
            "metadata": dict(self.metadata) if include_metadata else {},
        }
        if include_vector:
            out["vector"] = list(self.vector) if self.vector is not None else None
        return out


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A record as `scan` returns it: no vector, no score."""

    id: str
    text: str | None
    metadata: Mapping[str, MetadataValue]


@dataclass(frozen=True, slots=True)
class IndexInfo:
    name: str
    dimension: int
    metric: Metric
    count: int
    #: what was recorded with the index at creation (e.g. the embedder used at ingest)
    metadata: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class VectorStore(Protocol):
    """An async vector database. `where` filters use the portable syntax of `filters.py`."""

    #: "chroma", "qdrant", ...: selects the filter translation
    kind: str

    async def create_index(
        self,
        name: str,
        dimension: int,
        metric: Metric = "cosine",
        metadata: Mapping[str, Any] | None = None,
    ) -> IndexInfo: ...

    async def delete_index(self, name: str) -> None: ...

    async def list_indexes(self) -> list[str]: ...

    async def stats(self, name: str) -> IndexInfo: ...

    async def index_metadata(self, name: str) -> dict[str, Any]: ...

    async def health(self) -> bool: ...

    async def upsert(
        self, index: str, records: Sequence[VectorRecord], namespace: str = ""
    ) -> int: ...

    async def delete(
        self,
        index: str,
        ids: Sequence[str] | None = None,
        where: Mapping[str, Any] | None = None,
        namespace: str = "",
    ) -> None: ...

    async def search(
        self,
        index: str,
        vector: Sequence[float],
        top_k: int = 5,
        where: Mapping[str, Any] | None = None,
        namespace: str = "",
        include_vectors: bool = False,
    ) -> list[SearchHit]: ...

    async def scan(
        self,
        index: str,
        where: Mapping[str, Any] | None = None,
        namespace: str = "",
    ) -> list[StoredRecord]:
        """Every record of a namespace that matches `where` (all of them when None), in no
        particular order; used by ingestion to see what a source already has."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class KeywordSearcher(Protocol):
    """A store with its own full-text engine (pgvector: PostgreSQL full-text search).

    Stores without one get a SQLite FTS5 mirror (`vectordb/keyword.py`). Scores are the
    engine's relevance, higher is better, comparable only within one result list.
    """

    async def keyword_search(
        self,
        index: str,
        query: str,
        top_k: int = 5,
        where: Mapping[str, Any] | None = None,
        namespace: str = "",
    ) -> list[SearchHit]: ...


def check_metric(metric: str) -> Metric:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; use one of: {', '.join(METRICS)}")
    return metric


def check_records(records: Sequence[VectorRecord], dimension: int, index: str) -> None:
    """Same dimension everywhere, no reserved metadata keys, no duplicate ids in one call."""
    seen: set[str] = set()
    for record in records:
        if len(record.vector) != dimension:
            raise VectorStoreError(
                f"index '{index}': record '{record.id}' has {len(record.vector)} dimensions, "
                f"the index has {dimension}"
            )
        bad = RESERVED_METADATA_KEYS & set(record.metadata)
        if bad:
            raise VectorStoreError(
                f"index '{index}': record '{record.id}' uses reserved metadata keys "
                f"{sorted(bad)}; rename them"
            )
        for key, value in record.metadata.items():
            if not isinstance(value, str | int | float | bool):
                raise VectorStoreError(
                    f"index '{index}': record '{record.id}' metadata '{key}' is "
                    f"{type(value).__name__}; values must be str, int, float or bool"
                )
        if record.id in seen:
            raise VectorStoreError(f"index '{index}': record id '{record.id}' appears twice")
        seen.add(record.id)


def check_query(vector: Sequence[float], dimension: int, index: str) -> None:
    if len(vector) != dimension:
        raise VectorStoreError(
            f"index '{index}': the query vector has {len(vector)} dimensions, the index has "
            f"{dimension}"
        )
