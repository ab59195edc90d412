"""Chroma: embedded (`PersistentClient`, the default store) or a Chroma server (`HttpClient`).

The sync client runs in worker threads (`asyncio.to_thread`), so the event loop never blocks.
Every collection carries the `ExternalEmbeddings` guard: Chroma never embeds (and so never
downloads its default ONNX model); vectors always come from us. A record's namespace, its own
id and its text live in reserved metadata keys; Chroma's id is `json([namespace, id])`.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from llm_orchestrator.exceptions import MissingDependencyError
from llm_orchestrator.vectordb.base import (
    MISSING_INDEX_FIX,
    IndexInfo,
    IndexNotFoundError,
    Metric,
    SearchHit,
    StoredRecord,
    VectorRecord,
    VectorStoreError,
    check_metric,
    check_query,
    check_records,
)
from llm_orchestrator.vectordb.filters import chroma_where, parse_filter, to_chroma

_NS, _ID = "_llmo_ns", "_llmo_id"
_SPACE: dict[Metric, str] = {"cosine": "cosine", "dot": "ip", "euclidean": "l2"}
_META_DIMENSION, _META_METRIC, _META_USER = "llmo:dimension", "llmo:metric", "llmo:metadata"
_META_NAMESPACED = "llmo:namespaced"

T = TypeVar("T")


def _import_chromadb() -> Any:
    try:
        import chromadb
    except ImportError as exc:
        raise MissingDependencyError("chromadb", "rag", "the chroma vector store") from exc
    return chromadb


_guard_class: Any = None


def _guard() -> Any:
    """An embedding function that refuses to embed, persisted in the collection schema.

    Registered with Chroma under the name "external", so reopening a collection rebuilds it
    from the schema (instead of warning that it cannot and dropping it)."""
    global _guard_class
    if _guard_class is None:
        from chromadb.api.types import Documents, EmbeddingFunction
        from chromadb.utils.embedding_functions import register_embedding_function

        class ExternalEmbeddings(EmbeddingFunction[Documents]):
            def __init__(self) -> None:
                """No state; Chroma wants every embedding function to define __init__."""

            def __call__(self, input: Documents) -> Any:
                raise RuntimeError("llm-orchestrator passes embeddings explicitly")

            @staticmethod
            def name() -> str:
                return "external"

            def get_config(self) -> dict[str, Any]:
                return {}

            @staticmethod
            def build_from_config(config: dict[str, Any]) -> ExternalEmbeddings:
                return ExternalEmbeddings()

        register_embedding_function(ExternalEmbeddings)  # type: ignore[no-untyped-call]
        _guard_class = ExternalEmbeddings
    return _guard_class()


def _internal_id(namespace: str, record_id: str) -> str:
    return json.dumps([namespace, record_id], ensure_ascii=False)


class ChromaStore:
    """`ChromaStore(path=...)` embedded, or `ChromaStore(host=..., port=...)` for a server."""

    kind = "chroma"

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        host: str | None = None,
        port: int = 8000,
        ssl: bool = False,
        headers: Mapping[str, str] | None = None,
        name: str = "chroma",
    ) -> None:
        if (path is None) == (host is None):
            raise ValueError("ChromaStore takes either path= (embedded) or host= (server)")
        self.name = name
        self.path = Path(path) if path is not None else None
        self.host, self.port, self.ssl = host, port, ssl
        self._headers = dict(headers or {})
        self._client: Any = None
        self._guard_ef: Any = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        where = str(self.path) if self.path else f"{self.host}:{self.port}"
        return f"ChromaStore({self.name!r}, {where})"

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def _api(self) -> Any:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                self._client = await self._run(self._connect)
        return self._client

    def _connect(self) -> Any:
        chromadb = _import_chromadb()
        from chromadb.config import Settings as ChromaSettings

        settings = ChromaSettings(anonymized_telemetry=False)
        self._guard_ef = _guard()
        try:
            if self.path is not None:
                self.path.mkdir(parents=True, exist_ok=True)
                return chromadb.PersistentClient(path=str(self.path), settings=settings)
            return chromadb.HttpClient(
                host=self.host,
                port=self.port,
                ssl=self.ssl,
                headers=self._headers or None,
                settings=settings,
            )
        except Exception as exc:
            raise VectorStoreError(f"{self!r}: could not connect: {exc}") from exc

    async def _collection(self, index: str) -> tuple[Any, IndexInfo]:
        client = await self._api()
        return await self._run(self._collection_sync, client, index)

    async def _on(self, fn: Callable[..., T], **kwargs: Any) -> T:
        return await self._run(fn, **kwargs)

    @staticmethod
    def _namespaced(col: Any) -> bool:
        """Whether any record was ever written outside the default namespace. Until then no
        namespace filter is needed, and Chroma answers unfiltered queries ~10x faster."""
        return bool((col.metadata or {}).get(_META_NAMESPACED))

    def _where(
        self, col: Any, where: Mapping[str, Any] | None, namespace: str
    ) -> dict[str, Any] | None:
        if namespace == "" and not self._namespaced(col):
            return to_chroma(parse_filter(where)) if where is not None else None
        return chroma_where(where, _NS, namespace)

    def _collection_sync(self, client: Any, index: str) -> tuple[Any, IndexInfo]:
        from chromadb.errors import NotFoundError

        try:
            col = client.get_collection(index, embedding_function=self._guard_ef)
        except (NotFoundError, ValueError) as exc:
            raise IndexNotFoundError(f"{self!r}: no index '{index}'; {MISSING_INDEX_FIX}") from exc
        return col, self._info(col, count=None)

    def _info(self, col: Any, count: int | None) -> IndexInfo:
        meta = dict(col.metadata or {})
        dimension = meta.get(_META_DIMENSION)
        if not isinstance(dimension, int):
            raise VectorStoreError(
                f"{self!r}: collection '{col.name}' was not created by llm-orchestrator "
                "(no recorded dimension)"
            )
        return IndexInfo(
            name=col.name,
            dimension=dimension,
            metric=check_metric(str(meta.get(_META_METRIC, "cosine"))),
            count=count if count is not None else -1,
            metadata=json.loads(str(meta.get(_META_USER, "{}"))),
        )

    async def create_index(
        self,
        name: str,
        dimension: int,
        metric: Metric = "cosine",
        metadata: Mapping[str, Any] | None = None,
    ) -> IndexInfo:
        check_metric(metric)
        if dimension < 1:
            raise ValueError(f"index '{name}': dimension must be at least 1, got {dimension}")
        if not 3 <= len(name) <= 512:
            raise ValueError(f"index '{name}': chroma index names have 3-512 characters")
        client = await self._api()
        col_meta = {
            _META_DIMENSION: dimension,
            _META_METRIC: metric,
            _META_USER: json.dumps(dict(metadata or {}), sort_keys=True),
        }

        def create() -> Any:
            return client.get_or_create_collection(
                name,
                embedding_function=self._guard_ef,
                metadata=col_meta,
                configuration={"hnsw": {"space": _SPACE[metric]}},
            )

        col = await self._run(create)
        info = self._info(col, count=0)
        if (info.dimension, info.metric) != (dimension, metric):
            raise VectorStoreError(
                f"{self!r}: index '{name}' exists with dimension {info.dimension} and metric "
                f"{info.metric}, not {dimension}/{metric}"
            )
        return info

    async def delete_index(self, name: str) -> None:
        client = await self._api()
        await self._collection(name)
        await self._run(client.delete_collection, name)

    async def list_indexes(self) -> list[str]:
        client = await self._api()
        cols = await self._run(client.list_collections)
        return sorted(c.name for c in cols)

    async def stats(self, name: str) -> IndexInfo:
        col, info = await self._collection(name)
        count = await self._on(col.count)
        return IndexInfo(info.name, info.dimension, info.metric, count, info.metadata)

    async def index_metadata(self, name: str) -> dict[str, Any]:
        _col, info = await self._collection(name)
        return dict(info.metadata)

    async def health(self) -> bool:
        try:
            client = await self._api()
            await self._run(client.heartbeat)
        except Exception:
            return False
        return True

    async def upsert(self, index: str, records: Sequence[VectorRecord], namespace: str = "") -> int:
        col, info = await self._collection(index)
        check_records(records, info.dimension, index)
        client = await self._api()
        if namespace != "" and records and not self._namespaced(col):
            meta = {**(col.metadata or {}), _META_NAMESPACED: True}
            await self._on(col.modify, metadata=meta)
        batch = await self._run(client.get_max_batch_size)
        for start in range(0, len(records), batch):
            chunk = records[start : start + batch]
            ids = [_internal_id(namespace, r.id) for r in chunk]
            # Chroma's upsert merges metadata into the old record's: replace it instead
            await self._on(col.delete, ids=ids)
            await self._on(
                col.add,
                ids=ids,
                embeddings=[list(map(float, r.vector)) for r in chunk],
                metadatas=[{**r.metadata, _NS: namespace, _ID: r.id} for r in chunk],
                documents=[r.text or "" for r in chunk],
            )
        return len(records)

    async def delete(
        self,
        index: str,
        ids: Sequence[str] | None = None,
        where: Mapping[str, Any] | None = None,
        namespace: str = "",
    ) -> None:
        if ids is None and where is None:
            raise ValueError(f"index '{index}': delete needs ids or a filter")
        col, _info = await self._collection(index)
        chroma_filter = self._where(col, where, namespace)
        if ids is not None:
            if not ids:
                return
            await self._on(
                col.delete,
                ids=[_internal_id(namespace, i) for i in ids],
                where=chroma_filter,
            )
        else:
            await self._on(col.delete, where=chroma_filter)

    async def search(
        self,
        index: str,
        vector: Sequence[float],
        top_k: int = 5,
        where: Mapping[str, Any] | None = None,
        namespace: str = "",
        include_vectors: bool = False,
    ) -> list[SearchHit]:
        col, info = await self._collection(index)
        check_query(vector, info.dimension, index)
        include = ["metadatas", "documents", "distances"]
        if include_vectors:
            include.append("embeddings")
        result = await self._on(
            col.query,
            query_embeddings=[list(map(float, vector))],
            n_results=top_k,
            where=self._where(col, where, namespace),
            include=include,
        )
        hits: list[SearchHit] = []
        distances = result["distances"][0]
        metadatas = result["metadatas"][0]
        documents = result["documents"][0]
        embeddings = result["embeddings"][0] if include_vectors else None
        for i, distance in enumerate(distances):
            meta = dict(metadatas[i] or {})
            record_id = str(meta.pop(_ID))
            meta.pop(_NS, None)
            hits.append(
                SearchHit(
                    id=record_id,
                    score=_score(info.metric, float(distance)),
                    text=documents[i] or None,
                    metadata=meta,
                    vector=(
                        tuple(float(x) for x in embeddings[i]) if embeddings is not None else None
                    ),
                )
            )
        return hits

    async def scan(
        self,
        index: str,
        where: Mapping[str, Any] | None = None,
        namespace: str = "",
    ) -> list[StoredRecord]:
        col, _info = await self._collection(index)
        result = await self._on(
            col.get, where=self._where(col, where, namespace), include=["metadatas", "documents"]
        )
        records: list[StoredRecord] = []
        for meta, doc in zip(result["metadatas"], result["documents"], strict=True):
            meta = dict(meta or {})
            record_id = str(meta.pop(_ID))
            meta.pop(_NS, None)
            records.append(StoredRecord(id=record_id, text=doc or None, metadata=meta))
        return records

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await self._run(_close_client, client)


def from_config(name: str, config: Any, resolve: Callable[[str], Path]) -> ChromaStore:
    """The store of a `ChromaConfig` (registry hook)."""
    if config.host is not None:
        return ChromaStore(host=config.host, port=config.port, ssl=config.ssl, name=name)
    return ChromaStore(resolve(config.path or "vectors/chroma"), name=name)


def _close_client(client: Any) -> None:
    """`close()` releases the shared System, but chromadb 1.5.9's HTTP API component never
    closes its httpx sessions (the client's and its admin client's): their sockets leak.
    Close them once this client's System is released."""
    from chromadb.api.shared_system_client import SharedSystemClient

    sessions: list[Any] = []
    for owner in (client, getattr(client, "_admin_client", None)):
        session = getattr(getattr(owner, "_server", None), "_session", None)
        if session is not None and all(session is not s for s in sessions):
            sessions.append(session)
    client.close()
    if getattr(client, "_identifier", None) not in SharedSystemClient._identifier_to_system:
        for session in sessions:
            session.close()


def _score(metric: Metric, distance: float) -> float:
    if metric == "euclidean":
        return -math.sqrt(max(distance, 0.0))
    return 1.0 - distance  # cosine: 1 - cos; ip: 1 - dot
