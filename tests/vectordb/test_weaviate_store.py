"""WeaviateStore: the official v4 client against a loopback REST + gRPC stand-in."""

from __future__ import annotations

import importlib
import socket
import struct
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from tests.support.modules import require_module
from tests.vectordb.contract import Q, VectorStoreContract, docs

require_module("weaviate")

import grpc  # noqa: E402

from llm_orchestrator.exceptions import MissingDependencyError  # noqa: E402
from llm_orchestrator.vectordb.base import (  # noqa: E402
    IndexNotFoundError,
    VectorRecord,
    VectorStoreError,
)
from llm_orchestrator.vectordb.filters import parse_filter, validate_for  # noqa: E402
from llm_orchestrator.vectordb.keyword import KeywordMirror  # noqa: E402
from llm_orchestrator.vectordb.registry import (  # noqa: E402
    VectorStoreRegistry,
    close_all_vector_stores,
)
from llm_orchestrator.vectordb.weaviate import (  # noqa: E402
    BATCH_SIZE,
    WeaviateStore,
    collection_name,
    index_name,
    object_uuid,
    translate_filter,
)
from tests.support.weaviate_server import WeaviateStandIn  # noqa: E402

KEY = "wv-test-key-0123456789"


@pytest.fixture
def standin() -> Iterator[WeaviateStandIn]:
    with WeaviateStandIn(api_key=KEY) as server:
        yield server


def _store(server: WeaviateStandIn, key: str | None = KEY, timeout: float = 10) -> WeaviateStore:
    return WeaviateStore(
        server.url,
        grpc_port=server.grpc_port,
        api_key=SecretStr(key) if key else None,
        timeout_seconds=timeout,
        name="wv",
    )


@pytest.fixture
async def store(standin: WeaviateStandIn) -> AsyncIterator[WeaviateStore]:
    opened = _store(standin)
    yield opened
    await opened.aclose()


class TestWeaviateStandIn(VectorStoreContract):
    pass


# -- name mapping ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("index", "collection"),
    [
        ("docs", "Llmo_docs"),
        ("My-docs.v2", "Llmo__umy_hdocs_pv2"),
        ("a_b", "Llmo_a__b"),
        ("A__", "Llmo__ua____"),
        ("x9", "Llmo_x9"),
    ],
)
def test_index_names_map_reversibly(index: str, collection: str) -> None:
    assert collection_name(index) == collection
    assert index_name(collection) == index


def test_unmappable_index_names_are_refused() -> None:
    for bad in ("", "with space", "ümlaut", "a/b", "x" * 201):
        with pytest.raises(ValueError, match="Weaviate index name takes"):
            collection_name(bad)


def test_foreign_collections_are_not_indexes() -> None:
    for foreign in ("Article", "Llmo_Docs", "Llmo_a_x", "Llmo_", "Llmo_a_"):
        assert index_name(foreign) is None


def test_object_uuids_are_deterministic_and_namespaced() -> None:
    assert object_uuid("", "a") == object_uuid("", "a")
    assert object_uuid("", "a") != object_uuid("n", "a")
    assert object_uuid("", '["x"') != object_uuid("x", "")


# -- filter translation -------------------------------------------------------------------


def _proto(raw: dict[str, Any]) -> Any:
    from weaviate.collections.filters import _FilterToGRPC

    return _FilterToGRPC.convert(translate_filter(parse_filter(raw)))


def test_filter_translation_shapes() -> None:
    from weaviate.proto.v1 import base_pb2

    op = base_pb2.Filters.Operator
    f = _proto({"source": "faq", "year": {"$gte": 2020}})
    assert f.operator == op.OPERATOR_AND
    assert [(c.target.property, c.operator) for c in f.filters] == [
        ("source", op.OPERATOR_EQUAL),
        ("year", op.OPERATOR_GREATER_THAN_EQUAL),
    ]
    assert f.filters[0].value_text == "faq" and f.filters[1].value_int == 2020
    f = _proto({"lang": {"$nin": ["de", "fr"]}})
    assert f.operator == op.OPERATOR_AND
    assert [(c.operator, c.value_text) for c in f.filters] == [
        (op.OPERATOR_NOT_EQUAL, "de"),
        (op.OPERATOR_NOT_EQUAL, "fr"),
    ]
    assert _proto({"n": {"$nin": [1]}}).operator == op.OPERATOR_NOT_EQUAL
    f = _proto({"$or": [{"ok": True}, {"score": {"$lt": 0.5}}]})
    assert f.operator == op.OPERATOR_OR
    assert f.filters[0].value_boolean is True and f.filters[1].value_number == 0.5
    f = _proto({"year": {"$in": [2019, 2023]}})
    assert (f.operator, list(f.value_int_array.values)) == (op.OPERATOR_CONTAINS_ANY, [2019, 2023])


def test_untranslatable_filters_raise_value_error() -> None:
    with pytest.raises(ValueError, match="one type"):
        validate_for("weaviate", {"x": {"$in": ["a", 1]}})
    with pytest.raises(ValueError, match="filter field '_secret'"):
        validate_for("weaviate", {"_secret": 1})
    with pytest.raises(ValueError, match="filter field 'llmo_ns'"):
        validate_for("weaviate", {"llmo_ns": "x"})
    validate_for("weaviate", {"$or": [{"a": 1}, {"b": {"$nin": [True, "x"]}}]})


# -- what goes over the wire ----------------------------------------------------------------


async def test_requests_carry_vector_limit_filter_and_namespace(
    store: WeaviateStore, standin: WeaviateStandIn
) -> None:
    from weaviate.proto.v1 import base_pb2

    await store.create_index("docs", 3, "cosine")
    await store.upsert("docs", docs(), namespace="t1")
    await store.search("docs", Q, top_k=2, where={"lang": {"$in": ["de", "fr"]}}, namespace="t1")
    [req] = standin.calls("Search")
    assert req.collection == "Llmo_docs"
    assert req.limit == 2
    assert req.metadata.distance is True
    [vec] = req.near_vector.vectors
    assert list(struct.unpack("<3f", vec.vector_bytes)) == Q
    op = base_pb2.Filters.Operator
    assert req.filters.operator == op.OPERATOR_AND
    ns, lang = req.filters.filters
    assert (ns.target.property, ns.operator, ns.value_text) == (
        "llmo_ns",
        op.OPERATOR_EQUAL,
        "ns:t1",
    )
    assert (lang.target.property, lang.operator) == ("lang", op.OPERATOR_CONTAINS_ANY)
    assert list(lang.value_text_array.values) == ["de", "fr"]
    # schema: our bookkeeping and the metadata as typed, field-tokenized properties
    schema = standin.collections["Llmo_docs"].schema
    props = {p["name"]: (p["dataType"], p.get("tokenization")) for p in schema["properties"]}
    assert props["llmo_id"] == (["text"], "field")
    assert props["source"] == (["text"], "field")
    assert props["year"] == (["int"], None)
    assert props["ok"] == (["boolean"], None)
    assert schema["vectorConfig"]["default"]["vectorIndexConfig"]["distance"] == "cosine"


async def test_upserts_go_in_batches(store: WeaviateStore, standin: WeaviateStandIn) -> None:
    await store.create_index("many", 2, "euclidean")
    records = [VectorRecord(f"r{i}", [float(i), 1.0]) for i in range(BATCH_SIZE * 2 + 7)]
    await store.upsert("many", records)
    sizes = [len(req.objects) for req in standin.calls("BatchObjects")]
    assert sizes == [BATCH_SIZE, BATCH_SIZE, 7]
    first = standin.calls("BatchObjects")[0].objects[0]
    assert first.uuid == object_uuid("", "r0")
    assert first.properties.non_ref_properties.fields["llmo_id"].string_value == "r0"
    schema = standin.collections["Llmo_many"].schema
    assert schema["vectorConfig"]["default"]["vectorIndexConfig"]["distance"] == "l2-squared"


async def test_delete_by_ids_sends_uuid_filter(
    store: WeaviateStore, standin: WeaviateStandIn
) -> None:
    from weaviate.proto.v1 import base_pb2

    await store.create_index("docs", 3)
    await store.upsert("docs", docs())
    await store.delete("docs", ids=["a", "b"])
    [req] = standin.calls("BatchDelete")
    ns, by_id = req.filters.filters
    assert by_id.target.property == "_id"
    assert by_id.operator == base_pb2.Filters.Operator.OPERATOR_CONTAINS_ANY
    assert list(by_id.value_text_array.values) == [object_uuid("", "a"), object_uuid("", "b")]


async def test_scan_pages_by_keyset(
    store: WeaviateStore, standin: WeaviateStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llm_orchestrator.vectordb.weaviate as module

    monkeypatch.setattr(module, "PAGE_SIZE", 4)
    await store.create_index("docs", 3)
    await store.upsert("docs", docs() + [VectorRecord("g", Q, "g text")])
    records = await store.scan("docs")
    assert sorted(r.id for r in records) == ["a", "b", "c", "d", "e", "f", "g"]
    pages = standin.calls("Search")
    assert [req.limit for req in pages] == [4, 4]
    assert pages[1].filters.filters[-1].value_text == "d"


async def test_metadata_keys_must_be_property_names(store: WeaviateStore) -> None:
    await store.create_index("docs", 3)
    for key in ("has-dash", "_x", "llmo_extra", "id", "9lives"):
        with pytest.raises(VectorStoreError, match=f"metadata key '{key}'"):
            await store.upsert("docs", [VectorRecord("x", Q, None, {key: 1})])


async def test_metadata_types_stay_consistent(store: WeaviateStore) -> None:
    await store.create_index("docs", 3)
    await store.upsert("docs", [VectorRecord("x", Q, None, {"n": 1, "f": 0.5})])
    await store.upsert("docs", [VectorRecord("y", Q, None, {"n": 2.0, "f": 3})])
    with pytest.raises(VectorStoreError, match="metadata 'n' is str"):
        await store.upsert("docs", [VectorRecord("z", Q, None, {"n": "two"})])
    with pytest.raises(VectorStoreError, match="metadata 'n' is float 2.5"):
        await store.upsert("docs", [VectorRecord("z", Q, None, {"n": 2.5})])
    by_id = {r.id: dict(r.metadata) for r in await store.scan("docs")}
    assert by_id == {"x": {"n": 1, "f": 0.5}, "y": {"n": 2, "f": 3.0}}


async def test_index_metadata_lives_in_the_description(
    store: WeaviateStore, standin: WeaviateStandIn
) -> None:
    import json

    await store.create_index("My-idx", 2, "dot", metadata={"embedder": "local"})
    desc = json.loads(standin.collections["Llmo__umy_hidx"].schema["description"])
    assert desc == {"llmo_index": "My-idx", "dimension": 2, "metadata": {"embedder": "local"}}
    assert await store.list_indexes() == ["My-idx"]
    # a collection someone else made on the same server is not an index of ours
    standin.rest("POST", "/v1/schema", {"class": "Article", "properties": []})
    assert await store.list_indexes() == ["My-idx"]


async def test_reopen_sees_the_data(standin: WeaviateStandIn) -> None:
    first = _store(standin)
    await first.create_index("keep", 2, metadata={"embedder": "e"})
    await first.upsert("keep", [VectorRecord("x", [1.0, 0.0], "hello")])
    await first.aclose()
    again = _store(standin)
    assert (await again.stats("keep")).count == 1
    assert await again.index_metadata("keep") == {"embedder": "e"}
    [hit] = await again.search("keep", [1.0, 0.0])
    assert (hit.id, hit.text) == ("x", "hello")
    await again.aclose()


async def test_the_stand_in_checks_what_weaviate_checks(standin: WeaviateStandIn) -> None:
    """The stand-in refuses what a Weaviate server without auto-schema refuses, so the
    adapter's property declarations and dimension checks are really exercised."""
    import weaviate
    from weaviate.classes.config import Configure, Property
    from weaviate.classes.config import DataType as D
    from weaviate.classes.data import DataObject
    from weaviate.classes.init import Auth
    from weaviate.exceptions import UnexpectedStatusCodeError, WeaviateQueryError

    client = weaviate.use_async_with_custom(
        http_host="127.0.0.1",
        http_port=standin.http_port,
        http_secure=False,
        grpc_host="127.0.0.1",
        grpc_port=standin.grpc_port,
        grpc_secure=False,
        auth_credentials=Auth.api_key(KEY),
        skip_init_checks=True,
    )
    await client.connect()
    try:
        await client.collections.create(
            "Things",
            vector_config=Configure.Vectors.self_provided(),
            properties=[Property(name="n", data_type=D.INT)],
        )
        with pytest.raises(UnexpectedStatusCodeError, match="similar class"):
            await client.collections.create(
                "THINGS", vector_config=Configure.Vectors.self_provided()
            )
        things = client.collections.use("Things")
        ok = await things.data.insert_many([DataObject(properties={"n": 1}, vector=[1.0, 0.0])])
        assert not ok.errors
        bad = await things.data.insert_many(
            [
                DataObject(properties={"undeclared": "x"}, vector=[1.0, 0.0]),
                DataObject(properties={"n": 1.5}, vector=[1.0, 0.0]),
                DataObject(properties={"n": 2}, vector=[1.0, 0.0, 0.0]),
                DataObject(properties={"n": 3}, vector=[0.0, 1.0]),
            ]
        )
        assert sorted(bad.errors) == [0, 1, 2]
        assert "no such prop" in bad.errors[0].message
        assert "requires a int" in bad.errors[1].message
        assert "vector with length 3" in bad.errors[2].message
        with pytest.raises(WeaviateQueryError, match="vector lengths don't match"):
            await things.query.near_vector([1.0, 0.0, 0.0])
        with pytest.raises(WeaviateQueryError, match="could not find class Nothing"):
            await client.collections.use("Nothing").query.fetch_objects()
        result = await things.query.near_vector([1.0, 0.0], return_metadata=["distance"])
        assert [round(o.metadata.distance or 0, 6) for o in result.objects] == [0.0, 1.0]
    finally:
        await client.close()


# -- errors ---------------------------------------------------------------------------------


async def test_unknown_collection_on_the_grpc_side(
    store: WeaviateStore, standin: WeaviateStandIn
) -> None:
    await store.create_index("docs", 3)
    # the collection vanishes between our schema check and the query
    standin.fail_next("Search", grpc.StatusCode.UNKNOWN, "could not find class Llmo_docs in schema")
    with pytest.raises(IndexNotFoundError, match="index 'docs'"):
        await store.search("docs", Q)
    with pytest.raises(IndexNotFoundError, match="no index 'nope'"):
        await store.upsert("nope", [VectorRecord("x", Q)])


async def test_server_errors_become_vector_store_errors(
    store: WeaviateStore, standin: WeaviateStandIn
) -> None:
    await store.create_index("docs", 3)
    await store.upsert("docs", docs())
    standin.fail_next("Search", grpc.StatusCode.INTERNAL, "shard is read-only")
    with pytest.raises(VectorStoreError, match="index 'docs'.*shard is read-only") as info:
        await store.search("docs", Q)
    assert not isinstance(info.value, IndexNotFoundError)
    standin.fail_next("Search", grpc.StatusCode.PERMISSION_DENIED, "rbac: no read on Llmo_docs")
    with pytest.raises(VectorStoreError, match="forbidden.*permissions"):
        await store.search("docs", Q)
    standin.fail_next("BatchDelete", grpc.StatusCode.INTERNAL, "disk full")
    with pytest.raises(VectorStoreError, match="disk full"):
        await store.delete("docs", ids=["a"])


async def test_refused_objects_are_reported(store: WeaviateStore, standin: WeaviateStandIn) -> None:
    await store.create_index("docs", 3)
    await store.upsert("docs", docs())
    # the server holds 3-d vectors but our description claims otherwise: the batch error
    # from the server must surface, naming the record
    standin.collections["Llmo_docs"].dimension = 4
    with pytest.raises(VectorStoreError, match="index 'docs'.*vector with length 3"):
        await store.upsert("docs", docs()[:1])


async def test_bad_api_key_is_refused_and_not_leaked(standin: WeaviateStandIn) -> None:
    wrong = _store(standin, key="not-the-key-xyz")
    with pytest.raises(VectorStoreError, match="refused the credentials") as info:
        await wrong.list_indexes()
    assert "not-the-key-xyz" not in str(info.value)
    assert "not-the-key-xyz" not in repr(wrong)
    assert await wrong.health() is False  # connecting reads /v1/meta, which needs them
    await wrong.aclose()
    anonymous = _store(standin, key=None)
    with pytest.raises(VectorStoreError, match="HTTP 401"):
        await anonymous.create_index("docs", 3)
    await anonymous.aclose()
    # every request of a configured key carries it, REST and gRPC alike
    standin.rest_requests.clear()
    good = _store(standin)
    await good.create_index("docs", 3)
    await good.upsert("docs", docs())
    await good.search("docs", Q)
    assert standin.rest_requests and standin.grpc_metadata
    assert all(
        r.headers.get("authorization") == f"Bearer {KEY}"
        for r in standin.rest_requests
        if not r.path.startswith("/v1/.well-known")
    )
    assert all(m.get("authorization") == f"Bearer {KEY}" for m in standin.grpc_metadata)
    await good.aclose()


async def test_grpc_credentials_are_checked(standin: WeaviateStandIn) -> None:
    store = _store(standin)
    await store.create_index("docs", 3)
    standin.grpc_api_key = KEY + "-rotated"  # REST still accepts the key, gRPC does not
    with pytest.raises(
        VectorStoreError, match=r"refused the credentials \(gRPC UNAUTHENTICATED"
    ) as info:
        await store.search("docs", Q)
    assert not isinstance(info.value, IndexNotFoundError)
    with pytest.raises(VectorStoreError, match="UNAUTHENTICATED"):
        await store.upsert("docs", docs())
    await store.aclose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.timeout(30)  # the client's own UNAVAILABLE retries alone take about 63 s
async def test_server_down_fails_fast_with_our_error() -> None:
    down = WeaviateStore(
        f"http://127.0.0.1:{_free_port()}", grpc_port=_free_port(), timeout_seconds=5, name="wv"
    )
    with pytest.raises(VectorStoreError, match="cannot reach Weaviate") as info:
        await down.search("docs", Q)
    assert info.value.retryable is True
    assert await down.health() is False
    await down.aclose()


@pytest.mark.timeout(30)
async def test_grpc_down_is_bounded_by_the_timeout(standin: WeaviateStandIn) -> None:
    """REST answers but nothing listens on the gRPC port: the client would retry
    UNAVAILABLE for about a minute; our `timeout_seconds` ends it."""
    store = WeaviateStore(
        standin.url, grpc_port=_free_port(), api_key=SecretStr(KEY), timeout_seconds=1
    )
    await store.create_index("docs", 3)
    with pytest.raises(VectorStoreError, match="timeout_seconds") as info:
        await store.search("docs", Q)
    assert info.value.retryable is True
    await store.aclose()


# -- configuration ----------------------------------------------------------------------------


async def test_registry_builds_the_store(standin: WeaviateStandIn, tmp_path: Path) -> None:
    registry = VectorStoreRegistry(
        {
            "wv": {
                "type": "weaviate",
                "url": standin.url,
                "grpc_port": standin.grpc_port,
                "api_key": KEY,
                "timeout_seconds": 7,
            }
        },
        tmp_path,
    )
    try:
        mirror = registry.get("wv")
        assert isinstance(mirror, KeywordMirror)
        inner = mirror.inner
        assert isinstance(inner, WeaviateStore)
        assert (inner.grpc_host, inner.grpc_port, inner._timeout) == (
            "127.0.0.1",
            standin.grpc_port,
            7,
        )
        await inner.create_index("docs", 3)
        assert await inner.list_indexes() == ["docs"]
        assert KEY not in repr(inner)
    finally:
        await close_all_vector_stores()


def test_module_imports_without_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(sys.modules):
        if name == "weaviate" or name.startswith("weaviate."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "weaviate", None)
    monkeypatch.delitem(sys.modules, "llm_orchestrator.vectordb.weaviate")
    module = importlib.import_module("llm_orchestrator.vectordb.weaviate")
    with pytest.raises(MissingDependencyError, match="weaviate-client"):
        module.translate_filter(parse_filter({"a": 1}))
