"""Qdrant through `AsyncQdrantClient`: local mode (`path=`, embedded, no server) or a server
(`url=`).

Qdrant point ids are UUIDs or integers, so a record id becomes `uuid5(json([namespace, id]))`
and the original id, namespace and text ride in reserved payload keys. Index metadata (the
dimension is Qdrant's own) is kept in the collection's `metadata`.
Qdrant stores cosine vectors normalised: `include_vectors` returns them so.

Server mode talks REST through httpx. Every client call runs inside `_errors`, which turns
the client's exceptions (`UnexpectedResponse` with Qdrant's `{"status": {"error": ...}}`
body, `ResponseHandlingException` around connection failures, `ResourceExhaustedResponse`)
into `IndexNotFoundError` / `VectorStoreError` naming the store and index; connection
failures, 429 and 5xx are marked retryable. The client's version check is switched off: it
runs in a fire-and-forget thread whose only outcome is a warning (and, when the server is
down, a warning raised from that thread); a server that does not speak the client's API
fails the first request instead, with a translated error.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import SecretStr

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
from llm_orchestrator.vectordb.filters import qdrant_filter

_NS, _ID, _TEXT = "_llmo_ns", "_llmo_id", "_llmo_text"
_META_USER = "llmo:metadata"
_ID_NAMESPACE = uuid.UUID("6f1c3a52-8d0e-4c71-9a43-0b7e2f5d9c10")
_BATCH = 256


def point_id(namespace: str, record_id: str) -> str:
    """The deterministic Qdrant id of a record."""
    return str(uuid.uuid5(_ID_NAMESPACE, json.dumps([namespace, record_id], ensure_ascii=False)))


def _models() -> Any:
    try:
        from qdrant_client import models
    except ImportError as exc:
        raise MissingDependencyError("qdrant-client", "rag", "the qdrant vector store") from exc
    return models


class QdrantStore:
    """`QdrantStore(path=...)` embedded (local mode), or `QdrantStore(url=..., api_key=...)`."""

    kind = "qdrant"

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        url: str | None = None,
        api_key: SecretStr | None = None,
        timeout_seconds: float = 30.0,
        name: str = "qdrant",
    ) -> None:
        if (path is None) == (url is None):
            raise ValueError("QdrantStore takes either path= (local mode) or url= (server)")
        self.name = name
        self.path = Path(path) if path is not None else None
        self.url = url
        self._api_key = api_key
        self._timeout = timeout_seconds
        self._client: Any = None

    def __repr__(self) -> str:
        return f"QdrantStore({self.name!r}, {self.path or self.url})"

    def _api(self) -> Any:
        if self._client is None:
            _models()
            from qdrant_client import AsyncQdrantClient

            if self.path is not None:
                self._client = AsyncQdrantClient(path=str(self.path))
            else:
                key = self._api_key.get_secret_value() if self._api_key else None
                self._client = AsyncQdrantClient(
                    url=self.url,
                    api_key=key,
                    timeout=math.ceil(self._timeout),
                    check_compatibility=False,
                )
        return self._client

    @contextmanager
    def _errors(self, index: str | None) -> Iterator[None]:
        """Translate the client's errors at the boundary: our types, chained, naming the
        store and index."""
        try:
            yield
        except VectorStoreError:
            raise
        except Exception as exc:
            error = self._translate(exc, index)
            if error is None:
                raise
            raise error from exc

    def _translate(self, exc: Exception, index: str | None) -> VectorStoreError | None:
        """Our error for a `qdrant_client` REST exception; None for anything else (local
        mode raises plain Python errors, which pass through)."""
        from qdrant_client.common.client_exceptions import ResourceExhaustedResponse
        from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

        where = f"{self!r}" + (f", index '{index}'" if index else "")
        error: VectorStoreError
        if isinstance(exc, UnexpectedResponse):
            status = exc.status_code or 0
            detail = self._scrub(_server_message(exc.content) or exc.reason_phrase)
            if status == 404 and index is not None:
                return IndexNotFoundError(
                    f"{where}: no such index (Qdrant 404: {detail}); {MISSING_INDEX_FIX}"
                )
            if status in (401, 403):
                return VectorStoreError(
                    f"{where}: Qdrant refused the API key ({status}: {detail}); check "
                    f"`api_key` under vector_stores.{self.name}"
                )
            error = VectorStoreError(f"{where}: Qdrant refused the request ({status}: {detail})")
            error.retryable = status == 429 or status >= 500
            return error
        if isinstance(exc, ResourceExhaustedResponse):
            error = VectorStoreError(
                f"{where}: Qdrant rate limit (429: {self._scrub(exc.message)}); retry later"
            )
            error.retryable = True
            error.retry_after = float(exc.retry_after_s)
            return error
        if isinstance(exc, ResponseHandlingException):
            source = exc.source
            if isinstance(source, ValueError):  # the response did not parse
                return VectorStoreError(
                    f"{where}: Qdrant sent a response the client cannot read: "
                    f"{self._scrub(str(source))[:300]}"
                )
            error = VectorStoreError(
                f"{where}: cannot reach Qdrant at {self.url} ({type(source).__name__}: "
                f"{self._scrub(str(source)) or 'no detail'}); check `url` and that the "
                "server is running"
            )
            error.retryable = True
            return error
        return None

    def _scrub(self, text: str) -> str:
        key = self._api_key.get_secret_value() if self._api_key else ""
        return text.replace(key, "***") if key else text

    async def _info(self, name: str, with_count: bool = False) -> IndexInfo:
        client = self._api()
        with self._errors(name):
            exists = await client.collection_exists(name)
        if not exists:
            raise IndexNotFoundError(f"{self!r}: no index '{name}'; {MISSING_INDEX_FIX}")
        with self._errors(name):
            info = await client.get_collection(name)
        params = info.config.params.vectors
        if not hasattr(params, "size"):
            raise VectorStoreError(
                f"{self!r}: index '{name}' has named vectors {sorted(params or {})}; this "
                "store reads and writes one unnamed vector per point"
            )
        distance = str(getattr(params.distance, "value", params.distance)).lower()
        metrics: dict[str, Metric] = {"cosine": "cosine", "dot": "dot", "euclid": "euclidean"}
        if distance not in metrics:
            raise VectorStoreError(
                f"{self!r}: index '{name}' uses the {params.distance} distance; this store "
                "supports Cosine, Dot and Euclid"
            )
        metric = metrics[distance]
        meta = dict(info.config.metadata or {})
        count = -1
        if with_count:
            with self._errors(name):
                count = (await client.count(name, exact=True)).count
        return IndexInfo(
            name=name,
            dimension=int(params.size),
            metric=metric,
            count=count,
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
        m = _models()
        client = self._api()
        with self._errors(name):
            exists = await client.collection_exists(name)
        if exists:
            info = await self._info(name, with_count=True)
            if (info.dimension, info.metric) != (dimension, metric):
                raise VectorStoreError(
                    f"{self!r}: index '{name}' exists with dimension {info.dimension} and "
                    f"metric {info.metric}, not {dimension}/{metric}"
                )
            return info
        distance = {
            "cosine": m.Distance.COSINE,
            "dot": m.Distance.DOT,
            "euclidean": m.Distance.EUCLID,
        }
        try:
            with self._errors(name):
                await client.create_collection(
                    name,
                    vectors_config=m.VectorParams(size=dimension, distance=distance[metric]),
                    metadata={_META_USER: json.dumps(dict(metadata or {}), sort_keys=True)},
                )
        except VectorStoreError as exc:
            if getattr(exc.__cause__, "status_code", None) != 409:
                raise
            # created meanwhile by another client: same contract as an existing index
            return await self.create_index(name, dimension, metric, metadata)
        return IndexInfo(name, dimension, metric, 0, dict(metadata or {}))

    async def delete_index(self, name: str) -> None:
        await self._info(name)
        with self._errors(name):
            await self._api().delete_collection(name)

    async def list_indexes(self) -> list[str]:
        with self._errors(None):
            response = await self._api().get_collections()
        return sorted(c.name for c in response.collections)

    async def stats(self, name: str) -> IndexInfo:
        return await self._info(name, with_count=True)

    async def index_metadata(self, name: str) -> dict[str, Any]:
        return dict((await self._info(name)).metadata)

    async def health(self) -> bool:
        try:
            await self.list_indexes()
        except Exception:  # VectorStoreError in server mode; any failure in local mode
            return False
        return True

    async def upsert(self, index: str, records: Sequence[VectorRecord], namespace: str = "") -> int:
        info = await self._info(index)
        check_records(records, info.dimension, index)
        m = _models()
        client = self._api()
        for start in range(0, len(records), _BATCH):
            points = [
                m.PointStruct(
                    id=point_id(namespace, r.id),
                    vector=[float(x) for x in r.vector],
                    payload={**r.metadata, _NS: namespace, _ID: r.id, _TEXT: r.text},
                )
                for r in records[start : start + _BATCH]
            ]
            with self._errors(index):
                await client.upsert(index, points=points, wait=True)
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
        await self._info(index)
        m = _models()
        query = qdrant_filter(where, _NS, namespace)
        if ids is not None:
            if not ids:
                return
            query.must.append(m.HasIdCondition(has_id=[point_id(namespace, i) for i in ids]))
        with self._errors(index):
            await self._api().delete(
                index, points_selector=m.FilterSelector(filter=query), wait=True
            )

    async def search(
        self,
        index: str,
        vector: Sequence[float],
        top_k: int = 5,
        where: Mapping[str, Any] | None = None,
        namespace: str = "",
        include_vectors: bool = False,
    ) -> list[SearchHit]:
        info = await self._info(index)
        check_query(vector, info.dimension, index)
        query_filter = qdrant_filter(where, _NS, namespace)
        with self._errors(index):
            response = await self._api().query_points(
                index,
                query=[float(x) for x in vector],
                query_filter=query_filter,
                limit=top_k,
                with_payload=True,
                with_vectors=include_vectors,
            )
        hits: list[SearchHit] = []
        for point in response.points:
            payload = dict(point.payload or {})
            record_id = str(payload.pop(_ID))
            text = payload.pop(_TEXT, None)
            payload.pop(_NS, None)
            score = float(point.score)
            vec = point.vector if include_vectors else None
            hits.append(
                SearchHit(
                    id=record_id,
                    score=-score if info.metric == "euclidean" else score,
                    text=text,
                    metadata=payload,
                    vector=tuple(float(x) for x in vec) if isinstance(vec, list) else None,
                )
            )
        return hits

    async def scan(
        self,
        index: str,
        where: Mapping[str, Any] | None = None,
        namespace: str = "",
    ) -> list[StoredRecord]:
        await self._info(index)
        client = self._api()
        scroll_filter = qdrant_filter(where, _NS, namespace)
        records: list[StoredRecord] = []
        offset: Any = None
        while True:
            with self._errors(index):
                points, offset = await client.scroll(
                    index,
                    scroll_filter=scroll_filter,
                    limit=_BATCH,
                    offset=offset,
                    with_payload=True,
                    with_vectors=False,
                )
            for point in points:
                payload = dict(point.payload or {})
                record_id = str(payload.pop(_ID))
                text = payload.pop(_TEXT, None)
                payload.pop(_NS, None)
                records.append(StoredRecord(id=record_id, text=text, metadata=payload))
            if offset is None:
                return records

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()


def _server_message(content: bytes) -> str:
    """The message of a Qdrant error body (`{"status": {"error": ...}}`), else the text."""
    try:
        body = json.loads(content)
    except ValueError:
        return content.decode("utf-8", "replace").strip()[:300]
    status = body.get("status") if isinstance(body, dict) else None
    if isinstance(status, dict) and isinstance(status.get("error"), str):
        return str(status["error"])
    return content.decode("utf-8", "replace").strip()[:300]


def from_config(name: str, config: Any, resolve: Callable[[str], Path]) -> QdrantStore:
    """The store of a `QdrantConfig` (registry hook)."""
    if config.url is not None:
        return QdrantStore(
            url=config.url,
            api_key=config.api_key,
            timeout_seconds=config.timeout_seconds,
            name=name,
        )
    return QdrantStore(resolve(config.path), name=name)
