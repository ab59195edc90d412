"""Pinecone (serverless) through the official SDK's async client, `pinecone.AsyncPinecone`.

Control plane (`host`, default Pinecone's public API): indexes are created as serverless
(`deployment_type: managed`, `cloud`/`region` from the config) dense indexes, declared the way
the 2026-07 API addresses the vector methods (one `dense_vector` field named `_values`), and
`create_index` waits until the index is ready. `describe` gives each index's data-plane host;
it is cached per index with its dimension and metric, and dropped when the index is deleted.

Data plane (one `AsyncIndex` per index): a record id is Pinecone's vector id (Pinecone takes
ASCII ids of 1-512 characters), a namespace is a Pinecone namespace ("" = the default one),
record text rides in metadata under `_llmo_text` and is stripped from results. Upserts go in
requests of at most 100 vectors. Pinecone keeps every metadata number as a 64-bit float;
integral values come back as `int`.

Scores: Pinecone returns cosine similarity for `cosine` and the dot product for `dotproduct`
(ours: `dot`); for `euclidean` it returns the *squared* distance, lower is closer, which
becomes our `-sqrt(score)`.

Index metadata (what `create_index(metadata=...)` records, e.g. the embedder) is kept in the
index's tags, not in a record: tag values are at most 120 printable ASCII characters, so the
metadata is stored as ASCII-escaped JSON cut into consecutive tags `llmo_meta_0`,
`llmo_meta_1`, ... (at most 16 of Pinecone's 20 tags, so about 1.9 kB of JSON; more is
refused at `create_index`). No record or namespace is reserved, so stats, scans and searches
see only user records.

`scan` lists ids page by page (100 a page), fetches each page and applies the portable filter
to the returned metadata here; `delete(ids=..., where=...)` does the same to delete only the
listed ids that match (Pinecone's delete takes ids *or* a filter). A filter alone is deleted
server-side. `translate_filter` gives Pinecone's filter (the same operators; booleans in
`$in`/`$nin`, which Pinecone does not take there, become `$or` of `$eq` / `$and` of `$ne`).

SDK errors become `IndexNotFoundError` (404) or `VectorStoreError` naming the store and index;
429, 5xx, timeouts and connection failures are marked `retryable` (after the SDK's own
retries). The API key is never part of a message or `repr`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from llm_orchestrator.exceptions import ConfigurationError, MissingDependencyError
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
from llm_orchestrator.vectordb.filters import And, Node, Or, parse_filter

__all__ = ["PineconeStore", "from_config", "translate_filter"]

_TEXT = "_llmo_text"
_DENSE_FIELD = "_values"
_TAG_PREFIX = "llmo_meta_"
_TAG_VALUE_MAX = 120
_TAG_CHUNKS_MAX = 16
#: vectors per upsert request, ids per fetch / delete request, ids per list page
_BATCH = 100
_TOP_K_MAX = 10_000
#: seconds `create_index` / `delete_index` wait for the index to be ready / gone
_READY_TIMEOUT = 300
_TO_PINECONE: dict[str, str] = {"cosine": "cosine", "dot": "dotproduct", "euclidean": "euclidean"}
_FROM_PINECONE: dict[str, Metric] = {
    "cosine": "cosine",
    "dotproduct": "dot",
    "euclidean": "euclidean",
}


def _sdk() -> Any:
    try:
        import pinecone
    except ImportError as exc:
        raise MissingDependencyError("pinecone", "pinecone", "the pinecone vector store") from exc
    return pinecone


# -- filters --------------------------------------------------------------------------------


def translate_filter(node: Node) -> dict[str, Any]:
    """Pinecone's metadata filter for a parsed portable filter (`ValueError` if impossible)."""
    if isinstance(node, And | Or):
        children = [translate_filter(child) for child in node.children]
        if len(children) == 1:
            return children[0]
        return {"$and" if isinstance(node, And) else "$or": children}
    key, op, value = node.field, node.op, node.value
    if key.startswith("$"):
        raise ValueError(f"filter field '{key}': Pinecone metadata fields cannot start with '$'")
    if op in ("$in", "$nin"):
        assert isinstance(value, tuple)
        if any(isinstance(v, bool) for v in value):
            # Pinecone's $in/$nin take strings and numbers only
            eq, join = ("$eq", "$or") if op == "$in" else ("$ne", "$and")
            parts = [{key: {eq: v}} for v in value]
            return parts[0] if len(parts) == 1 else {join: parts}
        return {key: {op: list(value)}}
    return {key: {op: value}}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    return type(a) is type(b) and bool(a == b)


def _eq(stored: Any, target: Any) -> bool:
    if isinstance(stored, list):  # Pinecone's list-of-strings metadata
        return any(_same(s, target) for s in stored)
    return _same(stored, target)


def matches(node: Node, metadata: Mapping[str, Any]) -> bool:
    """Whether `metadata` satisfies `node`, with Pinecone's semantics (used by `scan`)."""
    if isinstance(node, And):
        return all(matches(child, metadata) for child in node.children)
    if isinstance(node, Or):
        return any(matches(child, metadata) for child in node.children)
    present = node.field in metadata
    stored = metadata.get(node.field)
    op, value = node.op, node.value
    if op == "$eq":
        return present and _eq(stored, value)
    if op == "$ne":
        return not (present and _eq(stored, value))
    if op in ("$in", "$nin"):
        assert isinstance(value, tuple)
        hit = present and any(_eq(stored, v) for v in value)
        return hit if op == "$in" else not hit
    if not present or isinstance(stored, bool) or not isinstance(stored, int | float):
        return False
    assert isinstance(value, int | float)
    x, y = float(stored), float(value)
    return {"$gt": x > y, "$gte": x >= y, "$lt": x < y, "$lte": x <= y}[op]


# -- index metadata in tags -----------------------------------------------------------------


def metadata_to_tags(metadata: Mapping[str, Any], index: str) -> dict[str, str]:
    """Index metadata as consecutive tags of ASCII-escaped JSON (empty metadata: no tags)."""
    if not metadata:
        return {}
    try:
        text = json.dumps(dict(metadata), ensure_ascii=True, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise VectorStoreError(f"index '{index}': index metadata is not JSON: {exc}") from exc
    if not text.isprintable():
        raise VectorStoreError(
            f"index '{index}': index metadata holds control characters Pinecone tags refuse"
        )
    chunks = [text[i : i + _TAG_VALUE_MAX] for i in range(0, len(text), _TAG_VALUE_MAX)]
    if len(chunks) > _TAG_CHUNKS_MAX:
        raise VectorStoreError(
            f"index '{index}': index metadata is {len(text)} characters as JSON; Pinecone "
            f"keeps it in tags, which hold at most {_TAG_CHUNKS_MAX * _TAG_VALUE_MAX}: "
            "record less (e.g. only the embedder and model)"
        )
    return {f"{_TAG_PREFIX}{i}": chunk for i, chunk in enumerate(chunks)}


def tags_to_metadata(tags: Mapping[str, str] | None) -> dict[str, Any]:
    parts: dict[int, str] = {}
    for key, value in (tags or {}).items():
        suffix = key.removeprefix(_TAG_PREFIX)
        if key.startswith(_TAG_PREFIX) and suffix.isdigit():
            parts[int(suffix)] = value
    if not parts:
        return {}
    decoded = json.loads("".join(parts[i] for i in sorted(parts)))
    return dict(decoded) if isinstance(decoded, dict) else {}


# -- the store ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Described:
    host: str
    dimension: int
    metric: Metric
    metadata: dict[str, Any]


def _number(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _user_metadata(raw: Mapping[str, Any] | None) -> tuple[str | None, dict[str, Any]]:
    metadata = {k: _number(v) for k, v in (raw or {}).items()}
    text = metadata.pop(_TEXT, None)
    return (str(text) if text is not None else None), metadata


class PineconeStore:
    """`PineconeStore(api_key=..., host=None, cloud="aws", region="us-east-1")`."""

    kind = "pinecone"

    def __init__(
        self,
        *,
        api_key: SecretStr | None = None,
        host: str | None = None,
        cloud: str = "aws",
        region: str = "us-east-1",
        timeout_seconds: float = 30.0,
        name: str = "pinecone",
    ) -> None:
        self.name = name
        self.host = host
        self.cloud = cloud
        self.region = region
        self._api_key = api_key
        self._timeout = timeout_seconds
        self._control: Any = None
        self._key: str | None = None
        self._described: dict[str, _Described] = {}
        self._data: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"PineconeStore({self.name!r}, {self.host or 'api.pinecone.io'})"

    # -- clients ---------------------------------------------------------------------------

    def _secret(self) -> str:
        if self._key is None:
            key = self._api_key.get_secret_value() if self._api_key is not None else None
            key = key or os.environ.get("PINECONE_API_KEY")
            if not key:
                raise ConfigurationError(
                    f"vector store '{self.name}' (pinecone) has no API key: set the "
                    f"environment variable PINECONE_API_KEY or `api_key` under "
                    f"vector_stores.{self.name} in llm-orchestrator.yaml"
                )
            self._key = key
        return self._key

    def _api(self) -> Any:
        if self._control is None:
            pinecone = _sdk()
            self._control = pinecone.AsyncPinecone(
                api_key=self._secret(), host=self.host or None, timeout=self._timeout
            )
        return self._control

    async def _index(self, name: str) -> tuple[Any, _Described]:
        described = self._described.get(name)
        if described is None:
            described = await self._describe(name)
        client = self._data.get(name)
        if client is None:
            opened = await self._api().index(host=described.host)
            client = self._data.setdefault(name, opened)
            if client is not opened:  # another task opened one meanwhile
                await opened.close()
        return client, described

    async def _describe(self, name: str) -> _Described:
        with self._errors(name):
            model = await self._api().indexes.describe(name)
        return self._remember(name, model)

    def _remember(self, name: str, model: Any) -> _Described:
        field = model.schema.fields.get(_DENSE_FIELD)
        metric = _FROM_PINECONE.get(str(getattr(field, "metric", "")).lower())
        dimension = getattr(field, "dimension", None)
        if metric is None or not isinstance(dimension, int) or not model.host:
            raise VectorStoreError(
                f"{self!r}: index '{name}' is not a dense vector index with a host (is it a "
                "document or integrated index, or still initializing?); use another index"
            )
        try:
            metadata = tags_to_metadata(model.tags)
        except ValueError as exc:
            raise VectorStoreError(
                f"{self!r}: index '{name}' has unreadable {_TAG_PREFIX}* tags: {exc}"
            ) from exc
        described = _Described(str(model.host), dimension, metric, metadata)
        self._described[name] = described
        return described

    async def _forget(self, name: str) -> None:
        self._described.pop(name, None)
        client = self._data.pop(name, None)
        if client is not None:
            await client.close()

    @contextmanager
    def _errors(self, index: str | None) -> Iterator[None]:
        """Translate SDK errors at the boundary: our types, chained, naming store and index."""
        pinecone = _sdk()
        try:
            yield
        except pinecone.PineconeError as exc:
            raise self._translate(exc, index) from exc

    def _translate(self, exc: Exception, index: str | None) -> VectorStoreError:
        errors = _sdk()
        where = f"{self!r}" + (f", index '{index}'" if index else "")
        status = getattr(exc, "status_code", None)
        detail = self._scrub(str(getattr(exc, "message", None) or exc))
        error: VectorStoreError
        if isinstance(exc, errors.NotFoundError) and index is not None:
            return IndexNotFoundError(f"{where}: no such index (Pinecone 404); {MISSING_INDEX_FIX}")
        if isinstance(exc, errors.UnauthorizedError | errors.ForbiddenError):
            return VectorStoreError(
                f"{where}: Pinecone refused the API key ({status}: {detail}); check `api_key` "
                f"under vector_stores.{self.name} or PINECONE_API_KEY"
            )
        if isinstance(exc, errors.RateLimitError):
            error = VectorStoreError(
                f"{where}: Pinecone rate limit (429: {detail}), still limited after the "
                "client's retries; retry later or lower the request rate"
            )
            error.retryable = True
            error.retry_after = exc.retry_after
            return error
        if isinstance(exc, errors.ServiceError):
            error = VectorStoreError(f"{where}: Pinecone server error ({status}: {detail})")
            error.retryable = True
            return error
        if isinstance(exc, errors.PineconeTimeoutError | errors.PineconeConnectionError):
            error = VectorStoreError(
                f"{where}: cannot reach Pinecone ({detail}); check `host` and the network"
            )
            error.retryable = True
            return error
        if isinstance(exc, errors.ApiError):
            return VectorStoreError(f"{where}: Pinecone refused the request ({status}: {detail})")
        return VectorStoreError(f"{where}: {type(exc).__name__}: {detail}")

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    # -- indexes ---------------------------------------------------------------------------

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
        errors = _sdk()
        tags = metadata_to_tags(metadata or {}, name)
        try:
            existing: _Described | None = await self._describe(name)
        except IndexNotFoundError:
            existing = None
        if existing is None:
            try:
                with self._errors(name):
                    model = await self._api().indexes.create(
                        name=name,
                        schema={
                            "fields": {
                                _DENSE_FIELD: {
                                    "type": "dense_vector",
                                    "dimension": dimension,
                                    "metric": _TO_PINECONE[metric],
                                }
                            }
                        },
                        deployment={
                            "deployment_type": "managed",
                            "cloud": self.cloud,
                            "region": self.region,
                        },
                        tags=tags or None,
                        timeout=_READY_TIMEOUT,
                    )
                self._remember(name, model)
                return IndexInfo(name, dimension, metric, 0, dict(metadata or {}))
            except VectorStoreError as exc:
                if not isinstance(exc.__cause__, errors.ConflictError):
                    raise
            existing = await self._describe(name)  # created meanwhile by someone else
        if (existing.dimension, existing.metric) != (dimension, metric):
            raise VectorStoreError(
                f"{self!r}: index '{name}' exists with dimension {existing.dimension} and "
                f"metric {existing.metric}, not {dimension}/{metric}"
            )
        return await self.stats(name)

    async def delete_index(self, name: str) -> None:
        await self._describe(name)
        await self._forget(name)
        with self._errors(name):
            await self._api().indexes.delete(name, timeout=_READY_TIMEOUT)

    async def list_indexes(self) -> list[str]:
        with self._errors(None):
            return sorted([model.name async for model in self._api().indexes.list()])

    async def stats(self, name: str) -> IndexInfo:
        described = await self._describe(name)
        client, _ = await self._index(name)
        with self._errors(name):
            response = await client.describe_index_stats()
        return IndexInfo(
            name=name,
            dimension=described.dimension,
            metric=described.metric,
            count=int(response.total_vector_count),
            metadata=dict(described.metadata),
        )

    async def index_metadata(self, name: str) -> dict[str, Any]:
        return dict((await self._describe(name)).metadata)

    async def health(self) -> bool:
        try:
            await self.list_indexes()
        except (VectorStoreError, ConfigurationError):
            return False
        return True

    # -- records ---------------------------------------------------------------------------

    async def upsert(self, index: str, records: Sequence[VectorRecord], namespace: str = "") -> int:
        client, described = await self._index(index)
        check_records(records, described.dimension, index)
        for record in records:
            if not record.id.isascii() or len(record.id) > 512 or "\x00" in record.id:
                raise VectorStoreError(
                    f"index '{index}': record id {record.id!r} cannot be a Pinecone id "
                    "(1-512 ASCII characters, no NUL); derive ASCII ids, e.g. a hash"
                )
        for start in range(0, len(records), _BATCH):
            vectors: list[dict[str, Any]] = []
            for record in records[start : start + _BATCH]:
                vector: dict[str, Any] = {
                    "id": record.id,
                    "values": [float(x) for x in record.vector],
                }
                metadata: dict[str, Any] = dict(record.metadata)
                if record.text is not None:
                    metadata[_TEXT] = record.text
                if metadata:
                    vector["metadata"] = metadata
                vectors.append(vector)
            with self._errors(index):
                await client.upsert(vectors=vectors, namespace=namespace)
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
        node = parse_filter(where) if where is not None else None
        translated = translate_filter(node) if node is not None else None
        client, _ = await self._index(index)
        if ids is None:
            with self._errors(index):
                await client.delete(filter=translated, namespace=namespace)
            return
        doomed = list(dict.fromkeys(ids))
        if node is not None:
            found = await self._fetch(client, index, doomed, namespace)
            doomed = [record.id for record in found if matches(node, record.metadata)]
        for start in range(0, len(doomed), _BATCH):
            with self._errors(index):
                await client.delete(ids=doomed[start : start + _BATCH], namespace=namespace)

    async def search(
        self,
        index: str,
        vector: Sequence[float],
        top_k: int = 5,
        where: Mapping[str, Any] | None = None,
        namespace: str = "",
        include_vectors: bool = False,
    ) -> list[SearchHit]:
        translated = translate_filter(parse_filter(where)) if where is not None else None
        client, described = await self._index(index)
        check_query(vector, described.dimension, index)
        if top_k < 1:
            return []
        with self._errors(index):
            response = await client.query(
                vector=[float(x) for x in vector],
                top_k=min(top_k, _TOP_K_MAX),
                namespace=namespace,
                filter=translated,
                include_values=include_vectors,
                include_metadata=True,
            )
        hits: list[SearchHit] = []
        for match in response.matches:
            text, metadata = _user_metadata(match.metadata)
            score = float(match.score)
            if described.metric == "euclidean":
                score = -math.sqrt(max(score, 0.0))
            hits.append(
                SearchHit(
                    id=str(match.id),
                    score=score,
                    text=text,
                    metadata=metadata,
                    vector=tuple(float(x) for x in match.values) if include_vectors else None,
                )
            )
        return hits

    async def scan(
        self,
        index: str,
        where: Mapping[str, Any] | None = None,
        namespace: str = "",
    ) -> list[StoredRecord]:
        node = parse_filter(where) if where is not None else None
        if node is not None:
            translate_filter(node)
        client, _ = await self._index(index)
        records: list[StoredRecord] = []
        token: str | None = None
        while True:
            with self._errors(index):
                page = await client.list_paginated(
                    namespace=namespace, limit=_BATCH, pagination_token=token
                )
            page_ids = [str(item.id) for item in page.vectors if item.id]
            if page_ids:
                for record in await self._fetch(client, index, page_ids, namespace):
                    if node is None or matches(node, record.metadata):
                        records.append(record)
            token = page.pagination.next if page.pagination is not None else None
            if not token:
                return records

    async def _fetch(
        self, client: Any, index: str, ids: Sequence[str], namespace: str
    ) -> list[StoredRecord]:
        out: list[StoredRecord] = []
        for start in range(0, len(ids), _BATCH):
            with self._errors(index):
                response = await client.fetch(
                    ids=list(ids[start : start + _BATCH]), namespace=namespace
                )
            for vid, vector in response.vectors.items():
                text, metadata = _user_metadata(vector.metadata)
                out.append(StoredRecord(id=str(vid), text=text, metadata=metadata))
        return out

    async def aclose(self) -> None:
        clients = list(self._data.values())
        self._data.clear()
        self._described.clear()
        control, self._control = self._control, None
        for client in clients:
            await client.close()
        if control is not None:
            await control.close()


def from_config(name: str, config: Any, resolve: Callable[[str], Path]) -> PineconeStore:
    """The store of a `PineconeConfig` (registry hook; nothing is contacted here)."""
    return PineconeStore(
        api_key=config.api_key,
        host=config.host,
        cloud=config.cloud,
        region=config.region,
        timeout_seconds=config.timeout_seconds,
        name=name,
    )
