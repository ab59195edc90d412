"""A loopback stand-in for Weaviate v1 (REST + gRPC), for the official `weaviate-client` v4.

The gRPC side is a `weaviate_pb2_grpc.WeaviateServicer` built from the protocol definitions
shipped inside the client (`weaviate.proto.v1`), so request and reply shapes are the client's
own. The REST side (stdlib `ThreadingHTTPServer`) serves what the client calls with
`skip_init_checks=True`: `/v1/meta`, `/v1/.well-known/ready|live`, a 404 for
`/v1/.well-known/openid-configuration` (no OIDC; with a 200 the client attempts OIDC), and the
schema endpoints (`GET/POST /v1/schema`, `GET/DELETE /v1/schema/{class}`,
`POST /v1/schema/{class}/properties`).

    with WeaviateStandIn(api_key="k") as server:
        store = WeaviateStore(url=server.url, grpc_port=server.grpc_port, ...)

It behaves like a Weaviate server with auto-schema disabled, in memory:

- gRPC `Search` (near_vector with real distance math: cosine `1 - cos`, dot `-a.b`,
  l2-squared `sum((a-b)^2)`; or a plain fetch ordered by uuid, with `sort_by`), `BatchObjects`
  (replace by uuid), `BatchDelete`, `Aggregate` (objects_count), all evaluating the proto
  `Filters` message (`Equal NotEqual GreaterThan(Equal) LessThan(Equal) ContainsAny
  ContainsNone ContainsAll And Or Not`, on properties and `_id`). Text properties compare
  by their tokenization: `field` exactly, `word` by lower-cased word tokens.
- Requests are checked: class names are unique ignoring case (as Weaviate checks on create),
  the collection exists (gRPC `UNKNOWN` "could not find class ..." as
  Weaviate's extractor reports it; REST 404/422), the vector dimension matches the index's
  (set by the first object, as HNSW does), properties are declared with a matching type, and
  the `authorization: Bearer <key>` header/metadata when an api key is set (REST 401, gRPC
  `UNAUTHENTICATED`).
- Every request is recorded (`rest_requests`, `grpc_requests`: the decoded proto messages) so
  tests can assert on what the client sent; `fail_next(method, code, details)` scripts a gRPC
  error for the next call of a method.
"""

from __future__ import annotations

import json
import math
import re
import socket
import struct
import threading
import uuid
from collections.abc import Iterable
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import grpc
from google.protobuf import struct_pb2
from weaviate.proto.v1 import (
    aggregate_pb2,
    base_pb2,
    batch_delete_pb2,
    batch_pb2,
    properties_pb2,
    search_get_pb2,
    weaviate_pb2_grpc,
)

__all__ = ["WeaviateStandIn", "RestRequest"]

VERSION = "1.33.0"
_CLASS_RE = re.compile(r"^[A-Z][_0-9A-Za-z]{0,254}$")
_PROP_RE = re.compile(r"^[_A-Za-z][_0-9A-Za-z]{0,230}$")
_DISTANCES = ("cosine", "dot", "l2-squared")
_OP = base_pb2.Filters.Operator


@dataclass
class RestRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class _Object:
    uuid: str
    vector: list[float]
    properties: dict[str, Any]


@dataclass
class _Collection:
    schema: dict[str, Any]
    objects: dict[str, _Object] = field(default_factory=dict)
    dimension: int | None = None

    @property
    def distance(self) -> str:
        named = self.schema.get("vectorConfig") or {}
        if "default" in named:
            return str(named["default"]["vectorIndexConfig"]["distance"])
        return str(self.schema["vectorIndexConfig"]["distance"])

    def prop(self, name: str) -> dict[str, Any] | None:
        for p in self.schema["properties"]:
            if p["name"] == name:
                return dict(p)
        return None


class _Failure(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


def _index_config(given: dict[str, Any] | None) -> dict[str, Any]:
    vic = dict(given or {})
    vic.setdefault("distance", "cosine")
    defaults = {
        "skip": False,
        "cleanupIntervalSeconds": 300,
        "maxConnections": 32,
        "efConstruction": 128,
        "ef": -1,
        "dynamicEfMin": 100,
        "dynamicEfMax": 500,
        "dynamicEfFactor": 8,
        "vectorCacheMaxObjects": 1000000000000,
        "flatSearchCutoff": 40000,
        "pq": {"enabled": False},
        "bq": {"enabled": False},
        "sq": {"enabled": False},
        "filterStrategy": "sweeping",
    }
    for k, v in defaults.items():
        vic.setdefault(k, v)
    return vic


def _default_class(body: dict[str, Any]) -> dict[str, Any]:
    props = []
    for p in body.get("properties") or []:
        p = dict(p)
        p.setdefault("indexFilterable", True)
        p.setdefault("indexSearchable", p["dataType"] == ["text"])
        p.setdefault("indexRangeFilters", False)
        if p["dataType"] == ["text"]:
            p.setdefault("tokenization", "word")
        props.append(p)
    out: dict[str, Any] = {
        "class": body["class"],
        "description": body.get("description", ""),
        "properties": props,
        "moduleConfig": body.get("moduleConfig") or {},
        "invertedIndexConfig": body.get("invertedIndexConfig")
        or {
            "bm25": {"b": 0.75, "k1": 1.2},
            "cleanupIntervalSeconds": 60,
            "stopwords": {"additions": None, "preset": "en", "removals": None},
            "indexTimestamps": False,
            "indexNullState": False,
            "indexPropertyLength": False,
            "usingBlockMaxWAND": True,
        },
        "multiTenancyConfig": body.get("multiTenancyConfig")
        or {"enabled": False, "autoTenantCreation": False, "autoTenantActivation": False},
        "replicationConfig": body.get("replicationConfig")
        or {"factor": 1, "asyncEnabled": False, "deletionStrategy": "NoAutomatedResolution"},
        "shardingConfig": body.get("shardingConfig")
        or {
            "virtualPerPhysical": 128,
            "desiredCount": 1,
            "actualCount": 1,
            "desiredVirtualCount": 128,
            "actualVirtualCount": 128,
            "key": "_id",
            "strategy": "hash",
            "function": "murmur3",
        },
    }
    if body.get("vectorConfig"):
        # named vectors (what `Configure.Vectors.*` creates): no class-level vector index
        out["vectorConfig"] = {
            name: {
                "vectorizer": cfg.get("vectorizer") or {"none": {}},
                "vectorIndexType": cfg.get("vectorIndexType", "hnsw"),
                "vectorIndexConfig": _index_config(cfg.get("vectorIndexConfig")),
            }
            for name, cfg in body["vectorConfig"].items()
        }
    else:
        out["vectorizer"] = body.get("vectorizer", "none")
        out["vectorIndexType"] = body.get("vectorIndexType", "hnsw")
        out["vectorIndexConfig"] = _index_config(body.get("vectorIndexConfig"))
    return out


class WeaviateStandIn:
    """REST on `url`, gRPC on 127.0.0.1:`grpc_port`; a context manager."""

    def __init__(self, api_key: str | None = None) -> None:
        self.api_key = api_key
        #: what the gRPC side accepts (default: the same key); a test may change it alone
        self.grpc_api_key = api_key
        self.collections: dict[str, _Collection] = {}
        self.rest_requests: list[RestRequest] = []
        #: (method name, request message) in arrival order; `grpc_metadata` alongside
        self.grpc_requests: list[tuple[str, Any]] = []
        self.grpc_metadata: list[dict[str, str]] = []
        self._failures: dict[str, list[tuple[grpc.StatusCode, str]]] = {}
        self._lock = threading.RLock()
        self._http: ThreadingHTTPServer | None = None
        self._grpc: grpc.Server | None = None
        self.http_port = 0
        self.grpc_port = 0

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> WeaviateStandIn:
        handler = _make_handler(self)
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._http.daemon_threads = True
        self.http_port = self._http.server_address[1]
        threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        weaviate_pb2_grpc.add_WeaviateServicer_to_server(_Servicer(self), self._grpc)
        self.grpc_port = self._grpc.add_insecure_port("127.0.0.1:0")
        self._grpc.start()
        return self

    def stop(self) -> None:
        if self._grpc is not None:
            self._grpc.stop(grace=None).wait()
            self._grpc = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    def __enter__(self) -> WeaviateStandIn:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def fail_next(self, method: str, code: grpc.StatusCode, details: str) -> None:
        """The next gRPC call of `method` ("Search", "BatchObjects", ...) fails so."""
        with self._lock:
            self._failures.setdefault(method, []).append((code, details))

    def calls(self, method: str) -> list[Any]:
        """The recorded gRPC requests of one method."""
        with self._lock:
            return [req for name, req in self.grpc_requests if name == method]

    # -- shared checks -----------------------------------------------------------------

    def authorized(self, value: str | None, *, grpc_side: bool = False) -> bool:
        key = self.grpc_api_key if grpc_side else self.api_key
        return key is None or value == f"Bearer {key}"

    def _collection(self, name: str) -> _Collection:
        col = self.collections.get(name)
        if col is None:
            raise _Failure(grpc.StatusCode.UNKNOWN, f"could not find class {name} in schema")
        return col

    # -- gRPC operations (called under the lock) ----------------------------------------

    def batch_objects(self, req: batch_pb2.BatchObjectsRequest) -> batch_pb2.BatchObjectsReply:
        errors: list[batch_pb2.BatchObjectsReply.BatchError] = []
        for index, obj in enumerate(req.objects):
            try:
                self._put(obj)
            except _Failure as exc:
                errors.append(
                    batch_pb2.BatchObjectsReply.BatchError(index=index, error=exc.details)
                )
        return batch_pb2.BatchObjectsReply(took=0.001, errors=errors)

    def _put(self, obj: batch_pb2.BatchObject) -> None:
        col = self.collections.get(obj.collection)
        if col is None:
            raise _Failure(
                grpc.StatusCode.UNKNOWN, f"class {obj.collection!r} not present in schema"
            )
        vector = _decode_vector(obj.vector_bytes, list(obj.vector), obj.vectors)
        if not vector:
            raise _Failure(
                grpc.StatusCode.UNKNOWN, "no vector given and the class has no vectorizer"
            )
        if col.dimension is not None and len(vector) != col.dimension:
            raise _Failure(
                grpc.StatusCode.UNKNOWN,
                f"insert to vector index: new node has a vector with length {len(vector)}. "
                f"Existing nodes have vectors with length {col.dimension}",
            )
        props: dict[str, Any] = {}
        for name, value in obj.properties.non_ref_properties.fields.items():
            props[name] = self._coerce(col, name, value)
        for name in obj.properties.empty_list_props:
            raise _Failure(grpc.StatusCode.UNKNOWN, f"empty list property {name!r} not supported")
        uid = str(uuid.UUID(obj.uuid))
        col.dimension = len(vector)
        col.objects[uid] = _Object(uid, vector, props)

    def _coerce(self, col: _Collection, name: str, value: struct_pb2.Value) -> Any:
        prop = col.prop(name)
        if prop is None:
            raise _Failure(
                grpc.StatusCode.UNKNOWN,
                f"invalid object: no such prop with name '{name}' found in class "
                f"'{col.schema['class']}' in the schema. Check your schema files for which "
                "properties in this class are available",
            )
        kind = value.WhichOneof("kind")
        dtype = prop["dataType"][0]
        if kind == "null_value":
            return None
        ok = (
            (dtype == "text" and kind == "string_value")
            or (dtype == "boolean" and kind == "bool_value")
            or (dtype == "number" and kind == "number_value")
            or (dtype == "int" and kind == "number_value" and value.number_value.is_integer())
        )
        if not ok:
            raise _Failure(
                grpc.StatusCode.UNKNOWN,
                f"invalid {dtype} property '{name}' on class '{col.schema['class']}': "
                f"requires a {dtype}, got {kind}",
            )
        if dtype == "int":
            return int(value.number_value)
        if dtype == "number":
            return float(value.number_value)
        return getattr(value, kind)

    def batch_delete(
        self, req: batch_delete_pb2.BatchDeleteRequest
    ) -> batch_delete_pb2.BatchDeleteReply:
        col = self._collection(req.collection)
        if not req.HasField("filters"):
            raise _Failure(grpc.StatusCode.INVALID_ARGUMENT, "batch delete needs filters")
        hits = [o for o in col.objects.values() if _match(col, o, req.filters)]
        if not req.dry_run:
            for o in hits:
                del col.objects[o.uuid]
        return batch_delete_pb2.BatchDeleteReply(
            took=0.001, failed=0, matches=len(hits), successful=len(hits)
        )

    def aggregate(self, req: aggregate_pb2.AggregateRequest) -> aggregate_pb2.AggregateReply:
        col = self._collection(req.collection)
        objs = list(col.objects.values())
        if req.HasField("filters"):
            objs = [o for o in objs if _match(col, o, req.filters)]
        single = aggregate_pb2.AggregateReply.Single()
        if req.objects_count:
            single.objects_count = len(objs)
        return aggregate_pb2.AggregateReply(took=0.001, single_result=single)

    def search(self, req: search_get_pb2.SearchRequest) -> search_get_pb2.SearchReply:
        col = self._collection(req.collection)
        objs = list(col.objects.values())
        if req.HasField("filters"):
            objs = [o for o in objs if _match(col, o, req.filters)]
        scored: list[tuple[float | None, _Object]]
        if req.HasField("near_vector"):
            nv = req.near_vector
            query = _decode_vector(nv.vector_bytes, list(nv.vector), nv.vectors)
            if col.dimension is not None and len(query) != col.dimension:
                raise _Failure(
                    grpc.StatusCode.UNKNOWN,
                    f"vector search: knn search: distance between entrypoint and query node: "
                    f"vector lengths don't match: {col.dimension} vs {len(query)}",
                )
            scored = sorted(
                ((_distance(col.distance, query, o.vector), o) for o in objs),
                key=lambda pair: (pair[0], pair[1].uuid),
            )
        else:
            objs.sort(key=lambda o: o.uuid)
            for sort in reversed(list(req.sort_by)):
                path = sort.path[0]
                objs.sort(
                    key=lambda o, p=path: _sort_key(o, p),  # type: ignore[misc]
                    reverse=not sort.ascending,
                )
            if req.after:
                if req.HasField("filters") or len(req.sort_by):
                    raise _Failure(
                        grpc.StatusCode.UNKNOWN,
                        "explorer: list class: search: invalid pagination params: "
                        "a cursor (after) cannot be combined with a filter or sort",
                    )
                objs = [o for o in objs if o.uuid > req.after]
            scored = [(None, o) for o in objs]
        scored = scored[req.offset :]
        if req.limit:
            scored = scored[: req.limit]
        results = [self._result(col, req, d, o) for d, o in scored]
        return search_get_pb2.SearchReply(took=0.001, results=results)

    def _result(
        self,
        col: _Collection,
        req: search_get_pb2.SearchRequest,
        distance: float | None,
        obj: _Object,
    ) -> search_get_pb2.SearchResult:
        wanted: Iterable[str]
        if not req.HasField("properties") or req.properties.return_all_nonref_properties:
            # no PropertiesRequest (uses_123_api): Weaviate returns every non-ref property
            wanted = [p["name"] for p in col.schema["properties"]]
        else:
            wanted = list(req.properties.non_ref_properties)
        fields: dict[str, properties_pb2.Value] = {}
        for name in wanted:
            if name not in obj.properties or obj.properties[name] is None:
                continue
            fields[name] = _value(col.prop(name) or {}, obj.properties[name])
        md = search_get_pb2.MetadataResult(id=obj.uuid, id_as_bytes=uuid.UUID(obj.uuid).bytes)
        if req.metadata.distance and distance is not None:
            md.distance = distance
            md.distance_present = True
        if req.metadata.vector or list(req.metadata.vectors):
            packed = struct.pack(f"<{len(obj.vector)}f", *obj.vector)
            if col.schema.get("vectorConfig"):
                md.vectors.append(
                    base_pb2.Vectors(
                        name="default",
                        vector_bytes=packed,
                        type=base_pb2.Vectors.VECTOR_TYPE_SINGLE_FP32,
                    )
                )
            else:
                md.vector_bytes = packed
        return search_get_pb2.SearchResult(
            properties=search_get_pb2.PropertiesResult(
                non_ref_props=properties_pb2.Properties(fields=fields),
                target_collection=col.schema["class"],
            ),
            metadata=md,
        )

    # -- REST operations ------------------------------------------------------------------

    def rest(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        parts = [p for p in path.split("?")[0].split("/") if p]
        if parts[:1] != ["v1"]:
            return 404, {"error": [{"message": f"no route for {path}"}]}
        parts = parts[1:]
        if parts == ["meta"] and method == "GET":
            return 200, {"hostname": "http://[::]:8080", "version": VERSION, "modules": {}}
        if parts[:1] == [".well-known"] and method == "GET":
            if parts[1:] in (["ready"], ["live"]):
                return 200, None
            return 404, None
        if parts[:1] != ["schema"]:
            return 404, {"error": [{"message": f"no route for {method} {path}"}]}
        with self._lock:
            if parts == ["schema"] and method == "GET":
                return 200, {"classes": [c.schema for c in self.collections.values()]}
            if parts == ["schema"] and method == "POST":
                return self._create(body)
            name = parts[1] if len(parts) > 1 else ""
            col = self.collections.get(name)
            if len(parts) == 2 and method == "GET":
                if col is None:
                    return 404, None
                return 200, col.schema
            if len(parts) == 2 and method == "DELETE":
                self.collections.pop(name, None)
                return 200, None
            if parts[2:] == ["properties"] and method == "POST":
                if col is None:
                    return 422, _err(f"class '{name}' not found in schema")
                if not _PROP_RE.match(str(body.get("name", ""))):
                    return 422, _err(f"'{body.get('name')}' is not a valid property name")
                if col.prop(body["name"]) is not None:
                    return 422, _err(f"property '{body['name']}' already exists")
                col.schema["properties"].append(
                    _default_class({"class": "X", "properties": [body]})["properties"][0]
                )
                return 200, body
        return 404, _err(f"no route for {method} {path}")

    def _create(self, body: dict[str, Any]) -> tuple[int, Any]:
        name = str(body.get("class", ""))
        if not _CLASS_RE.match(name):
            return 422, _err(f"'{name}' is not a valid class name")
        for existing in self.collections:
            if existing.lower() == name.lower():
                # Weaviate compares class names case-insensitively on create
                return 422, _err(f'class already exists: found similar class "{existing}"')
        if body.get("vectorizer", "none") != "none":
            return 422, _err("only vectorizer 'none' is available in this stand-in")
        configs = [body.get("vectorIndexConfig") or {}]
        for cfg in (body.get("vectorConfig") or {}).values():
            if cfg.get("vectorizer", {"none": {}}) != {"none": {}}:
                return 422, _err("only vectorizer 'none' is available in this stand-in")
            configs.append(cfg.get("vectorIndexConfig") or {})
        for cfg in configs:
            if cfg.get("distance", "cosine") not in _DISTANCES:
                return 422, _err(f"unsupported distance {cfg.get('distance')!r}")
        for p in body.get("properties") or []:
            if not _PROP_RE.match(str(p.get("name", ""))):
                return 422, _err(f"'{p.get('name')}' is not a valid property name")
        schema = _default_class(body)
        self.collections[name] = _Collection(schema)
        return 200, schema


def _err(message: str) -> dict[str, Any]:
    return {"error": [{"message": message}]}


def _decode_vector(raw: bytes, floats: list[float], vectors: Iterable[Any]) -> list[float]:
    if raw:
        return list(struct.unpack(f"<{len(raw) // 4}f", raw))
    if floats:
        return floats
    for vec in vectors:
        data = vec.vector_bytes
        return list(struct.unpack(f"<{len(data) // 4}f", data))
    return []


def _distance(metric: str, a: list[float], b: list[float]) -> float:
    if metric == "dot":
        return -sum(x * y for x, y in zip(a, b, strict=True))
    if metric == "l2-squared":
        return sum((x - y) ** 2 for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(x * x for x in b))
    if na == 0 or nb == 0:
        return 1.0
    return 1.0 - sum(x * y for x, y in zip(a, b, strict=True)) / (na * nb)


def _sort_key(obj: _Object, prop: str) -> tuple[int, Any]:
    value = obj.properties.get(prop)
    return (0, "") if value is None else (1, value)


def _value(prop: dict[str, Any], value: Any) -> properties_pb2.Value:
    dtype = (prop.get("dataType") or ["text"])[0]
    if dtype == "boolean":
        return properties_pb2.Value(bool_value=bool(value))
    if dtype == "int":
        return properties_pb2.Value(int_value=int(value))
    if dtype == "number":
        return properties_pb2.Value(number_value=float(value))
    return properties_pb2.Value(text_value=str(value))


_WORD = re.compile(r"[0-9A-Za-z]+")


def _operand(f: base_pb2.Filters) -> Any:
    kind = f.WhichOneof("test_value")
    if kind is None:
        return None
    value = getattr(f, kind)
    if kind.endswith("_array"):
        return list(value.values)
    return value


def _property_name(f: base_pb2.Filters) -> str:
    if f.HasField("target"):
        return str(f.target.property)
    return str(f.on[0]) if f.on else ""


def _match(col: _Collection, obj: _Object, f: base_pb2.Filters) -> bool:
    op = f.operator
    if op == _OP.OPERATOR_AND:
        return all(_match(col, obj, child) for child in f.filters)
    if op == _OP.OPERATOR_OR:
        return any(_match(col, obj, child) for child in f.filters)
    if op == _OP.OPERATOR_NOT:
        return not any(_match(col, obj, child) for child in f.filters)
    name = _property_name(f)
    operand = _operand(f)
    if name in ("_id", "id"):
        actual: Any = obj.uuid
        operand = (
            [str(uuid.UUID(v)) for v in operand]
            if isinstance(operand, list)
            else (str(uuid.UUID(operand)))
        )
        word = False
    else:
        prop = col.prop(name)
        if prop is None:
            raise _Failure(
                grpc.StatusCode.UNKNOWN,
                f"no such prop with name '{name}' found in class '{col.schema['class']}'",
            )
        actual = obj.properties.get(name)
        word = prop["dataType"] == ["text"] and prop.get("tokenization") == "word"
    if op == _OP.OPERATOR_NOT_EQUAL:
        return not _equal(actual, operand, word)
    if op == _OP.OPERATOR_EQUAL:
        return _equal(actual, operand, word)
    if op == _OP.OPERATOR_CONTAINS_ANY:
        return any(_equal(actual, v, word) for v in operand)
    if op == _OP.OPERATOR_CONTAINS_ALL:
        return all(_equal(actual, v, word) for v in operand)
    if op == _OP.OPERATOR_CONTAINS_NONE:
        return not any(_equal(actual, v, word) for v in operand)
    if actual is None or isinstance(actual, bool) != isinstance(operand, bool):
        return False
    try:
        if op == _OP.OPERATOR_GREATER_THAN:
            return bool(actual > operand)
        if op == _OP.OPERATOR_GREATER_THAN_EQUAL:
            return bool(actual >= operand)
        if op == _OP.OPERATOR_LESS_THAN:
            return bool(actual < operand)
        if op == _OP.OPERATOR_LESS_THAN_EQUAL:
            return bool(actual <= operand)
    except TypeError:
        return False
    raise _Failure(grpc.StatusCode.UNIMPLEMENTED, f"operator {_OP.Name(op)} not in this stand-in")


def _equal(actual: Any, operand: Any, word: bool) -> bool:
    if actual is None:
        return False
    if isinstance(actual, bool) or isinstance(operand, bool):
        return isinstance(actual, bool) and isinstance(operand, bool) and actual == operand
    if isinstance(actual, str) != isinstance(operand, str):
        return False
    if word and isinstance(actual, str):
        tokens = {t.lower() for t in _WORD.findall(actual)}
        return all(t.lower() in tokens for t in _WORD.findall(operand))
    return bool(actual == operand)


class _Servicer(weaviate_pb2_grpc.WeaviateServicer):
    def __init__(self, server: WeaviateStandIn) -> None:
        self.server = server

    def _call(self, method: str, request: Any, context: grpc.ServicerContext, fn: Any) -> Any:
        server = self.server
        metadata = dict(context.invocation_metadata())
        copy = type(request)()
        copy.CopyFrom(request)
        with server._lock:
            server.grpc_requests.append((method, copy))
            server.grpc_metadata.append({str(k): str(v) for k, v in metadata.items()})
            if not server.authorized(metadata.get("authorization"), grpc_side=True):
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid api key: unauthorized")
            scripted = server._failures.get(method)
            if scripted:
                code, details = scripted.pop(0)
                context.abort(code, details)
            try:
                return fn(request)
            except _Failure as exc:
                context.abort(exc.code, exc.details)

    def Search(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return self._call("Search", request, context, self.server.search)

    def BatchObjects(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return self._call("BatchObjects", request, context, self.server.batch_objects)

    def BatchDelete(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return self._call("BatchDelete", request, context, self.server.batch_delete)

    def Aggregate(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return self._call("Aggregate", request, context, self.server.aggregate)


def _make_handler(server: WeaviateStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # headers and body go out in two writes: without this, Nagle + delayed ACK
            # hold every keep-alive reply for ~40 ms
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            with server._lock:
                server.rest_requests.append(
                    RestRequest(self.command, self.path, dict(self.headers.items()), body)
                )
            public = self.path.startswith("/v1/.well-known")
            if not public and not server.authorized(self.headers.get("Authorization")):
                status, out = 401, {"code": 401, "message": "unauthorized: invalid api key"}
            else:
                status, out = server.rest(self.command, self.path, body)
            data = b"" if out is None else json.dumps(out).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle  # noqa: N815

    return Handler
