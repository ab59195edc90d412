"""QdrantStore in server mode: the real `qdrant-client` (REST over httpx) against a loopback
stand-in that speaks Qdrant's REST wire format (tests/support/qdrant_server.py).

The shared contract runs with an API key configured, so every request must carry it. The
client warns once per store that an API key goes over plain http; that warning is expected
here (the stand-in is loopback http) and filtered for this module only.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from tests.support.modules import require_module
from tests.vectordb.contract import Q, VectorStoreContract, docs

require_module("qdrant_client")

from llm_orchestrator.vectordb.base import (  # noqa: E402
    IndexNotFoundError,
    VectorRecord,
    VectorStoreError,
)
from llm_orchestrator.vectordb.qdrant import QdrantStore, point_id  # noqa: E402
from tests.support.qdrant_server import QdrantStandIn  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore:Api key is used with an insecure connection:UserWarning"
)

KEY = "qd-test-key-0123456789"


@pytest.fixture
def standin() -> Iterator[QdrantStandIn]:
    with QdrantStandIn(api_key=KEY) as server:
        yield server


@pytest.fixture
async def store(standin: QdrantStandIn) -> AsyncIterator[QdrantStore]:
    opened = QdrantStore(url=standin.url, api_key=SecretStr(KEY), timeout_seconds=10)
    yield opened
    await opened.aclose()


class TestQdrantServerContract(VectorStoreContract):
    pass


def _filter_json(namespace: str, *clauses: dict[str, Any]) -> dict[str, Any]:
    ns = {"key": "_llmo_ns", "match": {"value": namespace}}
    return {"must": [ns, *clauses]}


# -- what goes over the wire --------------------------------------------------------------


async def test_every_request_carries_the_key_and_writes_wait(
    store: QdrantStore, standin: QdrantStandIn
) -> None:
    await store.create_index("docs", 3, metadata={"embedder": "local"})
    await store.upsert("docs", docs())
    await store.search("docs", Q, where={"source": "faq"})
    await store.scan("docs")
    await store.delete("docs", ids=["a"])
    await store.stats("docs")
    assert await store.health()
    assert len(standin.requests) >= 10
    assert {r.headers.get("api-key") for r in standin.requests} == {KEY}
    [create] = standin.requests_to("/collections/docs", "PUT")
    assert create.json == {
        "vectors": {"size": 3, "distance": "Cosine"},
        "metadata": {"llmo:metadata": '{"embedder": "local"}'},
    }
    writes = standin.requests_to("/collections/docs/points", "PUT")
    writes += standin.requests_to("/collections/docs/points/delete", "POST")
    assert len(writes) == 2
    assert all(w.query == {"wait": ["true"]} for w in writes)
    [upsert] = standin.requests_to("/collections/docs/points", "PUT")
    first = upsert.json["points"][0]
    assert first["id"] == point_id("", "a")
    assert first["payload"] == {
        "source": "faq",
        "year": 2019,
        "lang": "en",
        "ok": True,
        "_llmo_ns": "",
        "_llmo_id": "a",
        "_llmo_text": "text of a",
    }


async def test_filtered_search_sends_the_qdrant_filter_json(
    store: QdrantStore, standin: QdrantStandIn
) -> None:
    await store.create_index("docs", 3)
    await store.upsert("docs", docs(), namespace="t")
    hits = await store.search(
        "docs",
        Q,
        top_k=4,
        namespace="t",
        where={
            "$or": [{"lang": {"$nin": ["de", "fr"]}}, {"ok": {"$ne": True}}],
            "year": {"$gte": 2020},
        },
    )
    assert [h.id for h in hits] == ["b", "c", "e"]
    [query] = standin.requests_to("/collections/docs/points/query", "POST")
    assert query.json == {
        "query": {"nearest": [1.0, 0.0, 0.0]},
        "filter": _filter_json(
            "t",
            {
                "must": [
                    {
                        "should": [
                            {"must": [{"key": "lang", "match": {"except": ["de", "fr"]}}]},
                            {"must_not": [{"key": "ok", "match": {"value": True}}]},
                        ]
                    },
                    {"must": [{"key": "year", "range": {"gte": 2020.0}}]},
                ]
            },
        ),
        "limit": 4,
        "with_vector": False,
        "with_payload": True,
    }


async def test_delete_by_ids_sends_has_id_inside_the_namespace_filter(
    store: QdrantStore, standin: QdrantStandIn
) -> None:
    await store.create_index("docs", 3)
    await store.upsert("docs", docs(), namespace="t")
    await store.delete("docs", ids=["a", "b"], where={"source": "faq"}, namespace="t")
    [delete] = standin.requests_to("/collections/docs/points/delete", "POST")
    assert delete.json == {
        "filter": {
            "must": [
                {"key": "_llmo_ns", "match": {"value": "t"}},
                {"must": [{"key": "source", "match": {"value": "faq"}}]},
                {"has_id": [point_id("t", "a"), point_id("t", "b")]},
            ]
        }
    }
    assert sorted(r.id for r in await store.scan("docs", namespace="t")) == ["c", "d", "e", "f"]


async def test_scan_pages_with_next_page_offset(store: QdrantStore, standin: QdrantStandIn) -> None:
    await store.create_index("many", 2)
    records = [
        VectorRecord(f"r{i}", [math.cos(i), math.sin(i)], None, {"i": i}) for i in range(600)
    ]
    await store.upsert("many", records)
    scanned = await store.scan("many")
    assert sorted(r.id for r in scanned) == sorted(r.id for r in records)
    scrolls = standin.requests_to("/collections/many/points/scroll", "POST")
    assert [s.json.get("offset") for s in scrolls][0] is None
    assert len(scrolls) == 3  # 256 + 256 + 88
    assert all(s.json["limit"] == 256 for s in scrolls)
    # the second and third pages start at the offsets the server handed out
    assert all(isinstance(s.json["offset"], str) for s in scrolls[1:])


# -- errors -------------------------------------------------------------------------------


async def test_a_wrong_key_is_a_vector_store_error_naming_the_store(
    standin: QdrantStandIn,
) -> None:
    wrong = QdrantStore(url=standin.url, api_key=SecretStr("not-the-key"), name="kb")
    with pytest.raises(VectorStoreError) as caught:
        await wrong.stats("docs")
    message = str(caught.value)
    assert "QdrantStore('kb'" in message
    assert "refused the API key (401: Invalid API key or JWT)" in message
    assert "vector_stores.kb" in message
    assert "not-the-key" not in message
    assert not isinstance(caught.value, IndexNotFoundError)
    assert not caught.value.retryable
    assert await wrong.health() is False
    assert standin.requests[0].headers["api-key"] == "not-the-key"
    await wrong.aclose()

    keyless = QdrantStore(url=standin.url, name="kb")
    with pytest.raises(VectorStoreError, match="Must provide an API key"):
        await keyless.list_indexes()
    await keyless.aclose()


async def test_a_dimension_mismatch_from_the_server_is_a_vector_store_error(
    store: QdrantStore, standin: QdrantStandIn
) -> None:
    await store.create_index("docs", 3)

    def recreate_with_two_dimensions(server: QdrantStandIn) -> None:
        # another client drops and recreates the collection between the store's
        # dimension check and its upsert
        del server.collections["docs"]
        server.create("docs", 2)

    standin.before("PUT", "/collections/docs/points", recreate_with_two_dimensions)
    with pytest.raises(VectorStoreError) as caught:
        await store.upsert("docs", [VectorRecord("a", [1.0, 0.0, 0.0])])
    assert str(caught.value) == (
        f"QdrantStore('qdrant', {standin.url}), index 'docs': Qdrant refused the request "
        "(400: Wrong input: Vector dimension error: expected dim: 2, got 3)"
    )
    assert not caught.value.retryable
    # the store's own check now sees the new dimension
    with pytest.raises(VectorStoreError, match="query vector has 3"):
        await store.search("docs", Q)


async def test_a_collection_deleted_meanwhile_is_index_not_found(
    store: QdrantStore, standin: QdrantStandIn
) -> None:
    await store.create_index("docs", 3)
    standin.before("POST", "/collections/docs/points/query", lambda s: s.collections.pop("docs"))
    with pytest.raises(IndexNotFoundError, match=r"index 'docs'.*Collection `docs` doesn't exist"):
        await store.search("docs", Q)


async def test_a_collection_created_meanwhile_is_taken_or_refused_by_shape(
    store: QdrantStore, standin: QdrantStandIn
) -> None:
    # another client creates the collection between the store's exists check and its create
    standin.before("PUT", "/collections/same", lambda s: s.create("same", 3))
    info = await store.create_index("same", 3)
    assert (info.name, info.dimension, info.metric) == ("same", 3, "cosine")
    standin.before("PUT", "/collections/other", lambda s: s.create("other", 2))
    with pytest.raises(VectorStoreError, match="exists with dimension 2"):
        await store.create_index("other", 3)
    assert [r.path for r in standin.requests if r.method == "PUT"] == [
        "/collections/same",
        "/collections/other",
    ]


async def test_server_errors_and_rate_limits_are_retryable(
    store: QdrantStore, standin: QdrantStandIn
) -> None:
    await store.create_index("docs", 3)
    standin.fail(500, path="/collections/docs/points/query", message="Service internal error")
    with pytest.raises(VectorStoreError, match=r"500: Service internal error") as caught:
        await store.search("docs", Q)
    assert caught.value.retryable
    standin.fail(429, path="/collections/docs/points/query", message="Too many", retry_after=3)
    with pytest.raises(VectorStoreError, match="rate limit") as limited:
        await store.search("docs", Q)
    assert (limited.value.retryable, limited.value.retry_after) == (True, 3.0)
    assert await store.search("docs", Q) == []


async def test_server_down_fails_fast_with_a_vector_store_error() -> None:
    standin = QdrantStandIn()
    url = standin.url
    standin.close()
    store = QdrantStore(url=url, timeout_seconds=10)
    started = time.monotonic()
    with pytest.raises(VectorStoreError, match="cannot reach Qdrant at http://127.0.0.1") as caught:
        await store.stats("docs")
    assert caught.value.retryable
    assert "ConnectError" in str(caught.value)
    assert await store.health() is False
    assert time.monotonic() - started < 2.0
    await store.aclose()


async def test_a_foreign_collection_with_another_distance_is_refused(
    store: QdrantStore, standin: QdrantStandIn
) -> None:
    standin.create("manhattan", 2, "Manhattan")
    with pytest.raises(VectorStoreError, match="Manhattan distance; this store supports"):
        await store.stats("manhattan")


async def test_a_sub_second_timeout_still_reaches_the_server(standin: QdrantStandIn) -> None:
    quick = QdrantStore(url=standin.url, api_key=SecretStr(KEY), timeout_seconds=0.5)
    assert await quick.list_indexes() == []
    await quick.aclose()


# -- the stand-in's wire format, seen without the client ------------------------------------


async def test_standin_envelopes_errors_and_euclid_scores() -> None:
    import httpx

    with QdrantStandIn(api_key=KEY) as server:
        async with httpx.AsyncClient(base_url=server.url, headers={"api-key": KEY}) as http:
            missing = await http.get("/collections/nope")
            assert missing.status_code == 404
            assert missing.json()["status"] == {
                "error": "Not found: Collection `nope` doesn't exist!"
            }
            created = await http.put(
                "/collections/e", json={"vectors": {"size": 2, "distance": "Euclid"}}
            )
            assert (created.json()["result"], created.json()["status"]) == (True, "ok")
            again = await http.put(
                "/collections/e", json={"vectors": {"size": 2, "distance": "Euclid"}}
            )
            assert again.status_code == 409
            points = [{"id": 1, "vector": [1.0, 1.0]}, {"id": 2, "vector": [4.0, 4.0]}]
            upserted = await http.put("/collections/e/points?wait=true", json={"points": points})
            assert upserted.json()["result"]["status"] == "completed"
            found = await http.post(
                "/collections/e/points/query", json={"query": [1.0, 0.0], "limit": 2}
            )
            scored = [(p["id"], p["score"]) for p in found.json()["result"]["points"]]
            assert scored == [(1, 1.0), (2, 5.0)]  # distance, not squared, ascending
            wrong = await http.post("/collections/e/points/query", json={"query": [1.0]})
            assert wrong.status_code == 400
            assert wrong.json()["status"]["error"] == (
                "Wrong input: Vector dimension error: expected dim: 2, got 1"
            )
            page = await http.post("/collections/e/points/scroll", json={"limit": 1})
            assert page.json()["result"] == {
                "points": [{"id": 1, "payload": {}}],
                "next_page_offset": 2,
            }
            denied = await http.get("/collections", headers={"api-key": "other"})
            assert (denied.status_code, denied.text) == (401, "Invalid API key or JWT")
            assert (await http.get("/", headers={"api-key": "other"})).status_code == 200
