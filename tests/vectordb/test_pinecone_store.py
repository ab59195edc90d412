"""PineconeStore: the official SDK against a loopback stand-in that speaks Pinecone's REST."""

from __future__ import annotations

import importlib
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from tests.support.modules import require_module
from tests.vectordb.contract import Q, VectorStoreContract, docs

require_module("pinecone")

from llm_orchestrator.exceptions import ConfigurationError, MissingDependencyError  # noqa: E402
from llm_orchestrator.vectordb.base import (  # noqa: E402
    IndexNotFoundError,
    VectorRecord,
    VectorStoreError,
)
from llm_orchestrator.vectordb.filters import parse_filter, validate_for  # noqa: E402
from llm_orchestrator.vectordb.keyword import KeywordMirror  # noqa: E402
from llm_orchestrator.vectordb.pinecone import (  # noqa: E402
    PineconeStore,
    matches,
    metadata_to_tags,
    tags_to_metadata,
    translate_filter,
)
from llm_orchestrator.vectordb.registry import (  # noqa: E402
    VectorStoreRegistry,
    close_all_vector_stores,
)
from tests.support.pinecone_server import PineconeStandIn  # noqa: E402

KEY = "pc-test-key-0123456789"


@pytest.fixture(autouse=True)
def _fresh_retry_budget() -> None:
    """The SDK throttles retries with a process-wide token bucket per hostname, and every
    stand-in is 127.0.0.1: start each test with a full bucket so retry counts are exact."""
    from pinecone._internal.http_client import get_budget_registry

    get_budget_registry()._reset()


@pytest.fixture
def standin() -> Iterator[PineconeStandIn]:
    with PineconeStandIn(api_key=KEY) as server:
        yield server


@pytest.fixture
async def store(standin: PineconeStandIn) -> AsyncIterator[PineconeStore]:
    opened = PineconeStore(api_key=SecretStr(KEY), host=standin.control_url, timeout_seconds=10)
    yield opened
    await opened.aclose()


class TestPineconeContract(VectorStoreContract):
    pass


# -- what goes over the wire --------------------------------------------------------------


async def test_every_request_carries_the_key_and_api_version(
    store: PineconeStore, standin: PineconeStandIn
) -> None:
    await store.create_index("docs", 2, metadata={"embedder": "local"})
    await store.upsert("docs", [VectorRecord("a", [1.0, 0.0], "hello", {"k": "v"})])
    await store.search("docs", [1.0, 0.0], where={"k": "v"})
    await store.scan("docs")
    await store.stats("docs")
    planes = {r.plane for r in standin.requests}
    assert planes == {"control", "docs"}
    for request in standin.requests:
        assert request.headers["api-key"] == KEY
        assert request.headers["x-pinecone-api-version"] == "2026-07"


async def test_create_index_sends_a_serverless_dense_index_and_waits_until_ready(
    standin: PineconeStandIn,
) -> None:
    store = PineconeStore(
        api_key=SecretStr(KEY), host=standin.control_url, cloud="gcp", region="europe-west4"
    )
    await store.create_index("docs", 3, "euclidean", metadata={"embedder": "local"})
    [create] = standin.requests_to("/indexes", plane="control")
    assert create.method == "POST"
    assert create.json == {
        "name": "docs",
        "schema": {
            "fields": {"_values": {"type": "dense_vector", "dimension": 3, "metric": "euclidean"}}
        },
        "deployment": {"deployment_type": "managed", "cloud": "gcp", "region": "europe-west4"},
        "tags": {"llmo_meta_0": '{"embedder":"local"}'},
    }
    paths = [(r.method, r.path) for r in standin.requests]
    # answered "Initializing"; the SDK polled describe until "Ready"
    assert paths.index(("GET", "/indexes/docs"), paths.index(("POST", "/indexes"))) > 0
    assert standin.indexes["docs"].ready
    await store.aclose()


async def test_upserts_go_in_batches_of_at_most_100_to_the_namespace(
    store: PineconeStore, standin: PineconeStandIn
) -> None:
    await store.create_index("docs", 2)
    records = [VectorRecord(f"r{i}", [1.0, i / 250]) for i in range(250)]
    assert await store.upsert("docs", records, namespace="tenant-7") == 250
    upserts = standin.requests_to("/vectors/upsert")
    assert [len(r.json["vectors"]) for r in upserts] == [100, 100, 50]
    assert {r.json["namespace"] for r in upserts} == {"tenant-7"}
    assert standin.count("docs", "tenant-7") == 250
    await store.upsert("docs", records[:1])
    # the default namespace is left out of the body, as the SDK does
    assert "namespace" not in standin.requests_to("/vectors/upsert")[-1].json
    assert standin.count("docs", "") == 1


async def test_text_rides_in_metadata_and_records_without_metadata_send_none(
    store: PineconeStore, standin: PineconeStandIn
) -> None:
    await store.create_index("docs", 2)
    await store.upsert("docs", [VectorRecord("t", [1.0, 0.0], "some text", {"n": 3})])
    await store.upsert("docs", [VectorRecord("bare", [0.0, 1.0])])
    [with_text], [bare] = (r.json["vectors"] for r in standin.requests_to("/vectors/upsert"))
    assert with_text == {
        "id": "t",
        "values": [1.0, 0.0],
        "metadata": {"n": 3, "_llmo_text": "some text"},
    }
    assert bare == {"id": "bare", "values": [0.0, 1.0]}
    hits = await store.search("docs", [1.0, 0.0], top_k=2)
    assert [(h.id, h.text, dict(h.metadata)) for h in hits] == [
        ("t", "some text", {"n": 3}),
        ("bare", None, {}),
    ]
    assert type(hits[0].metadata["n"]) is int  # Pinecone answers 3.0


@pytest.mark.parametrize(
    "where",
    [
        {"source": "faq", "year": {"$gte": 2020}},
        {"$or": [{"lang": {"$in": ["de", "fr"]}}, {"ok": {"$ne": True}}]},
        {"ok": {"$in": [True]}},
    ],
)
async def test_the_filter_sent_is_the_translated_filter(
    store: PineconeStore, standin: PineconeStandIn, where: dict[str, Any]
) -> None:
    await store.create_index("docs", 3)
    await store.upsert("docs", docs())
    await store.search("docs", Q, where=where, namespace="n1")
    [query] = standin.requests_to("/query")
    assert query.json["filter"] == translate_filter(parse_filter(where))
    assert query.json["namespace"] == "n1"
    assert query.json["includeMetadata"] is True and query.json["includeValues"] is False
    await store.delete("docs", where=where)
    [delete] = standin.requests_to("/vectors/delete")
    assert delete.json == {"namespace": "", "filter": translate_filter(parse_filter(where))}


async def test_scan_pages_through_list_and_fetch(
    store: PineconeStore, standin: PineconeStandIn
) -> None:
    await store.create_index("docs", 2)
    records = [VectorRecord(f"r{i:03}", [1.0, 0.5], f"t{i}", {"i": i}) for i in range(230)]
    await store.upsert("docs", records, namespace="ns")
    found = await store.scan("docs", where={"i": {"$gte": 100}}, namespace="ns")
    assert sorted(r.id for r in found) == [f"r{i:03}" for i in range(100, 230)]
    assert {r.text for r in found if r.id == "r150"} == {"t150"}
    lists = standin.requests_to("/vectors/list")
    assert len(lists) == 3
    assert all(r.query["limit"] == ["100"] and r.query["namespace"] == ["ns"] for r in lists)
    assert "paginationToken" not in lists[0].query and "paginationToken" in lists[1].query
    fetches = standin.requests_to("/vectors/fetch")
    assert [len(r.query["ids"]) for r in fetches] == [100, 100, 30]


async def test_delete_ids_with_a_filter_deletes_only_matching_listed_ids(
    store: PineconeStore, standin: PineconeStandIn
) -> None:
    await store.create_index("docs", 3)
    await store.upsert("docs", docs())
    await store.delete("docs", ids=["a", "c", "e"], where={"source": "faq"})
    [delete] = standin.requests_to("/vectors/delete")
    assert delete.json == {"namespace": "", "ids": ["a"]}
    assert sorted(r.id for r in await store.scan("docs")) == ["b", "c", "d", "e", "f"]


async def test_index_metadata_lives_in_tags_and_never_in_records(
    store: PineconeStore, standin: PineconeStandIn
) -> None:
    meta = {"embedder": "local", "embedding_model": "all-MiniLM-L6-v2", "note": "naïve ✓", "n": 2}
    await store.create_index("docs", 2, metadata=meta)
    assert all(v.isascii() and len(v) <= 120 for v in (standin.indexes["docs"].tags or {}).values())
    assert await store.index_metadata("docs") == meta
    assert (await store.stats("docs")).count == 0
    assert await store.scan("docs") == []
    assert standin.indexes["docs"].namespaces == {}
    # a second store (another process) reads it back from the service
    other = PineconeStore(api_key=SecretStr(KEY), host=standin.control_url)
    assert await other.index_metadata("docs") == meta
    await other.aclose()


async def test_long_index_metadata_spans_tags_and_too_long_is_refused(
    store: PineconeStore, standin: PineconeStandIn
) -> None:
    meta = {"description": "x" * 500}
    await store.create_index("docs", 2, metadata=meta)
    tags = standin.indexes["docs"].tags or {}
    assert sorted(tags) == [f"llmo_meta_{i}" for i in range(5)]
    assert await store.index_metadata("docs") == meta
    with pytest.raises(VectorStoreError, match="at most 1920"):
        await store.create_index("big", 2, metadata={"description": "x" * 3000})
    assert "big" not in standin.indexes


def test_tags_round_trip_ignores_foreign_tags() -> None:
    tags = metadata_to_tags({"a": [1, 2], "b": {"c": None}}, "i")
    assert tags_to_metadata({**tags, "env": "prod"}) == {"a": [1, 2], "b": {"c": None}}
    assert metadata_to_tags({}, "i") == {}
    assert tags_to_metadata(None) == {} and tags_to_metadata({"env": "prod"}) == {}


async def test_reopen_sees_the_data(standin: PineconeStandIn) -> None:
    first = PineconeStore(api_key=SecretStr(KEY), host=standin.control_url)
    await first.create_index("keep", 2, metadata={"embedder": "e"})
    await first.upsert("keep", [VectorRecord("x", [1.0, 0.0], "hello")], namespace="n")
    await first.aclose()
    again = PineconeStore(api_key=SecretStr(KEY), host=standin.control_url)
    assert (await again.stats("keep")).count == 1
    assert await again.index_metadata("keep") == {"embedder": "e"}
    [hit] = await again.search("keep", [1.0, 0.0], namespace="n")
    assert (hit.id, hit.text) == ("x", "hello")
    await again.aclose()


async def test_non_ascii_ids_are_refused_before_the_service(
    store: PineconeStore, standin: PineconeStandIn
) -> None:
    await store.create_index("docs", 2)
    with pytest.raises(VectorStoreError, match="cannot be a Pinecone id"):
        await store.upsert("docs", [VectorRecord("café", [1.0, 0.0])])
    assert standin.requests_to("/vectors/upsert") == []


# -- filter translation --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ({"source": "faq"}, {"source": {"$eq": "faq"}}),
        (
            {"source": "faq", "year": {"$gte": 2020, "$lt": 2023}},
            {
                "$and": [
                    {"source": {"$eq": "faq"}},
                    {"year": {"$gte": 2020}},
                    {"year": {"$lt": 2023}},
                ]
            },
        ),
        ({"lang": {"$nin": ["de", "fr"]}}, {"lang": {"$nin": ["de", "fr"]}}),
        ({"year": {"$in": [2019, 2023.5]}}, {"year": {"$in": [2019, 2023.5]}}),
        ({"$and": [{"ok": False}]}, {"ok": {"$eq": False}}),
        (
            {"$or": [{"a": {"$ne": 1}}, {"b": {"$lte": 2}}]},
            {"$or": [{"a": {"$ne": 1}}, {"b": {"$lte": 2}}]},
        ),
        ({"ok": {"$in": [True, False]}}, {"$or": [{"ok": {"$eq": True}}, {"ok": {"$eq": False}}]}),
        ({"ok": {"$nin": [True]}}, {"ok": {"$ne": True}}),
    ],
)
def test_translate_filter(where: dict[str, Any], expected: dict[str, Any]) -> None:
    assert translate_filter(parse_filter(where)) == expected
    validate_for("pinecone", where)


def test_validation_refuses_what_the_portable_syntax_refuses() -> None:
    with pytest.raises(ValueError, match=r"unknown operator '\$regex'"):
        validate_for("pinecone", {"source": {"$regex": "f.*"}})
    with pytest.raises(ValueError, match="compares numbers"):
        validate_for("pinecone", {"year": {"$gt": "2020"}})


def test_local_matching_agrees_with_the_standin() -> None:
    """`scan` filters locally: same answers as the stand-in's server-side filter."""
    from tests.support import pinecone_server

    metas: list[dict[str, Any]] = [
        {"s": "a", "n": 1.0, "b": True},
        {"s": "b", "n": 2.0, "b": False},
        {"n": 3.0},
        {"s": "a", "b": 1.0},
        {"s": ["a", "c"], "n": 0.5},
    ]
    filters: list[dict[str, Any]] = [
        {"s": "a"},
        {"s": {"$ne": "a"}},
        {"n": {"$gt": 1}},
        {"b": True},
        {"b": {"$ne": True}},
        {"s": {"$in": ["c", "b"]}},
        {"s": {"$nin": ["a"]}},
        {"$or": [{"n": {"$lte": 1}}, {"b": False}]},
        {"b": {"$in": [True, 1]}},
    ]
    for where in filters:
        node = parse_filter(where)
        for meta in metas:
            expected = pinecone_server._matches(translate_filter(node), meta)
            assert matches(node, meta) is expected, (where, meta)


# -- errors ----------------------------------------------------------------------------------


async def test_a_wrong_key_is_a_store_error_that_does_not_leak_the_key(
    standin: PineconeStandIn,
) -> None:
    wrong = "pc-wrong-key-987654321"
    store = PineconeStore(api_key=SecretStr(wrong), host=standin.control_url, name="vectors")
    with pytest.raises(VectorStoreError, match="refused the API key") as caught:
        await store.list_indexes()
    assert "401" in str(caught.value) and "vector_stores.vectors" in str(caught.value)
    assert not caught.value.retryable
    assert wrong not in str(caught.value) and wrong not in repr(store)
    assert await store.health() is False
    await store.aclose()


async def test_a_data_plane_401_is_mapped_too(
    store: PineconeStore, standin: PineconeStandIn
) -> None:
    await store.create_index("docs", 2)
    standin.fail(401, path="/query", message="Invalid API Key")
    with pytest.raises(VectorStoreError, match=r"index 'docs'.*refused the API key"):
        await store.search("docs", [1.0, 0.0])


async def test_unknown_index_is_index_not_found(store: PineconeStore) -> None:
    for call in (
        store.stats("nope"),
        store.index_metadata("nope"),
        store.upsert("nope", [VectorRecord("a", [1.0])]),
        store.scan("nope"),
        store.delete("nope", ids=["a"]),
        store.delete_index("nope"),
    ):
        with pytest.raises(IndexNotFoundError, match="index 'nope'.*llm-orchestrator ingest"):
            await call


async def test_rate_limit_is_retried_by_the_sdk_then_mapped_as_retryable(
    store: PineconeStore, standin: PineconeStandIn
) -> None:
    await store.create_index("docs", 2)
    await store.upsert("docs", [VectorRecord("a", [1.0, 0.0])])
    # one 429: the SDK's retry (honouring Retry-After) succeeds
    standin.fail(429, path="/query", retry_after=0)
    assert [h.id for h in await store.search("docs", [1.0, 0.0])] == ["a"]
    assert len(standin.requests_to("/query")) == 2
    # 429 on every attempt: a retryable VectorStoreError carrying retry_after
    standin.fail(429, times=10, path="/query", retry_after=0)
    with pytest.raises(VectorStoreError, match=r"index 'docs'.*rate limit \(429") as caught:
        await store.search("docs", [1.0, 0.0])
    assert caught.value.retryable is True and caught.value.retry_after == 0.0
    assert len(standin.requests_to("/query")) == 2 + 4  # the first try and 3 retries


async def test_server_errors_are_retryable_and_bad_requests_are_not(
    store: PineconeStore, standin: PineconeStandIn
) -> None:
    await store.create_index("docs", 2)
    standin.fail(500, times=4, path="/vectors/upsert", retry_after=0)
    with pytest.raises(VectorStoreError, match=r"server error \(500") as caught:
        await store.upsert("docs", [VectorRecord("a", [1.0, 0.0])])
    assert caught.value.retryable is True
    assert len(standin.requests_to("/vectors/upsert")) == 4  # the first try and 3 retries
    standin.fail(400, path="/vectors/upsert", message="metadata too large")
    with pytest.raises(
        VectorStoreError, match=r"refused the request \(400: metadata too large"
    ) as bad:
        await store.upsert("docs", [VectorRecord("a", [1.0, 0.0])])
    assert bad.value.retryable is False


async def test_the_standin_checks_dimensions_and_fields(standin: PineconeStandIn) -> None:
    """The stand-in refuses what Pinecone refuses, so the adapter's checks are not the only net."""
    pinecone = require_module("pinecone")
    async with pinecone.AsyncPinecone(api_key=KEY, host=standin.control_url) as pc:
        await pc.indexes.create(
            name="raw",
            schema={
                "fields": {"_values": {"type": "dense_vector", "dimension": 2, "metric": "cosine"}}
            },
            timeout=60,
        )
        async with await pc.index(name="raw") as idx:
            with pytest.raises(pinecone.ApiError, match="does not match the dimension") as dim:
                await idx.upsert(vectors=[("a", [1.0, 0.0, 0.0])])
            assert dim.value.status_code == 400
            with pytest.raises(pinecone.ApiError, match="unknown operator") as bad:
                await idx.query(vector=[1.0, 0.0], top_k=1, filter={"a": {"$regex": "x"}})
            assert bad.value.status_code == 400
        with pytest.raises(pinecone.ApiError, match="unknown field") as unknown:
            await pc._http.post("/indexes", json={"name": "x", "schema": {}, "pods": 1})
        assert unknown.value.status_code == 400
        with pytest.raises(pinecone.ConflictError):
            await pc.indexes.create(
                name="raw",
                schema={
                    "fields": {
                        "_values": {"type": "dense_vector", "dimension": 2, "metric": "cosine"}
                    }
                },
                timeout=-1,
            )


async def test_a_create_race_is_resolved_by_describing_again(
    store: PineconeStore, standin: PineconeStandIn
) -> None:
    standin.fail(409, path="/indexes", message="Resource docs already exists")
    # the service says it exists (someone else created it): describe decides
    with pytest.raises(IndexNotFoundError):
        await store.create_index("docs", 2)


async def test_connection_refused_is_a_retryable_store_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import socket

    from pinecone._internal import http_client

    attempts: list[float] = []

    async def no_backoff(delay: float) -> None:  # the SDK's seam for its retry sleeps
        attempts.append(delay)

    monkeypatch.setattr(http_client, "_async_retry_sleep", no_backoff)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = PineconeStore(api_key=SecretStr(KEY), host=f"http://127.0.0.1:{port}", name="gone")
    with pytest.raises(VectorStoreError, match="cannot reach Pinecone") as caught:
        await store.list_indexes()
    assert caught.value.retryable is True
    assert len(attempts) == 3  # the SDK retried before giving up
    assert "PineconeStore('gone'" in str(caught.value)
    assert await store.health() is False
    await store.aclose()


async def test_index_names_pinecone_refuses_are_store_errors(store: PineconeStore) -> None:
    with pytest.raises(VectorStoreError, match="my_index"):
        await store.create_index("my_index", 2)


# -- configuration -------------------------------------------------------------------------


async def test_registry_builds_the_store_from_config(
    standin: PineconeStandIn, tmp_path: Path
) -> None:
    registry = VectorStoreRegistry(
        {
            "pc": {
                "type": "pinecone",
                "api_key": KEY,
                "host": standin.control_url,
                "cloud": "azure",
                "region": "eastus2",
                "timeout_seconds": 5,
            }
        },
        tmp_path,
    )
    assert registry.check("pc") is None
    mirror = registry.get("pc")
    assert isinstance(mirror, KeywordMirror)
    store = mirror.inner
    assert isinstance(store, PineconeStore)
    assert (store.name, store.host, store.cloud, store.region) == (
        "pc",
        standin.control_url,
        "azure",
        "eastus2",
    )
    await mirror.create_index("docs", 2)
    await mirror.upsert("docs", [VectorRecord("a", [1.0, 0.0], "hello")])
    [hit] = await mirror.search("docs", [1.0, 0.0])
    assert (hit.id, hit.text) == ("a", "hello")
    create = standin.requests_to("/indexes", plane="control")[0]
    assert create.json["deployment"] == {
        "deployment_type": "managed",
        "cloud": "azure",
        "region": "eastus2",
    }
    await close_all_vector_stores()


async def test_the_key_can_come_from_the_environment(
    standin: PineconeStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PINECONE_API_KEY", KEY)
    store = PineconeStore(host=standin.control_url)
    assert await store.list_indexes() == []
    await store.aclose()


async def test_no_key_at_all_is_a_configuration_error(
    standin: PineconeStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PINECONE_API_KEY", raising=False)
    store = PineconeStore(host=standin.control_url, name="pc")
    with pytest.raises(ConfigurationError, match="PINECONE_API_KEY.*vector_stores.pc"):
        await store.list_indexes()
    assert await store.health() is False
    assert standin.requests == []


async def test_without_the_sdk_the_module_imports_and_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import llm_orchestrator.vectordb as package

    name = "llm_orchestrator.vectordb.pinecone"
    # a fresh import with the SDK unimportable; monkeypatch puts the original module back
    monkeypatch.setattr(package, "pinecone", sys.modules[name])  # (re)set at teardown
    monkeypatch.setitem(sys.modules, "pinecone", None)
    monkeypatch.delitem(sys.modules, name)
    module = importlib.import_module(name)
    assert module.PineconeStore is not PineconeStore
    assert module.translate_filter(parse_filter({"a": 1})) == {"a": {"$eq": 1}}
    store = module.PineconeStore(api_key=SecretStr(KEY), host="http://127.0.0.1:9")
    with pytest.raises(MissingDependencyError, match=r"llm-orchestrator\[pinecone\]"):
        await store.list_indexes()


def test_the_standin_answers_pinecone_error_bodies(standin: PineconeStandIn) -> None:
    import httpx

    good = {"Api-Key": KEY, "X-Pinecone-Api-Version": "2026-07"}
    with httpx.Client(base_url=standin.control_url) as http:
        no_version = http.get("/indexes", headers={"Api-Key": KEY})
        wrong_key = http.get("/indexes", headers={**good, "Api-Key": "nope"})
        missing = http.get("/indexes/ghost", headers=good)
        listed = http.get("/indexes", headers=good)
    assert no_version.status_code == 400
    assert no_version.json()["error"]["code"] == "INVALID_ARGUMENT"
    assert wrong_key.status_code == 401
    assert wrong_key.json() == {
        "error": {"code": "UNAUTHENTICATED", "message": "Invalid API Key"},
        "status": 401,
    }
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"
    assert listed.json() == {"indexes": []}
