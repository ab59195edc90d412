"""A loopback stand-in for Qdrant's REST API, for `qdrant-client` in server (URL) mode.

There is no Qdrant server binary to install here (no PyPI or Debian package), so the URL mode
of `QdrantStore` runs against this: an in-memory HTTP server that speaks the wire format
`qdrant-client` 1.20.0 sends and decodes (`qdrant_client/http/api/*.py` for paths and query
parameters, `http/models/models.py` for bodies), with Qdrant's response envelope
`{"result": ..., "status": "ok", "time": s}` and its error body
`{"status": {"error": "Not found: Collection `x` doesn't exist!"}, "time": s}`.

    with QdrantStandIn(api_key="k") as qdrant:
        store = QdrantStore(url=qdrant.url, api_key=SecretStr("k"))

Served (single unnamed dense vector per collection, which is what `QdrantStore` creates):

- `GET /` (version info, no envelope), `GET /healthz`
- `GET /collections`, `GET|PUT|DELETE /collections/{name}`, `GET /collections/{name}/exists`
- `PUT /collections/{name}/points` (points list or batch), `POST .../points/delete`
  (ids or filter selector), `POST .../points/query`, `POST .../points/count`,
  `POST .../points/scroll`

Qdrant's behaviour kept: cosine vectors are normalised on insert (and returned so), vectors
are float32, `Euclid` scores are the (not squared) distance, ascending, like `Manhattan`;
`Cosine` and `Dot` descend. Scroll walks points in id order (integers before UUIDs, UUIDs
normalised to the hyphenated form), `offset` is inclusive and `next_page_offset` is the id of
the first point of the next page. Filters follow the server's semantics (as the client's
local mode reproduces them): exact match keeps bool, integer and string apart and never
matches a float, arrays match if any element does, a missing or null field matches no field
condition (so `except` needs a present value), `range` is numeric only, an empty `should` is
no constraint.

Errors as Qdrant sends them: unknown collection 404, existing collection 409, a wrong vector
dimension 400 ("Wrong input: Vector dimension error: expected dim: 3, got 2"), malformed
bodies 400 ("Format error in JSON body: ..."), out-of-range values 422 ("Validation error in
JSON body: ..."). With an `api_key`, a request without the `api-key` header (or
`Authorization: Bearer`) or with another key gets 401 with Qdrant's plain-text body; `/`,
`/healthz`, `/readyz` and `/livez` stay open, as on the server.

Every request is recorded in `requests`. `fail(status, ...)` scripts error replies;
`before(method, path, action)` runs `action(standin)` just before the next matching request
is handled (e.g. another writer recreating a collection between two calls of the store).
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
import uuid
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["QdrantStandIn", "RecordedRequest", "QDRANT_VERSION"]

QDRANT_VERSION = "1.20.0"
DISTANCES = ("Cosine", "Euclid", "Dot", "Manhattan")
_ASCENDING = ("Euclid", "Manhattan")
_COLLECTION_RE = re.compile(r"/collections/([^/]+)")
_OPEN_PATHS = ("/", "/healthz")
_OPEN_PREFIXES = ("/readyz", "/livez")
_EPSILON = 1.1920929e-07  # f32::EPSILON, below which Qdrant leaves a cosine vector as is

_CREATE_FIELDS = {
    "vectors",
    "shard_number",
    "sharding_method",
    "replication_factor",
    "write_consistency_factor",
    "on_disk_payload",
    "payload",
    "id_tracker",
    "hnsw_config",
    "wal_config",
    "optimizers_config",
    "quantization_config",
    "sparse_vectors",
    "strict_mode_config",
    "metadata",
}
_VECTOR_PARAMS_FIELDS = {
    "size",
    "distance",
    "hnsw_config",
    "quantization_config",
    "on_disk",
    "memory",
    "datatype",
    "multivector_config",
}
_QUERY_FIELDS = {
    "shard_key",
    "prefetch",
    "query",
    "using",
    "filter",
    "params",
    "score_threshold",
    "limit",
    "offset",
    "with_vector",
    "with_payload",
    "lookup_from",
}
_SCROLL_FIELDS = {
    "shard_key",
    "offset",
    "limit",
    "filter",
    "with_payload",
    "with_vector",
    "order_by",
}
_FILTER_FIELDS = {"must", "should", "must_not", "min_should"}
_FIELD_CONDITION_FIELDS = {
    "key",
    "match",
    "range",
    "geo_bounding_box",
    "geo_radius",
    "geo_polygon",
    "values_count",
    "is_empty",
    "is_null",
}

PointId = int | str


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    #: query string parameters, e.g. {"wait": ["true"]}
    query: dict[str, list[str]]
    #: header names lower-cased
    headers: dict[str, str]
    json: Any


class ApiFailure(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _not_found(name: str) -> ApiFailure:
    return ApiFailure(404, f"Not found: Collection `{name}` doesn't exist!")


def _format_error(detail: str) -> ApiFailure:
    return ApiFailure(400, f"Format error in JSON body: {detail}")


def _validation_error(detail: str) -> ApiFailure:
    return ApiFailure(422, f"Validation error in JSON body: [{detail}]")


@dataclass
class _Point:
    id: PointId
    vector: list[float]
    payload: dict[str, Any]
    version: int


@dataclass
class Collection:
    name: str
    size: int
    distance: str
    metadata: dict[str, Any] | None
    points: dict[PointId, _Point] = field(default_factory=dict)

    def info(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "params": {
                "vectors": {"size": self.size, "distance": self.distance},
                "shard_number": 1,
                "replication_factor": 1,
                "write_consistency_factor": 1,
                "on_disk_payload": True,
            },
            "hnsw_config": {
                "m": 16,
                "ef_construct": 100,
                "full_scan_threshold": 10000,
                "max_indexing_threads": 0,
                "on_disk": False,
            },
            "optimizer_config": {
                "deleted_threshold": 0.2,
                "vacuum_min_vector_number": 1000,
                "default_segment_number": 0,
                "max_segment_size": None,
                "memmap_threshold": None,
                "indexing_threshold": 10000,
                "flush_interval_sec": 5,
                "max_optimization_threads": None,
            },
            "wal_config": {"wal_capacity_mb": 32, "wal_segments_ahead": 0, "wal_retain_closed": 1},
            "quantization_config": None,
            "strict_mode_config": {"enabled": False},
        }
        if self.metadata is not None:
            config["metadata"] = dict(self.metadata)
        return {
            "status": "green",
            "optimizer_status": "ok",
            "indexed_vectors_count": 0,
            "points_count": len(self.points),
            "segments_count": 2,
            "config": config,
            "payload_schema": {},
        }


@dataclass
class _Failure:
    status: int
    times: int
    path: str | None
    message: str
    retry_after: int | None


@dataclass
class _Before:
    method: str
    path: str
    action: Callable[[QdrantStandIn], None]


class QdrantStandIn:
    """The fake server; a context manager that starts and stops it."""

    def __init__(self, api_key: str | None = None) -> None:
        self.api_key = api_key
        self.requests: list[RecordedRequest] = []
        self.collections: dict[str, Collection] = {}
        self._operation = 0
        self._failures: list[_Failure] = []
        self._before: list[_Before] = []
        self._lock = threading.RLock()
        standin = self

        class Handler(_Handler):
            pass

        Handler.standin = standin
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_port}"

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> QdrantStandIn:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving: the port is closed, connections to it are refused."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # -- test helpers ----------------------------------------------------------------------

    def fail(
        self,
        status: int,
        *,
        times: int = 1,
        path: str | None = None,
        message: str = "scripted failure",
        retry_after: int | None = None,
    ) -> None:
        """Answer the next `times` requests (to `path`, when given) with a Qdrant error body
        (and a `Retry-After` header, when given, as Qdrant sends with 429)."""
        with self._lock:
            self._failures.append(_Failure(status, times, path, message, retry_after))

    def before(self, method: str, path: str, action: Callable[[QdrantStandIn], None]) -> None:
        """Run `action(self)` once, just before handling the next `method path` request."""
        with self._lock:
            self._before.append(_Before(method, path, action))

    def requests_to(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [
                r
                for r in self.requests
                if r.path == path and (method is None or r.method == method)
            ]

    def create(
        self, name: str, size: int, distance: str = "Cosine", metadata: dict[str, Any] | None = None
    ) -> None:
        """Create a collection directly, as another client of the server would."""
        with self._lock:
            self.collections[name] = Collection(name, size, distance, metadata)

    # -- dispatch --------------------------------------------------------------------------

    def handle(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, str, bytes, dict[str, str]]:
        """(status, content type, body, extra headers) for one request."""
        started = time.perf_counter()
        split = urlsplit(raw_path)
        path, query = split.path, parse_qs(split.query, keep_blank_values=True)
        parsed: Any = None
        bad_json: str | None = None
        if body:
            try:
                parsed = json.loads(body)
            except ValueError as exc:
                bad_json = str(exc)
        with self._lock:
            self.requests.append(RecordedRequest(method, path, query, headers, parsed))
            scripted = self._take_failure(path)
            actions = self._take_before(method, path)
        for action in actions:
            action(self)
        if scripted is not None:
            extra = {}
            if scripted.retry_after is not None:
                extra["Retry-After"] = str(scripted.retry_after)
            status, content_type, data, _ = self._error(scripted.status, scripted.message, started)
            return status, content_type, data, extra
        denied = self._check_key(path, headers)
        if denied is not None:
            return 401, "text/plain; charset=utf-8", denied.encode(), {}
        if path == "/" and method == "GET":
            version = {"title": "qdrant - vector search engine", "version": QDRANT_VERSION}
            return 200, "application/json", json.dumps(version).encode(), {}
        if path == "/healthz" and method == "GET":
            return 200, "text/plain; charset=utf-8", b"healthz check passed", {}
        if bad_json is not None:
            return self._error(400, f"Format error in JSON body: {bad_json}", started)
        try:
            with self._lock:
                result = self._route(method, path, query, parsed)
        except ApiFailure as failure:
            return self._error(failure.status, failure.message, started)
        except _NoRoute:
            return 404, "text/plain; charset=utf-8", b"", {}
        envelope = {"result": result, "status": "ok", "time": time.perf_counter() - started}
        return 200, "application/json", json.dumps(envelope).encode(), {}

    def _error(
        self, status: int, message: str, started: float
    ) -> tuple[int, str, bytes, dict[str, str]]:
        out = {"status": {"error": message}, "time": time.perf_counter() - started}
        return status, "application/json", json.dumps(out).encode(), {}

    def _check_key(self, path: str, headers: dict[str, str]) -> str | None:
        if self.api_key is None or path in _OPEN_PATHS or path.startswith(_OPEN_PREFIXES):
            return None
        key = headers.get("api-key")
        if key is None:
            bearer = headers.get("authorization", "")
            key = bearer.removeprefix("Bearer ") if bearer.startswith("Bearer ") else None
        if key is None:
            return "Must provide an API key or an Authorization bearer token"
        if key != self.api_key:
            return "Invalid API key or JWT"
        return None

    def _take_failure(self, path: str) -> _Failure | None:
        for failure in self._failures:
            if failure.path is None or failure.path == path:
                failure.times -= 1
                if failure.times <= 0:
                    self._failures.remove(failure)
                return failure
        return None

    def _take_before(self, method: str, path: str) -> list[Callable[[QdrantStandIn], None]]:
        hits = [b for b in self._before if (b.method, b.path) == (method, path)]
        for hit in hits:
            self._before.remove(hit)
        return [hit.action for hit in hits]

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> Any:
        if path == "/collections" and method == "GET":
            return {"collections": [{"name": n} for n in self.collections]}
        match = _COLLECTION_RE.match(path)
        if match is None:
            raise _NoRoute
        name = unquote(match.group(1))
        rest = path[match.end() :]
        route = (method, rest)
        if route == ("GET", "/exists"):
            return {"exists": name in self.collections}
        if route == ("PUT", ""):
            return self._create(name, _object(body, "request body"))
        if route == ("DELETE", ""):
            return self.collections.pop(name, None) is not None
        collection = self.collections.get(name)
        if route == ("GET", ""):
            if collection is None:
                raise _not_found(name)
            return collection.info()
        handlers: dict[tuple[str, str], Callable[[Collection, dict[str, Any]], Any]] = {
            ("PUT", "/points"): self._upsert,
            ("POST", "/points/delete"): self._delete,
            ("POST", "/points/query"): self._query,
            ("POST", "/points/count"): self._count,
            ("POST", "/points/scroll"): self._scroll,
        }
        handler = handlers.get(route)
        if handler is None:
            raise _NoRoute
        if collection is None:
            raise _not_found(name)
        result = handler(collection, _object(body if body is not None else {}, "request body"))
        if route[0] == "PUT" or rest == "/points/delete":
            wait = query.get("wait", ["false"])[0] == "true"
            return {"operation_id": result, "status": "completed" if wait else "acknowledged"}
        return result

    # -- collections -----------------------------------------------------------------------

    def _create(self, name: str, body: dict[str, Any]) -> bool:
        _no_unknown(body, _CREATE_FIELDS)
        if not name or len(name) > 255 or any(c in name for c in '<>:"/\\|?*\0'):
            raise _validation_error(f"collection_name: invalid collection name {name!r}")
        vectors = body.get("vectors")
        if not isinstance(vectors, dict) or "size" not in vectors:
            raise ApiFailure(
                400,
                "this stand-in serves only one unnamed dense vector: vectors = {size, distance}",
            )
        _no_unknown(vectors, _VECTOR_PARAMS_FIELDS)
        size, distance = vectors.get("size"), vectors.get("distance")
        if not isinstance(size, int) or isinstance(size, bool):
            raise _format_error(f"vectors.size: invalid type: {json.dumps(size)}, expected u64")
        if distance not in DISTANCES:
            expected = ", ".join(f"`{d}`" for d in DISTANCES)
            raise _format_error(f"unknown variant `{distance}`, expected one of {expected}")
        if not 1 <= size <= 65536:
            raise _validation_error(f"vectors.size: value {size} invalid, must be from 1 to 65536")
        metadata = body.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise _format_error("metadata: invalid type, expected a map")
        if name in self.collections:
            raise ApiFailure(409, f"Wrong input: Collection `{name}` already exists!")
        self.collections[name] = Collection(name, size, distance, metadata)
        return True

    # -- points ----------------------------------------------------------------------------

    def _next_operation(self) -> int:
        self._operation += 1
        return self._operation

    def _upsert(self, collection: Collection, body: dict[str, Any]) -> int:
        if "batch" in body:
            _no_unknown(body, {"batch", "shard_key", "update_filter", "update_mode"})
            batch = _object(body["batch"], "batch")
            ids, vectors = batch.get("ids"), batch.get("vectors")
            payloads = batch.get("payloads")
            if not isinstance(ids, list) or not isinstance(vectors, list):
                raise _format_error("batch needs ids and vectors arrays")
            if len(ids) != len(vectors) or (payloads is not None and len(payloads) != len(ids)):
                raise ApiFailure(400, "Wrong input: ids, vectors and payloads differ in length")
            raw = [
                {"id": i, "vector": v, "payload": payloads[n] if payloads else None}
                for n, (i, v) in enumerate(zip(ids, vectors, strict=True))
            ]
        else:
            _no_unknown(body, {"points", "shard_key", "update_filter", "update_mode"})
            points = body.get("points")
            if not isinstance(points, list):
                raise _format_error("missing field `points`")
            raw = [_object(p, "point") for p in points]
        staged: list[tuple[PointId, list[float], dict[str, Any]]] = []
        for point in raw:
            _no_unknown(point, {"id", "vector", "payload"})
            pid = _point_id(point.get("id"))
            vector = _vector(point.get("vector"), collection)
            payload = point.get("payload")
            if payload is None:
                payload = {}
            if not isinstance(payload, dict):
                raise _format_error("payload: invalid type, expected a map")
            staged.append((pid, vector, dict(payload)))
        operation = self._next_operation()
        for pid, vector, payload in staged:
            collection.points[pid] = _Point(pid, vector, payload, operation)
        return operation

    def _delete(self, collection: Collection, body: dict[str, Any]) -> int:
        if "points" in body:
            _no_unknown(body, {"points", "shard_key"})
            ids = body["points"]
            if not isinstance(ids, list):
                raise _format_error("points: invalid type, expected a sequence")
            doomed = [_point_id(i) for i in ids]
        elif "filter" in body:
            _no_unknown(body, {"filter", "shard_key"})
            condition = _object(body["filter"], "filter")
            doomed = [p.id for p in collection.points.values() if _check_filter(condition, p)]
        else:
            raise _format_error("data did not match any variant of untagged enum PointsSelector")
        operation = self._next_operation()
        for pid in doomed:
            collection.points.pop(pid, None)
        return operation

    def _query(self, collection: Collection, body: dict[str, Any]) -> dict[str, Any]:
        _no_unknown(body, _QUERY_FIELDS)
        unsupported = [k for k in ("prefetch", "using", "lookup_from") if body.get(k) is not None]
        if unsupported:
            raise ApiFailure(400, f"this stand-in does not serve {unsupported} in queries")
        limit = _count_field(body, "limit", 10, minimum=1)
        offset = _count_field(body, "offset", 0, minimum=0)
        condition = body.get("filter")
        candidates = _filtered(collection, condition)
        raw_query = body.get("query")
        if raw_query is None:  # no query: points in id order
            ordered = sorted(candidates, key=lambda p: _id_key(p.id))
            page = ordered[offset : offset + limit]
            return {"points": [_scored(p, 0.0, body) for p in page]}
        if isinstance(raw_query, dict):
            _no_unknown(raw_query, {"nearest"})
            raw_query = raw_query["nearest"]
        query = _vector(raw_query, collection, stored=False)
        if collection.distance == "Cosine":
            query = _normalise(query)
        scored = [(_score(collection.distance, query, p.vector), p) for p in candidates]
        ascending = collection.distance in _ASCENDING
        threshold = body.get("score_threshold")
        if threshold is not None:
            scored = [
                (s, p) for s, p in scored if (s <= threshold if ascending else s >= threshold)
            ]
        scored.sort(key=lambda sp: (sp[0] if ascending else -sp[0], _id_key(sp[1].id)))
        page = scored[offset : offset + limit]
        return {"points": [_scored(p, s, body) for s, p in page]}

    def _count(self, collection: Collection, body: dict[str, Any]) -> dict[str, Any]:
        _no_unknown(body, {"shard_key", "filter", "exact"})
        return {"count": len(_filtered(collection, body.get("filter")))}

    def _scroll(self, collection: Collection, body: dict[str, Any]) -> dict[str, Any]:
        _no_unknown(body, _SCROLL_FIELDS)
        if body.get("order_by") is not None:
            raise ApiFailure(400, "this stand-in does not serve order_by")
        limit = _count_field(body, "limit", 10, minimum=1)
        ordered = sorted(_filtered(collection, body.get("filter")), key=lambda p: _id_key(p.id))
        if body.get("offset") is not None:
            start = _id_key(_point_id(body["offset"]))
            ordered = [p for p in ordered if _id_key(p.id) >= start]
        page, rest = ordered[:limit], ordered[limit:]
        options = {"with_payload": body.get("with_payload", True), **body}
        return {
            "points": [_record(p, options) for p in page],
            "next_page_offset": rest[0].id if rest else None,
        }


class _NoRoute(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    standin: QdrantStandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _run(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, content_type, data, extra = self.standin.handle(
            self.command, self.path, headers, body
        )
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for key, value in extra.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _run


# -- values --------------------------------------------------------------------------------


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _format_error(f"{where}: invalid type, expected a map")
    return value


def _no_unknown(obj: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        expected = ", ".join(f"`{k}`" for k in sorted(allowed))
        raise _format_error(f"unknown field `{unknown[0]}`, expected one of {expected}")


def _count_field(body: dict[str, Any], key: str, default: int, minimum: int) -> int:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool):
        raise _format_error(f"{key}: invalid type: {json.dumps(value)}, expected usize")
    if value < minimum:
        raise _validation_error(f"{key}: value {value} invalid, must be {minimum} or larger")
    return value


def _point_id(raw: Any) -> PointId:
    """An unsigned integer, or a UUID in any form Qdrant parses (answered hyphenated)."""
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
        return raw
    if isinstance(raw, str):
        try:
            return str(uuid.UUID(raw))
        except ValueError:
            pass
    raise _format_error(
        f"Unable to parse UUID: {raw}" if isinstance(raw, str) else "invalid point id"
    )


def _id_key(pid: PointId) -> tuple[int, int]:
    """Qdrant's id order: integers first, then UUIDs as 128-bit numbers."""
    if isinstance(pid, int):
        return (0, pid)
    return (1, uuid.UUID(pid).int)


def _f32(values: list[float]) -> list[float]:
    return array("f", values).tolist()


def _normalise(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    if norm < _EPSILON:
        return vector
    return _f32([x / norm for x in vector])


def _vector(raw: Any, collection: Collection, *, stored: bool = True) -> list[float]:
    if isinstance(raw, dict):
        if set(raw) != {""} and raw:
            raise ApiFailure(400, f"Wrong input: Not existing vector name error: {sorted(raw)[0]}")
        raw = raw.get("")
    if not isinstance(raw, list) or not all(
        isinstance(x, int | float) and not isinstance(x, bool) for x in raw
    ):
        raise _format_error("data did not match any variant of untagged enum VectorStruct")
    if len(raw) != collection.size:
        raise ApiFailure(
            400,
            f"Wrong input: Vector dimension error: expected dim: {collection.size}, got {len(raw)}",
        )
    vector = _f32([float(x) for x in raw])
    if stored and collection.distance == "Cosine":
        vector = _normalise(vector)
    return vector


def _score(distance: str, query: list[float], vector: list[float]) -> float:
    if distance == "Euclid":
        value = math.sqrt(sum((a - b) ** 2 for a, b in zip(query, vector, strict=True)))
    elif distance == "Manhattan":
        value = sum(abs(a - b) for a, b in zip(query, vector, strict=True))
    else:  # Cosine (both sides normalised) and Dot
        value = sum(a * b for a, b in zip(query, vector, strict=True))
    return _f32([value])[0]


def _payload_view(point: _Point, with_payload: Any) -> dict[str, Any] | None:
    if with_payload is True:
        return dict(point.payload)
    if with_payload is None or with_payload is False:
        return None
    if isinstance(with_payload, list):
        return {k: v for k, v in point.payload.items() if k in with_payload}
    if isinstance(with_payload, dict) and "include" in with_payload:
        return {k: v for k, v in point.payload.items() if k in with_payload["include"]}
    if isinstance(with_payload, dict) and "exclude" in with_payload:
        return {k: v for k, v in point.payload.items() if k not in with_payload["exclude"]}
    raise _format_error("data did not match any variant of untagged enum WithPayloadInterface")


def _record(point: _Point, options: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"id": point.id}
    payload = _payload_view(point, options.get("with_payload"))
    if payload is not None:
        out["payload"] = payload
    with_vector = options.get("with_vector", False)
    if with_vector is True:
        out["vector"] = list(point.vector)
    elif with_vector not in (False, None):
        raise ApiFailure(400, "this stand-in serves only with_vector = true or false")
    return out


def _scored(point: _Point, score: float, options: dict[str, Any]) -> dict[str, Any]:
    out = _record(point, options)
    out["version"] = point.version
    out["score"] = score
    return out


# -- filters -------------------------------------------------------------------------------


def _filtered(collection: Collection, condition: Any) -> list[_Point]:
    if condition is None:
        return list(collection.points.values())
    condition = _object(condition, "filter")
    return [p for p in collection.points.values() if _check_filter(condition, p)]


def _conditions(value: Any) -> list[dict[str, Any]]:
    items = value if isinstance(value, list) else [value]
    return [_object(c, "condition") for c in items]


def _check_filter(node: dict[str, Any], point: _Point) -> bool:
    _no_unknown(node, _FILTER_FIELDS)
    if node.get("must") is not None and not all(
        _check_condition(c, point) for c in _conditions(node["must"])
    ):
        return False
    if node.get("must_not") is not None and any(
        _check_condition(c, point) for c in _conditions(node["must_not"])
    ):
        return False
    if node.get("should") is not None:
        should = _conditions(node["should"])
        if should and not any(_check_condition(c, point) for c in should):
            return False
    if node.get("min_should") is not None:
        spec = _object(node["min_should"], "min_should")
        count = spec.get("min_count")
        if not isinstance(count, int) or count < 1:
            raise _validation_error("min_should.min_count: must be 1 or larger")
        hits = sum(_check_condition(c, point) for c in _conditions(spec.get("conditions", [])))
        if hits < count:
            return False
    return True


def _check_condition(condition: dict[str, Any], point: _Point) -> bool:
    if "has_id" in condition:
        _no_unknown(condition, {"has_id"})
        ids = condition["has_id"]
        if not isinstance(ids, list):
            raise _format_error("has_id: invalid type, expected a sequence")
        return point.id in {_point_id(i) for i in ids}
    if "key" in condition:
        return _check_field(condition, point.payload)
    if "nested" in condition:
        nested = _object(condition["nested"], "nested")
        key, sub = nested.get("key"), _object(nested.get("filter"), "nested.filter")
        if not isinstance(key, str):
            raise _format_error("nested.key: expected a string")
        elements = [
            e
            for v in _values(point.payload, key.removesuffix("[]"), flatten=False)
            if isinstance(v, list)
            for e in v
            if isinstance(e, dict)
        ]
        return any(_check_filter(sub, _Point(-1, [], e, 0)) for e in elements)
    if "is_empty" in condition or "is_null" in condition:
        kind = "is_empty" if "is_empty" in condition else "is_null"
        key = _object(condition[kind], kind).get("key")
        if not isinstance(key, str):
            raise _format_error(f"{kind}.key: expected a string")
        return _is_empty(point.payload, key) if kind == "is_empty" else _is_null(point.payload, key)
    if set(condition) <= _FILTER_FIELDS:
        return _check_filter(condition, point)
    raise _format_error("data did not match any variant of untagged enum Condition")


def _check_field(condition: dict[str, Any], payload: dict[str, Any]) -> bool:
    _no_unknown(condition, _FIELD_CONDITION_FIELDS)
    key = condition["key"]
    if not isinstance(key, str):
        raise _format_error("key: expected a string")
    present = [v for v in _values(payload, key, flatten=True) if v is not None]
    if condition.get("match") is not None:
        match = _object(condition["match"], "match")
        return bool(present) and any(_check_match(match, v) for v in present)
    if condition.get("range") is not None:
        bounds = _object(condition["range"], "range")
        _no_unknown(bounds, {"gt", "gte", "lt", "lte"})
        for op, bound in bounds.items():
            if bound is not None and not _is_number(bound):
                raise ApiFailure(400, f"this stand-in serves only numeric ranges, got {op}={bound}")
        return any(_in_range(bounds, v) for v in present)
    if condition.get("is_empty") is not None:
        return _is_empty(payload, key) == condition["is_empty"]
    if condition.get("is_null") is not None:
        return _is_null(payload, key) == condition["is_null"]
    raise ApiFailure(400, "this stand-in serves match, range, is_empty and is_null conditions")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same(stored: Any, wanted: Any) -> bool:
    """Qdrant's exact match: bool, integer and string are distinct; floats never match."""
    return type(stored) is type(wanted) and bool(stored == wanted)


def _check_match(match: dict[str, Any], value: Any) -> bool:
    if "value" in match:
        wanted = match["value"]
        if not isinstance(wanted, str | int):
            raise _format_error("match.value: expected a string, integer or boolean")
        return _same(value, wanted)
    if "any" in match or "except" in match:
        kind = "any" if "any" in match else "except"
        options = match[kind]
        all_str = isinstance(options, list) and all(isinstance(o, str) for o in options)
        all_int = isinstance(options, list) and all(
            isinstance(o, int) and not isinstance(o, bool) for o in options
        )
        if not (all_str or all_int):
            raise _format_error(f"match.{kind}: expected an array of strings or of integers")
        hit = any(_same(value, o) for o in options)
        return hit if kind == "any" else not hit
    if "text" in match:
        tokens = re.findall(r"[^\W_]+", str(match["text"]).lower())
        words = set(re.findall(r"[^\W_]+", value.lower())) if isinstance(value, str) else set()
        return bool(tokens) and all(t in words for t in tokens)
    raise _format_error("data did not match any variant of untagged enum Match")


def _in_range(bounds: dict[str, Any], value: Any) -> bool:
    if not _is_number(value):
        return False
    checks: dict[str, Callable[[float, float], bool]] = {
        "gt": lambda v, b: v > b,
        "gte": lambda v, b: v >= b,
        "lt": lambda v, b: v < b,
        "lte": lambda v, b: v <= b,
    }
    return all(bound is None or checks[op](value, bound) for op, bound in bounds.items())


def _values(payload: dict[str, Any], key: str, *, flatten: bool) -> list[Any]:
    """The values a payload key resolves to (`a.b`, `a[].b`); arrays are flattened one level
    when `flatten`. A missing key resolves to nothing."""
    current: list[Any] = [payload]
    for part in key.split("."):
        each = part.endswith("[]")
        name = part.removesuffix("[]")
        found: list[Any] = []
        for item in current:
            if isinstance(item, dict) and name in item:
                value = item[name]
                if each and isinstance(value, list):
                    found.extend(value)
                else:
                    found.append(value)
        current = found
    if not flatten:
        return current
    out: list[Any] = []
    for value in current:
        out.extend(value if isinstance(value, list) else [value])
    return out


def _is_empty(payload: dict[str, Any], key: str) -> bool:
    values = _values(payload, key, flatten=False)
    return all(v is None or v == [] for v in values)


def _is_null(payload: dict[str, Any], key: str) -> bool:
    values = _values(payload, key, flatten=False)
    return any(v is None or (isinstance(v, list) and None in v) for v in values)
