"""A loopback stand-in for Pinecone's REST API (2026-07), for the official `pinecone` SDK.

The wire format follows what `pinecone` 10.2.0 sends and decodes (its request builders in
`async_client/indexes.py` / `async_index.py` and the msgspec response models in
`pinecone/models/...`): camelCase data-plane bodies, snake_case control-plane bodies, and
Pinecone's error body `{"error": {"code": ..., "message": ...}, "status": n}`.

    with PineconeStandIn(api_key="k") as pc:
        store = PineconeStore(api_key=SecretStr("k"), host=pc.control_url)

Control plane on `control_url`: `GET/POST /indexes`, `GET/DELETE /indexes/{name}`. Each index
gets its own data-plane server (its own port, as each real index has its own host), serving
`POST /vectors/upsert`, `POST /query`, `GET /vectors/fetch`, `GET /vectors/list`,
`POST /vectors/delete`, `POST /describe_index_stats`. Everything lives in memory; scores use
Pinecone's conventions: cosine similarity, dot product, and for `euclidean` the *squared*
distance, ascending.

Requests are checked the way the service checks them: `Api-Key` (401), an
`X-Pinecone-Api-Version` header (400 without), unknown JSON fields (400), dimension mismatches
and malformed filters (400), unknown indexes (404), an existing name (409), more than 1000
vectors in one upsert (400). Every request is recorded in `requests`; `fail(status, ...)`
scripts error replies (429 with `Retry-After`, 500, ...) for the next matching requests.
"""

from __future__ import annotations

import base64
import json
import math
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["PineconeStandIn", "RecordedRequest"]

API_VERSION = "2026-07"
#: Pinecone's cap on vectors per upsert request
MAX_UPSERT_BATCH = 1000
LIST_LIMIT_MAX = 100
QUERY_TOP_K_MAX = 10_000

_ERROR_CODES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,43}[a-z0-9])?$")
_METRICS = ("cosine", "dotproduct", "euclidean")
_CREATE_FIELDS = {
    "schema",
    "name",
    "deployment",
    "read_capacity",
    "deletion_protection",
    "tags",
    "source_collection",
    "source_backup_id",
    "cmek_id",
}
_VECTOR_FIELDS = {"id", "values", "sparseValues", "metadata"}
_QUERY_FIELDS = {
    "topK",
    "vector",
    "id",
    "namespace",
    "filter",
    "includeValues",
    "includeMetadata",
    "sparseVector",
    "scanFactor",
    "maxCandidates",
}
_FIELD_OPS = {"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists"}


@dataclass(frozen=True)
class RecordedRequest:
    #: "control", or the index name for its data plane
    plane: str
    method: str
    path: str
    query: dict[str, list[str]]
    #: header names lower-cased
    headers: dict[str, str]
    json: Any


@dataclass
class _Failure:
    status: int
    times: int
    path: str | None
    retry_after: float | None
    message: str


class ApiFailure(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class _Record:
    values: list[float]
    metadata: dict[str, Any] | None


@dataclass
class _Index:
    name: str
    dimension: int
    metric: str
    cloud: str
    region: str
    tags: dict[str, str] | None
    server: ThreadingHTTPServer
    thread: threading.Thread
    ready: bool = False
    namespaces: dict[str, dict[str, _Record]] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def model(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "host": self.host,
            "status": {
                "ready": self.ready,
                "state": "Ready" if self.ready else "Initializing",
            },
            "schema": {
                "fields": {
                    "_values": {
                        "type": "dense_vector",
                        "dimension": self.dimension,
                        "metric": self.metric,
                    }
                }
            },
            "deployment": {
                "deployment_type": "managed",
                "cloud": self.cloud,
                "region": self.region,
                "environment": f"{self.region}-{self.cloud}",
            },
            "deletion_protection": "disabled",
            "read_capacity": {"mode": "OnDemand", "status": {"state": "Ready"}},
        }
        if self.tags:
            out["tags"] = dict(self.tags)
        return out


class PineconeStandIn:
    """The fake service; a context manager that starts and stops its servers."""

    def __init__(self, api_key: str = "test-pinecone-key") -> None:
        self.api_key = api_key
        self.requests: list[RecordedRequest] = []
        self.indexes: dict[str, _Index] = {}
        self._failures: list[_Failure] = []
        self._lock = threading.RLock()
        self._control = self._serve("control")
        self.control_url = f"http://127.0.0.1:{self._control[0].server_port}"

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> PineconeStandIn:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            indexes = list(self.indexes.values())
            self.indexes.clear()
        for index in indexes:
            _stop(index.server, index.thread)
        _stop(*self._control)

    def _serve(self, plane: str) -> tuple[ThreadingHTTPServer, threading.Thread]:
        standin = self

        class Handler(_Handler):
            pass

        Handler.standin = standin
        Handler.plane = plane
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        thread.start()
        return server, thread

    # -- test helpers ----------------------------------------------------------------------

    def fail(
        self,
        status: int,
        *,
        times: int = 1,
        path: str | None = None,
        retry_after: float | None = None,
        message: str = "scripted failure",
    ) -> None:
        """Answer the next `times` requests (to `path`, when given) with `status`."""
        with self._lock:
            self._failures.append(_Failure(status, times, path, retry_after, message))

    def requests_to(self, path: str, plane: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [
                r for r in self.requests if r.path == path and (plane is None or r.plane == plane)
            ]

    def count(self, index: str, namespace: str = "") -> int:
        with self._lock:
            return len(self.indexes[index].namespaces.get(namespace, {}))

    # -- dispatch --------------------------------------------------------------------------

    def handle(
        self,
        plane: str,
        method: str,
        raw_path: str,
        headers: dict[str, str],
        body: bytes,
    ) -> tuple[int, Any, dict[str, str]]:
        split = urlsplit(raw_path)
        path, query = split.path, parse_qs(split.query, keep_blank_values=True)
        parsed: Any = None
        bad_json = False
        if body:
            try:
                parsed = json.loads(body)
            except ValueError:
                bad_json = True
        with self._lock:
            self.requests.append(RecordedRequest(plane, method, path, query, headers, parsed))
            scripted = self._take_failure(path)
        if scripted is not None:
            extra = {}
            if scripted.retry_after is not None:
                extra["Retry-After"] = f"{scripted.retry_after:g}"
            return scripted.status, _error(scripted.status, scripted.message), extra
        if headers.get("api-key") != self.api_key:
            return 401, _error(401, "Invalid API Key"), {}
        if not headers.get("x-pinecone-api-version"):
            return 400, _error(400, "Missing X-Pinecone-Api-Version header"), {}
        if bad_json:
            return 400, _error(400, "Failed to deserialize the JSON body"), {}
        try:
            with self._lock:
                if plane == "control":
                    status, out = self._control_plane(method, path, parsed)
                else:
                    index = self.indexes.get(plane)
                    if index is None:
                        raise ApiFailure(404, f"Resource {plane} not found")
                    status, out = self._data_plane(index, method, path, query, parsed)
        except ApiFailure as failure:
            return failure.status, _error(failure.status, failure.message), {}
        return status, out, {}

    def _take_failure(self, path: str) -> _Failure | None:
        for failure in self._failures:
            if failure.path is None or failure.path == path:
                failure.times -= 1
                if failure.times <= 0:
                    self._failures.remove(failure)
                return failure
        return None

    # -- control plane ---------------------------------------------------------------------

    def _control_plane(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if path == "/indexes" and method == "GET":
            return 200, {"indexes": [i.model() for i in self.indexes.values()]}
        if path == "/indexes" and method == "POST":
            return self._create(body)
        match = re.fullmatch(r"/indexes/([^/]+)", path)
        if match is None:
            raise ApiFailure(404, f"no route {method} {path}")
        name = unquote(match.group(1))
        index = self.indexes.get(name)
        if index is None:
            raise ApiFailure(404, f"Resource {name} not found")
        if method == "GET":
            index.ready = True  # a create answers "Initializing"; the next describe, "Ready"
            return 200, index.model()
        if method == "DELETE":
            del self.indexes[name]
            threading.Thread(target=_stop, args=(index.server, index.thread), daemon=True).start()
            return 202, None
        raise ApiFailure(405, f"method {method} not allowed on {path}")

    def _create(self, body: Any) -> tuple[int, Any]:
        obj = _object(body, "request body")
        _no_unknown(obj, _CREATE_FIELDS, "create index request")
        name = obj.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ApiFailure(
                400,
                f"Invalid index name {name!r}: 1-45 lowercase alphanumerics or hyphens",
            )
        fields = _object(_object(obj.get("schema"), "schema").get("fields"), "schema.fields")
        if set(fields) != {"_values"}:
            raise ApiFailure(
                400, "this stand-in serves only dense indexes: schema.fields = {_values: ...}"
            )
        dense = _object(fields["_values"], "schema.fields._values")
        _no_unknown(dense, {"type", "dimension", "metric", "description"}, "dense_vector field")
        dimension, metric = dense.get("dimension"), dense.get("metric", "cosine")
        if dense.get("type") != "dense_vector" or not isinstance(dimension, int):
            raise ApiFailure(400, "schema.fields._values must be a dense_vector with a dimension")
        if not 1 <= dimension <= 20_000:
            raise ApiFailure(400, f"dimension must be 1-20000, got {dimension}")
        if metric not in _METRICS:
            raise ApiFailure(400, f"metric must be one of {list(_METRICS)}, got {metric!r}")
        deployment = _object(
            obj.get("deployment", {"deployment_type": "managed", "cloud": "aws"}), "deployment"
        )
        _no_unknown(deployment, {"deployment_type", "cloud", "region"}, "deployment")
        if deployment.get("deployment_type") != "managed":
            raise ApiFailure(400, "this stand-in serves only managed (serverless) deployments")
        tags = obj.get("tags")
        if tags is not None:
            _check_tags(tags)
        if name in self.indexes:
            raise ApiFailure(409, f"Resource {name} already exists")
        server, thread = self._serve(name)
        index = _Index(
            name=name,
            dimension=dimension,
            metric=metric,
            cloud=str(deployment.get("cloud", "aws")),
            region=str(deployment.get("region", "us-east-1")),
            tags=dict(tags) if tags else None,
            server=server,
            thread=thread,
        )
        self.indexes[name] = index
        return 201, index.model()

    # -- data plane ------------------------------------------------------------------------

    def _data_plane(
        self,
        index: _Index,
        method: str,
        path: str,
        query: dict[str, list[str]],
        body: Any,
    ) -> tuple[int, Any]:
        route = (method, path)
        if route == ("POST", "/vectors/upsert"):
            return 200, self._upsert(index, _object(body, "request body"))
        if route == ("POST", "/query"):
            return 200, self._query(index, _object(body, "request body"))
        if route == ("GET", "/vectors/fetch"):
            return 200, self._fetch(index, query)
        if route == ("GET", "/vectors/list"):
            return 200, self._list(index, query)
        if route == ("POST", "/vectors/delete"):
            return 200, self._delete(index, _object(body, "request body"))
        if route == ("POST", "/describe_index_stats"):
            return 200, self._stats(index, _object(body if body is not None else {}, "body"))
        raise ApiFailure(404, f"no route {method} {path}")

    def _upsert(self, index: _Index, body: dict[str, Any]) -> dict[str, Any]:
        _no_unknown(body, {"vectors", "namespace"}, "upsert request")
        vectors = body.get("vectors")
        if not isinstance(vectors, list) or not vectors:
            raise ApiFailure(400, "vectors must be a non-empty array")
        if len(vectors) > MAX_UPSERT_BATCH:
            raise ApiFailure(
                400, f"upsert takes at most {MAX_UPSERT_BATCH} vectors, got {len(vectors)}"
            )
        namespace = _namespace(body.get("namespace", ""))
        staged: dict[str, _Record] = {}
        for i, raw in enumerate(vectors):
            vector = _object(raw, f"vectors[{i}]")
            _no_unknown(vector, _VECTOR_FIELDS, f"vectors[{i}]")
            vid = vector.get("id")
            if not isinstance(vid, str) or not vid:
                raise ApiFailure(400, f"vectors[{i}].id must be a non-empty string")
            values = _floats(vector.get("values"), f"vectors[{i}].values")
            if len(values) != index.dimension:
                raise ApiFailure(
                    400,
                    f"Vector dimension {len(values)} does not match the dimension of the "
                    f"index {index.dimension}",
                )
            metadata = vector.get("metadata")
            if metadata is not None:
                metadata = _check_metadata(metadata, f"vectors[{i}].metadata")
            staged[vid] = _Record(values, metadata)
        index.namespaces.setdefault(namespace, {}).update(staged)
        return {"upsertedCount": len(staged)}

    def _query(self, index: _Index, body: dict[str, Any]) -> dict[str, Any]:
        _no_unknown(body, _QUERY_FIELDS, "query request")
        top_k = body.get("topK")
        if not isinstance(top_k, int) or isinstance(top_k, bool):
            raise ApiFailure(400, "topK is required and must be an integer")
        if not 1 <= top_k <= QUERY_TOP_K_MAX:
            raise ApiFailure(400, f"topK must be between 1 and {QUERY_TOP_K_MAX}")
        namespace = _namespace(body.get("namespace", ""))
        records = index.namespaces.get(namespace, {})
        if "vector" in body:
            vector = _floats(body["vector"], "vector")
        elif isinstance(body.get("id"), str) and body["id"] in records:
            vector = records[body["id"]].values
        else:
            raise ApiFailure(400, "query needs a vector or the id of a stored vector")
        if len(vector) != index.dimension:
            raise ApiFailure(
                400,
                f"Vector dimension {len(vector)} does not match the dimension of the index "
                f"{index.dimension}",
            )
        condition = body.get("filter")
        if condition is not None:
            _check_filter(condition, "filter")
        scored = [
            (_score(index.metric, vector, rec.values), rid, rec)
            for rid, rec in records.items()
            if condition is None or _matches(condition, rec.metadata or {})
        ]
        scored.sort(key=lambda t: t[0], reverse=index.metric != "euclidean")
        matches = []
        for score, rid, rec in scored[:top_k]:
            match: dict[str, Any] = {"id": rid, "score": score}
            if body.get("includeValues"):
                match["values"] = list(rec.values)
            if body.get("includeMetadata") and rec.metadata:
                match["metadata"] = dict(rec.metadata)
            matches.append(match)
        return {"matches": matches, "namespace": namespace, "usage": {"readUnits": 5}}

    def _fetch(self, index: _Index, query: dict[str, list[str]]) -> dict[str, Any]:
        _no_unknown(query, {"ids", "namespace"}, "fetch query")
        ids = query.get("ids", [])
        if not ids:
            raise ApiFailure(400, "ids must contain at least one id")
        if len(ids) > 1000:
            raise ApiFailure(400, "fetch takes at most 1000 ids")
        namespace = _namespace(query.get("namespace", [""])[0])
        records = index.namespaces.get(namespace, {})
        out: dict[str, Any] = {}
        for rid in ids:
            rec = records.get(rid)
            if rec is None:
                continue
            item: dict[str, Any] = {"id": rid, "values": list(rec.values)}
            if rec.metadata:
                item["metadata"] = dict(rec.metadata)
            out[rid] = item
        return {"vectors": out, "namespace": namespace, "usage": {"readUnits": 1}}

    def _list(self, index: _Index, query: dict[str, list[str]]) -> dict[str, Any]:
        _no_unknown(query, {"namespace", "prefix", "limit", "paginationToken"}, "list query")
        namespace = _namespace(query.get("namespace", [""])[0])
        prefix = query.get("prefix", [""])[0]
        try:
            limit = int(query.get("limit", ["100"])[0])
        except ValueError as exc:
            raise ApiFailure(400, "limit must be an integer") from exc
        if not 1 <= limit <= LIST_LIMIT_MAX:
            raise ApiFailure(400, f"limit must be between 1 and {LIST_LIMIT_MAX}")
        ids = sorted(i for i in index.namespaces.get(namespace, {}) if i.startswith(prefix))
        token = query.get("paginationToken", [None])[0]
        if token is not None:
            try:
                after = base64.urlsafe_b64decode(token.encode()).decode()
            except ValueError as exc:
                raise ApiFailure(400, "invalid paginationToken") from exc
            ids = [i for i in ids if i > after]
        page, rest = ids[:limit], ids[limit:]
        out: dict[str, Any] = {
            "vectors": [{"id": i} for i in page],
            "namespace": namespace,
            "usage": {"readUnits": 1},
        }
        if rest:
            out["pagination"] = {"next": base64.urlsafe_b64encode(page[-1].encode()).decode()}
        return out

    def _delete(self, index: _Index, body: dict[str, Any]) -> dict[str, Any]:
        _no_unknown(body, {"ids", "deleteAll", "namespace", "filter"}, "delete request")
        namespace = _namespace(body.get("namespace", ""))
        selectors = [k for k in ("ids", "deleteAll", "filter") if body.get(k) is not None]
        if len(selectors) != 1:
            raise ApiFailure(400, "delete takes exactly one of ids, deleteAll or filter")
        records = index.namespaces.get(namespace, {})
        if "ids" in selectors:
            ids = body["ids"]
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise ApiFailure(400, "ids must be an array of strings")
            if len(ids) > 1000:
                raise ApiFailure(400, "delete takes at most 1000 ids")
            for rid in ids:
                records.pop(rid, None)
        elif "filter" in selectors:
            condition = body["filter"]
            _check_filter(condition, "filter")
            if not condition:
                raise ApiFailure(400, "filter must not be empty")
            for rid in [r for r, rec in records.items() if _matches(condition, rec.metadata or {})]:
                del records[rid]
        else:
            records.clear()
        if not records:
            index.namespaces.pop(namespace, None)
        return {}

    def _stats(self, index: _Index, body: dict[str, Any]) -> dict[str, Any]:
        _no_unknown(body, {"filter"}, "describe_index_stats request")
        condition = body.get("filter")
        if condition is not None:
            _check_filter(condition, "filter")
        namespaces: dict[str, Any] = {}
        for ns, records in index.namespaces.items():
            n = sum(
                1
                for rec in records.values()
                if condition is None or _matches(condition, rec.metadata or {})
            )
            if n:
                namespaces[ns or "__default__"] = {"vectorCount": n}
        return {
            "namespaces": namespaces,
            "dimension": index.dimension,
            "indexFullness": 0.0,
            "totalVectorCount": sum(v["vectorCount"] for v in namespaces.values()),
            "metric": index.metric,
            "vectorType": "dense",
        }


class _Handler(BaseHTTPRequestHandler):
    standin: PineconeStandIn
    plane: str
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _run(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, out, extra = self.standin.handle(self.plane, self.command, self.path, headers, body)
        data = b"" if out is None else json.dumps(out).encode()
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json")
        for key, value in extra.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = do_PATCH = _run


def _stop(server: ThreadingHTTPServer, thread: threading.Thread) -> None:
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _error(status: int, message: str) -> dict[str, Any]:
    return {
        "error": {"code": _ERROR_CODES.get(status, "UNKNOWN"), "message": message},
        "status": status,
    }


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ApiFailure(400, f"{where} must be a JSON object")
    return value


def _no_unknown(obj: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise ApiFailure(400, f"{where}: unknown field(s) {unknown}")


def _namespace(value: Any) -> str:
    if not isinstance(value, str):
        raise ApiFailure(400, "namespace must be a string")
    return "" if value == "__default__" else value


def _floats(value: Any, where: str) -> list[float]:
    if not isinstance(value, list) or not all(
        isinstance(x, int | float) and not isinstance(x, bool) for x in value
    ):
        raise ApiFailure(400, f"{where} must be an array of numbers")
    return [float(x) for x in value]


def _check_tags(tags: Any) -> None:
    if not isinstance(tags, dict) or len(tags) > 20:
        raise ApiFailure(400, "tags must be an object of at most 20 entries")
    for key, value in tags.items():
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,80}", key):
            raise ApiFailure(400, f"invalid tag key {key!r}")
        if not isinstance(value, str) or len(value) > 120 or not value.isascii():
            raise ApiFailure(400, f"invalid tag value for {key!r}")
        if not value.isprintable():
            raise ApiFailure(400, f"invalid tag value for {key!r}")


def _check_metadata(metadata: Any, where: str) -> dict[str, Any]:
    meta = _object(metadata, where)
    for key, value in meta.items():
        ok = isinstance(value, str | int | float | bool) or (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        )
        if not ok:
            raise ApiFailure(
                400,
                f"{where}.{key}: metadata values must be strings, numbers, booleans or "
                "lists of strings",
            )
    # Pinecone keeps every number as a 64-bit float
    return {
        k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v
        for k, v in meta.items()
    }


def _score(metric: str, query: list[float], values: list[float]) -> float:
    dot = sum(a * b for a, b in zip(query, values, strict=True))
    if metric == "dotproduct":
        return dot
    if metric == "euclidean":
        return sum((a - b) ** 2 for a, b in zip(query, values, strict=True))
    norm = math.sqrt(sum(a * a for a in query)) * math.sqrt(sum(b * b for b in values))
    return dot / norm if norm else 0.0


# -- Pinecone's metadata filter -------------------------------------------------------------


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _check_filter(node: Any, where: str) -> None:
    if not isinstance(node, dict):
        raise ApiFailure(400, f"Invalid filter at {where}: expected an object")
    for key, value in node.items():
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise ApiFailure(
                    400, f"Invalid filter at {where}.{key}: expected a non-empty array"
                )
            for i, child in enumerate(value):
                _check_filter(child, f"{where}.{key}[{i}]")
        elif key.startswith("$"):
            raise ApiFailure(400, f"Invalid filter at {where}: unknown operator {key}")
        elif isinstance(value, dict):
            for op, operand in value.items():
                if op not in _FIELD_OPS:
                    raise ApiFailure(400, f"Invalid filter at {where}.{key}: unknown operator {op}")
                if op in ("$in", "$nin"):
                    if not isinstance(operand, list) or not all(
                        isinstance(v, str) or _is_number(v) for v in operand
                    ):
                        raise ApiFailure(
                            400,
                            f"Invalid filter at {where}.{key}.{op}: expected an array of "
                            "strings or numbers",
                        )
                elif op in ("$gt", "$gte", "$lt", "$lte"):
                    if not _is_number(operand):
                        raise ApiFailure(
                            400, f"Invalid filter at {where}.{key}.{op}: expected a number"
                        )
                elif op == "$exists":
                    if not isinstance(operand, bool):
                        raise ApiFailure(
                            400, f"Invalid filter at {where}.{key}.$exists: expected a boolean"
                        )
                elif not (isinstance(operand, str | bool) or _is_number(operand)):
                    raise ApiFailure(
                        400,
                        f"Invalid filter at {where}.{key}.{op}: expected a string, number "
                        "or boolean",
                    )
        elif not (isinstance(value, str | bool) or _is_number(value)):
            raise ApiFailure(400, f"Invalid filter at {where}.{key}: unsupported value")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) and _is_number(b):
        return float(a) == float(b)
    return type(a) is type(b) and bool(a == b)


def _eq(stored: Any, target: Any) -> bool:
    if isinstance(stored, list):
        return any(_same(s, target) for s in stored)
    return _same(stored, target)


def _matches(node: Mapping[str, Any], metadata: Mapping[str, Any]) -> bool:
    for key, value in node.items():
        if key == "$and":
            ok = all(_matches(child, metadata) for child in value)
        elif key == "$or":
            ok = any(_matches(child, metadata) for child in value)
        else:
            ops = value if isinstance(value, dict) else {"$eq": value}
            ok = all(_field(metadata, key, op, operand) for op, operand in ops.items())
        if not ok:
            return False
    return True


def _field(metadata: Mapping[str, Any], key: str, op: str, operand: Any) -> bool:
    present = key in metadata
    stored = metadata.get(key)
    if op == "$exists":
        return present == operand
    if op == "$eq":
        return present and _eq(stored, operand)
    if op == "$ne":
        return not (present and _eq(stored, operand))
    if op == "$in":
        return present and any(_eq(stored, v) for v in operand)
    if op == "$nin":
        return not (present and any(_eq(stored, v) for v in operand))
    if not present or not _is_number(stored):
        return False
    x, y = float(stored), float(operand)
    return {"$gt": x > y, "$gte": x >= y, "$lt": x < y, "$lte": x <= y}[op]
