"""Weaviate v4 through the official client's async API (`weaviate.use_async_with_custom`).

The client speaks REST for the schema (`/v1/schema...`, readiness) and gRPC for every query,
batch insert, batch delete and aggregate, so a server needs both ports (`url` for REST,
`grpc_host`:`grpc_port` for gRPC; TLS on both when `url` is https). It connects with
`skip_init_checks=True` on first use (one `GET /v1/meta`), not at construction. Upserts go
as `insert_many` calls of at most 500 objects (one gRPC BatchObjects request each).

Index names -> collections. Weaviate class names start with an upper-case letter and hold
only letters, digits and `_`, and Weaviate refuses a name that differs from an existing one
only in case ("found similar class"), so an index name maps reversibly to `Llmo_` + an
escaped name: lower-case letters and digits stay, `_` becomes `__`, `-` `_h`, `.` `_p`, and
an upper-case letter X `_u` + x ("My-docs" -> "Llmo__umy_hdocs").
Index names with any other character (or longer than 200) are refused. `list_indexes` shows
only collections of that form, so foreign collections on a shared server stay invisible.
The collection description holds JSON `{"llmo_index": name, "dimension": n, "metadata":
{...}}` (Weaviate learns a dimension only from the first vector; we need it up front).

Vectors are always ours: one self-provided named vector `default` (HNSW) with Weaviate's
distance `cosine` (1 - cos; score = 1 - d), `dot` (the negated dot product; score = -d) or
`l2-squared` for our `euclidean` (squared distance; score = -sqrt(d)).

Records -> objects. Weaviate property names cannot start with `_`, so the record id, namespace
and text live in `llmo_id`, `llmo_ns` (both `field`-tokenized: exact matches) and `llmo_text`.
Object UUID = uuid5(json([namespace, id])): re-upserting replaces the object. Each metadata key
is its own property, declared before the first insert that uses it (the server may run
without auto-schema): `bool` -> boolean, `int` -> int, `float` -> number, `str` -> text with
`field` tokenization (with Weaviate's default `word` tokenization `$eq "blog"` would also
match "blog post"). Keys must be valid Weaviate property names (a letter, then letters,
digits, `_`), must not start with `llmo_` and must not be `id`/`vector`; a value whose type
does not fit the declared property (a str into an int property, 1.5 into int) is refused
with a message naming the key. Ints stored into a `number` property come back as floats.

Namespaces are a filter on `llmo_ns`, which holds "ns:" + namespace (Weaviate indexes no
token for an empty text, so the default namespace "" could not be matched). Not Weaviate
multi-tenancy: one collection serves every namespace, so `stats` counts all of them, as the
other stores do.

`translate_filter` gives a `weaviate.classes.query.Filter`: `$eq $ne $gt $gte $lt $lte` map
one to one, `$in` to `contains_any` (over an all-string, all-integer, all-number or
all-boolean list; a mix is a `ValueError`), `$nin` to `not_equal` of each value ANDed (what
`contains_none` means, without needing a server recent enough to know ContainsNone),
`$and`/`$or` to `all_of`/`any_of`.
`scan` pages with a keyset (`llmo_id > last`, sorted by `llmo_id`, 500 a page): the cursor
API (`after`) cannot be combined with filters, and offsets stop at Weaviate's
QUERY_MAXIMUM_RESULTS (10 000). `field` tokenization trims whitespace, so a record id with
leading/trailing whitespace could stall the keyset; `scan` then fails instead of looping.

Errors: client exceptions become `IndexNotFoundError` (unknown collection) or
`VectorStoreError` naming the store and index; connection failures and timeouts are marked
`retryable`. The client retries a gRPC `UNAVAILABLE` for about a minute on its own, so every
call is also bounded by `timeout_seconds`. The api key never appears in a message or `repr`.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr

from llm_orchestrator.exceptions import MissingDependencyError
from llm_orchestrator.vectordb.base import (
    MISSING_INDEX_FIX,
    IndexInfo,
    IndexNotFoundError,
    MetadataValue,
    Metric,
    SearchHit,
    StoredRecord,
    VectorRecord,
    VectorStoreError,
    check_metric,
    check_query,
    check_records,
)
from llm_orchestrator.vectordb.filters import And, Condition, Node, Or, parse_filter

__all__ = [
    "WeaviateStore",
    "collection_name",
    "from_config",
    "index_name",
    "object_uuid",
    "translate_filter",
]

_ID, _NS, _TEXT = "llmo_id", "llmo_ns", "llmo_text"
_RESERVED_PROPS = frozenset({"id", "_id", "_additional", "vector", "vectors"})
_PREFIX = "Llmo_"
_ID_NAMESPACE = uuid.UUID("3b0e7c1d-5a2f-4e88-b6d1-9c4f0a7e2d15")
#: objects per `insert_many` call (one gRPC BatchObjects request)
BATCH_SIZE = 500
#: objects per `scan` page
PAGE_SIZE = 500
_INDEX_RE = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")
_PROP_RE = re.compile(r"^[A-Za-z][_0-9A-Za-z]{0,230}$")
_ESCAPES = {"_": "__", "-": "_h", ".": "_p"}
_UNESCAPES = {"_": "_", "h": "-", "p": "."}
_DISTANCE = {"cosine": "cosine", "dot": "dot", "euclidean": "l2-squared"}
_METRIC: dict[str, Metric] = {"cosine": "cosine", "dot": "dot", "l2-squared": "euclidean"}


def _weaviate() -> Any:
    try:
        import weaviate
    except ImportError as exc:
        raise MissingDependencyError(
            "weaviate-client", "weaviate", "the weaviate vector store"
        ) from exc
    return weaviate


def collection_name(index: str) -> str:
    """The Weaviate collection of an index name (see the module docstring for the rule)."""
    if not _INDEX_RE.match(index):
        raise ValueError(
            f"index '{index}': a Weaviate index name takes 1-200 letters, digits, '_', '-' "
            "or '.' (it becomes a collection name, which allows nothing else); rename it"
        )
    out = [_PREFIX]
    for ch in index:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch.isupper():
            out.append("_u" + ch.lower())
        else:
            out.append(ch)
    return "".join(out)


def index_name(collection: str) -> str | None:
    """The index name of a collection made by `collection_name`, or None for another one."""
    if not collection.startswith(_PREFIX):
        return None
    body, out, i = collection[len(_PREFIX) :], [], 0
    while i < len(body):
        ch = body[i]
        if ch != "_":
            if ch.isupper():
                return None
            out.append(ch)
            i += 1
            continue
        if i + 1 >= len(body):
            return None
        code = body[i + 1]
        if code == "u" and i + 2 < len(body) and body[i + 2].islower():
            out.append(body[i + 2].upper())
            i += 3
        elif code in _UNESCAPES:
            out.append(_UNESCAPES[code])
            i += 2
        else:
            return None
    name = "".join(out)
    return name if name and collection_name(name) == collection else None


def object_uuid(namespace: str, record_id: str) -> str:
    """The deterministic object UUID of a record."""
    return str(uuid.uuid5(_ID_NAMESPACE, json.dumps([namespace, record_id], ensure_ascii=False)))


def check_property_name(key: str, index: str) -> None:
    if not _PROP_RE.match(key) or key in _RESERVED_PROPS or key.startswith("llmo_"):
        raise VectorStoreError(
            f"index '{index}': metadata key '{key}' cannot be a Weaviate property: use a "
            "letter followed by letters, digits or '_' (at most 231), not starting with "
            "'llmo_' and not 'id' or 'vector'; rename it"
        )


# -- filters ---------------------------------------------------------------------------


def _scalar_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return "str"


def translate_filter(node: Node) -> Any:
    """A `weaviate.classes.query.Filter` for a parsed portable filter (ValueError if it
    cannot be expressed). Field names must be valid property names."""
    _weaviate()
    from weaviate.classes.query import Filter

    if isinstance(node, And | Or):
        children = [translate_filter(child) for child in node.children]
        if len(children) == 1:
            return children[0]
        return Filter.all_of(children) if isinstance(node, And) else Filter.any_of(children)
    assert isinstance(node, Condition)
    key, op, value = node.field, node.op, node.value
    if not _PROP_RE.match(key) or key in _RESERVED_PROPS or key.startswith("llmo_"):
        raise ValueError(
            f"filter field '{key}': not a metadata property a weaviate store can hold "
            "(a letter, then letters, digits or '_'; not 'llmo_*', 'id' or 'vector')"
        )
    prop = Filter.by_property(key)
    if op == "$nin":
        # `ne a AND ne b`: what ContainsNone means, on servers older than 1.33 too
        assert isinstance(value, tuple)
        nots = [prop.not_equal(v) for v in value]
        return nots[0] if len(nots) == 1 else Filter.all_of(nots)
    if op == "$in":
        assert isinstance(value, tuple)
        kinds = {_scalar_kind(v) for v in value}
        if len(kinds) != 1:
            raise ValueError(
                f"filter field '{key}': weaviate supports $in only over a list of one type "
                f"(all strings, integers, numbers or booleans), got {list(value)!r}"
            )
        values: list[Any] = list(value)
        return prop.contains_any(values)
    method = {
        "$eq": prop.equal,
        "$ne": prop.not_equal,
        "$gt": prop.greater_than,
        "$gte": prop.greater_or_equal,
        "$lt": prop.less_than,
        "$lte": prop.less_or_equal,
    }[op]
    scalar: Any = value
    return method(scalar)


def _ns_value(namespace: str) -> str:
    """What `llmo_ns` holds: never empty (an empty text has no token to filter on)."""
    return "ns:" + namespace


def _where(raw: Mapping[str, Any] | None, namespace: str, *extra: Any) -> Any:
    from weaviate.classes.query import Filter

    parts: list[Any] = [Filter.by_property(_NS).equal(_ns_value(namespace))]
    if raw is not None:
        parts.append(translate_filter(parse_filter(raw)))
    parts.extend(extra)
    return Filter.all_of(parts)


def _grpc_status(exc: BaseException) -> str | None:
    """The gRPC status name behind a client exception (the client raises its own types
    inside `except AioRpcError`, so the gRPC error is on the cause/context chain)."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        code = getattr(seen, "code", None)
        if callable(code):
            try:
                return str(code().name)
            except Exception:  # noqa: BLE001 - not a gRPC error after all
                return None
        seen = seen.__cause__ or seen.__context__
    return None


# -- the store -------------------------------------------------------------------------


class WeaviateStore:
    """`WeaviateStore(url="http://127.0.0.1:8080", grpc_port=50051, api_key=...)`."""

    kind = "weaviate"

    def __init__(
        self,
        url: str,
        *,
        grpc_host: str | None = None,
        grpc_port: int = 50051,
        api_key: SecretStr | None = None,
        timeout_seconds: float = 30.0,
        name: str = "weaviate",
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"weaviate store '{name}': url must be http(s)://host[:port], got {url!r}"
            )
        self.name = name
        self.url = url
        self._host = parts.hostname
        self._secure = parts.scheme == "https"
        self._port = parts.port or (443 if self._secure else 80)
        self.grpc_host = grpc_host or parts.hostname
        self.grpc_port = grpc_port
        self._api_key = api_key
        self._timeout = timeout_seconds
        self._client: Any = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"WeaviateStore({self.name!r}, {self.url}, grpc {self.grpc_host}:{self.grpc_port})"

    # -- plumbing ----------------------------------------------------------------------

    async def _api(self) -> Any:
        async with self._lock:
            if self._client is None:
                weaviate = _weaviate()
                from weaviate.classes.init import AdditionalConfig, Auth, Timeout

                timeout = max(1, math.ceil(self._timeout))
                key = self._api_key.get_secret_value() if self._api_key else None
                client = weaviate.use_async_with_custom(
                    http_host=self._host,
                    http_port=self._port,
                    http_secure=self._secure,
                    grpc_host=self.grpc_host,
                    grpc_port=self.grpc_port,
                    grpc_secure=self._secure,
                    auth_credentials=Auth.api_key(key) if key else None,
                    skip_init_checks=True,
                    additional_config=AdditionalConfig(
                        timeout=Timeout(init=timeout, query=timeout, insert=timeout)
                    ),
                )
                try:
                    async with self._errors(None):
                        await client.connect()
                except BaseException:
                    await client.close()
                    raise
                self._client = client
            return self._client

    def _scrub(self, text: str) -> str:
        key = self._api_key.get_secret_value() if self._api_key else ""
        return text.replace(key, "***") if key else text

    @asynccontextmanager
    async def _errors(self, index: str | None) -> AsyncIterator[None]:
        """Client exceptions -> our types; every call bounded by `timeout_seconds`."""
        from weaviate import exceptions as wx

        where = f"{self!r}" + (f", index '{index}'" if index is not None else "")
        try:
            async with asyncio.timeout(self._timeout):
                yield
        except (VectorStoreError, ValueError):
            raise
        except TimeoutError as exc:
            error = VectorStoreError(
                f"{where}: no answer within {self._timeout:g}s (timeout_seconds); is the "
                f"gRPC port {self.grpc_host}:{self.grpc_port} reachable?"
            )
            error.retryable = True
            raise error from exc
        except wx.InsufficientPermissionsError as exc:
            raise VectorStoreError(
                f"{where}: Weaviate refused the operation (forbidden); give the api_key's "
                f"user the needed permissions ({self._scrub(str(exc))})"
            ) from exc
        except wx.UnexpectedStatusCodeError as exc:
            status = exc.status_code
            detail = self._scrub(str(exc))
            if status in (401, 403):
                raise VectorStoreError(
                    f"{where}: Weaviate refused the credentials (HTTP {status}); check api_key"
                ) from exc
            if status == 404 and index is not None:
                raise IndexNotFoundError(f"{where}: no such index") from exc
            error = VectorStoreError(f"{where}: Weaviate answered HTTP {status}: {detail}")
            error.retryable = status == 429 or status >= 500
            raise error from exc
        except (
            wx.WeaviateConnectionError,
            wx.WeaviateStartUpError,
            wx.WeaviateRetryError,
            wx.WeaviateGRPCUnavailableError,
            wx.WeaviateTimeoutError,
        ) as exc:
            error = VectorStoreError(f"{where}: cannot reach Weaviate: {self._scrub(str(exc))}")
            error.retryable = True
            raise error from exc
        except wx.WeaviateBaseError as exc:
            text = self._scrub(str(exc))
            grpc_code = _grpc_status(exc)
            if grpc_code in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
                raise VectorStoreError(
                    f"{where}: Weaviate refused the credentials (gRPC {grpc_code}); check api_key"
                ) from exc
            # Weaviate reports an unknown collection as gRPC UNKNOWN, told apart by its text
            if "could not find class" in text or "not present in schema" in text:
                raise IndexNotFoundError(f"{where}: no such index ({text})") from exc
            error = VectorStoreError(f"{where}: {text}")
            error.retryable = grpc_code in (
                "UNAVAILABLE",
                "DEADLINE_EXCEEDED",
                "RESOURCE_EXHAUSTED",
            )
            raise error from exc
        except OSError as exc:
            error = VectorStoreError(f"{where}: cannot reach Weaviate: {self._scrub(str(exc))}")
            error.retryable = True
            raise error from exc

    async def _config(self, index: str) -> Any:
        """The collection config of an index, or IndexNotFoundError."""
        client = await self._api()
        collection = collection_name(index)
        async with self._errors(index):
            if not await client.collections.exists(collection):
                raise IndexNotFoundError(f"{self!r}: no index '{index}'; {MISSING_INDEX_FIX}")
            return await client.collections.use(collection).config.get()

    def _describe(self, index: str, config: Any) -> IndexInfo:
        try:
            desc = json.loads(config.description or "{}")
            dimension = int(desc["dimension"])
        except (ValueError, KeyError, TypeError) as exc:
            raise VectorStoreError(
                f"{self!r}: collection '{config.name}' (index '{index}') was not created by "
                "llm-orchestrator (its description has no dimension)"
            ) from exc
        vectors = config.vector_config or {}
        distance = "cosine"
        if "default" in vectors:
            metric_value = vectors["default"].vector_index_config.distance_metric
            distance = str(getattr(metric_value, "value", metric_value))
        return IndexInfo(
            name=index,
            dimension=dimension,
            metric=_METRIC.get(distance, "cosine"),
            count=-1,
            metadata=dict(desc.get("metadata") or {}),
        )

    async def _count(self, index: str) -> int:
        client = await self._api()
        async with self._errors(index):
            result = await client.collections.use(collection_name(index)).aggregate.over_all(
                total_count=True
            )
        return int(result.total_count or 0)

    # -- indexes -----------------------------------------------------------------------

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
        collection = collection_name(name)
        client = await self._api()
        from weaviate.classes.config import (
            Configure,
            DataType,
            Property,
            Tokenization,
            VectorDistances,
        )

        async with self._errors(name):
            exists = await client.collections.exists(collection)
        if exists:
            info = self._describe(name, await self._config(name))
            if (info.dimension, info.metric) != (dimension, metric):
                raise VectorStoreError(
                    f"{self!r}: index '{name}' exists with dimension {info.dimension} and "
                    f"metric {info.metric}, not {dimension}/{metric}"
                )
            return IndexInfo(
                name, info.dimension, info.metric, await self._count(name), info.metadata
            )
        description = json.dumps(
            {"llmo_index": name, "dimension": dimension, "metadata": dict(metadata or {})},
            sort_keys=True,
        )
        distance = VectorDistances(_DISTANCE[metric])
        async with self._errors(name):
            await client.collections.create(
                collection,
                description=description,
                vector_config=Configure.Vectors.self_provided(
                    vector_index_config=Configure.VectorIndex.hnsw(distance_metric=distance)
                ),
                properties=[
                    Property(name=_ID, data_type=DataType.TEXT, tokenization=Tokenization.FIELD),
                    Property(name=_NS, data_type=DataType.TEXT, tokenization=Tokenization.FIELD),
                    Property(name=_TEXT, data_type=DataType.TEXT, index_filterable=False),
                ],
            )
        return IndexInfo(name, dimension, metric, 0, dict(metadata or {}))

    async def delete_index(self, name: str) -> None:
        await self._config(name)
        client = await self._api()
        async with self._errors(name):
            await client.collections.delete(collection_name(name))

    async def list_indexes(self) -> list[str]:
        client = await self._api()
        async with self._errors(None):
            collections = await client.collections.list_all(simple=True)
        names = (index_name(str(c)) for c in collections)
        return sorted(n for n in names if n is not None)

    async def stats(self, name: str) -> IndexInfo:
        info = self._describe(name, await self._config(name))
        return IndexInfo(name, info.dimension, info.metric, await self._count(name), info.metadata)

    async def index_metadata(self, name: str) -> dict[str, Any]:
        return dict(self._describe(name, await self._config(name)).metadata)

    async def health(self) -> bool:
        try:
            client = await self._api()
            async with self._errors(None):
                return bool(await client.is_ready())
        except VectorStoreError:
            return False

    # -- records -----------------------------------------------------------------------

    async def _declare(self, index: str, config: Any, records: Sequence[VectorRecord]) -> None:
        """Add the metadata properties these records need; refuse values that do not fit."""
        from weaviate.classes.config import DataType, Property, Tokenization

        declared = {
            p.name: str(getattr(p.data_type, "value", p.data_type)) for p in config.properties
        }
        wanted: dict[str, str] = {}
        for record in records:
            for key, value in record.metadata.items():
                check_property_name(key, index)
                kind = {"bool": "boolean", "int": "int", "float": "number", "str": "text"}[
                    _scalar_kind(value)
                ]
                have = declared.get(key) or wanted.get(key)
                integral = isinstance(value, float) and value.is_integer()
                if have is None:
                    wanted[key] = kind
                elif have == kind or (have, kind) == ("number", "int"):
                    pass  # fits; an int into a number property comes back as a float
                elif (have, kind) == ("int", "number") and (integral or key not in declared):
                    if not integral:  # declared by this call: widen to number
                        wanted[key] = "number"
                else:
                    raise VectorStoreError(
                        f"index '{index}': record '{record.id}' metadata '{key}' is "
                        f"{type(value).__name__} {value!r}, but the index holds '{key}' as "
                        f"{have}; keep one type per key"
                    )
        if not wanted:
            return
        types = {
            "boolean": DataType.BOOL,
            "int": DataType.INT,
            "number": DataType.NUMBER,
            "text": DataType.TEXT,
        }
        client = await self._api()
        collection = client.collections.use(collection_name(index))
        for key, kind in sorted(wanted.items()):
            prop = Property(
                name=key,
                data_type=types[kind],
                tokenization=Tokenization.FIELD if kind == "text" else None,
            )
            async with self._errors(index):
                await collection.config.add_property(prop)

    async def upsert(self, index: str, records: Sequence[VectorRecord], namespace: str = "") -> int:
        config = await self._config(index)
        info = self._describe(index, config)
        check_records(records, info.dimension, index)
        await self._declare(index, config, records)
        from weaviate.classes.data import DataObject

        client = await self._api()
        collection = client.collections.use(collection_name(index))
        for start in range(0, len(records), BATCH_SIZE):
            objects = []
            for r in records[start : start + BATCH_SIZE]:
                props: dict[str, Any] = {**r.metadata, _ID: r.id, _NS: _ns_value(namespace)}
                if r.text is not None:
                    props[_TEXT] = r.text
                objects.append(
                    DataObject(
                        properties=props,
                        uuid=object_uuid(namespace, r.id),
                        vector=[float(x) for x in r.vector],
                    )
                )
            async with self._errors(index):
                result = await collection.data.insert_many(objects)
            if result.errors:
                position, error = min(result.errors.items())
                record = records[start + position]
                raise VectorStoreError(
                    f"{self!r}, index '{index}': {len(result.errors)} of {len(objects)} "
                    f"records were refused; record '{record.id}': "
                    f"{self._scrub(str(error.message))}"
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
        from weaviate.classes.query import Filter

        extra: list[Any] = []
        if ids is not None:
            if not ids:
                await self._config(index)
                return
            extra.append(Filter.by_id().contains_any([object_uuid(namespace, i) for i in ids]))
        query = _where(where, namespace, *extra)
        await self._config(index)
        client = await self._api()
        async with self._errors(index):
            await client.collections.use(collection_name(index)).data.delete_many(where=query)

    def _split(
        self, properties: Mapping[str, Any]
    ) -> tuple[str, str | None, dict[str, MetadataValue]]:
        props = {k: v for k, v in properties.items() if v is not None}
        record_id = str(props.pop(_ID))
        text = props.pop(_TEXT, None)
        props.pop(_NS, None)
        return record_id, text, props

    async def search(
        self,
        index: str,
        vector: Sequence[float],
        top_k: int = 5,
        where: Mapping[str, Any] | None = None,
        namespace: str = "",
        include_vectors: bool = False,
    ) -> list[SearchHit]:
        query = _where(where, namespace)
        info = self._describe(index, await self._config(index))
        check_query(vector, info.dimension, index)
        from weaviate.classes.query import MetadataQuery

        client = await self._api()
        async with self._errors(index):
            response = await client.collections.use(collection_name(index)).query.near_vector(
                [float(x) for x in vector],
                limit=top_k,
                filters=query,
                return_metadata=MetadataQuery(distance=True),
                include_vector=include_vectors,
            )
        hits: list[SearchHit] = []
        for obj in response.objects:
            record_id, text, metadata = self._split(obj.properties)
            distance = float(obj.metadata.distance)
            if info.metric == "cosine":
                score = 1.0 - distance
            elif info.metric == "dot":
                score = -distance
            else:
                score = -math.sqrt(max(distance, 0.0))
            vec = obj.vector.get("default") if include_vectors and obj.vector else None
            hits.append(
                SearchHit(
                    id=record_id,
                    score=score,
                    text=text,
                    metadata=metadata,
                    vector=tuple(float(x) for x in vec) if vec is not None else None,
                )
            )
        return hits

    async def scan(
        self,
        index: str,
        where: Mapping[str, Any] | None = None,
        namespace: str = "",
    ) -> list[StoredRecord]:
        _where(where, namespace)  # a bad filter fails before the network
        await self._config(index)
        from weaviate.classes.query import Filter, Sort

        client = await self._api()
        collection = client.collections.use(collection_name(index))
        records: list[StoredRecord] = []
        last: str | None = None
        while True:
            after = [] if last is None else [Filter.by_property(_ID).greater_than(last)]
            async with self._errors(index):
                response = await collection.query.fetch_objects(
                    limit=PAGE_SIZE,
                    filters=_where(where, namespace, *after),
                    sort=Sort.by_property(_ID),
                )
            previous = last
            for obj in response.objects:
                record_id, text, metadata = self._split(obj.properties)
                records.append(StoredRecord(id=record_id, text=text, metadata=metadata))
                last = record_id
            if len(response.objects) < PAGE_SIZE:
                return records
            if previous is not None and last is not None and last <= previous:
                raise VectorStoreError(
                    f"{self!r}, index '{index}': scan made no progress after record id "
                    f"{last!r} (ids with leading or trailing whitespace cannot be paged)"
                )

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()


def from_config(name: str, config: Any, resolve: Callable[[str], Path]) -> WeaviateStore:
    """The store of a `WeaviateConfig` (registry hook)."""
    del resolve
    return WeaviateStore(
        config.url,
        grpc_host=config.grpc_host,
        grpc_port=config.grpc_port,
        api_key=config.api_key,
        timeout_seconds=config.timeout_seconds,
        name=name,
    )
