"""The contract every `VectorStore` passes (haystack's document-store test-suite pattern).

A backend's test module subclasses `VectorStoreContract` and supplies a `store` fixture: an
open store on a fresh, empty database.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from llm_orchestrator.vectordb.base import (
    IndexNotFoundError,
    VectorRecord,
    VectorStore,
    VectorStoreError,
)


def unit(*xs: float) -> list[float]:
    norm = math.sqrt(sum(x * x for x in xs))
    return [x / norm for x in xs]


def docs() -> list[VectorRecord]:
    """Six 3-d records; `q` = (1, 0, 0) ranks them a, b, c, d, e, f by cosine."""
    rows: list[tuple[str, list[float], dict[str, Any]]] = [
        ("a", unit(1, 0, 0), {"source": "faq", "year": 2019, "lang": "en", "ok": True}),
        ("b", unit(1, 0.2, 0), {"source": "faq", "year": 2021, "lang": "de", "ok": False}),
        ("c", unit(1, 0.6, 0), {"source": "blog", "year": 2022, "lang": "en", "ok": True}),
        ("d", unit(1, 1.5, 0), {"source": "blog", "year": 2020, "lang": "fr", "ok": True}),
        ("e", unit(0.3, 1, 0.4), {"source": "docs", "year": 2023, "lang": "en", "ok": False}),
        ("f", unit(0, 0.2, 1), {"source": "docs", "year": 2018, "lang": "de", "ok": True}),
    ]
    return [VectorRecord(id=i, vector=v, text=f"text of {i}", metadata=m) for i, v, m in rows]


Q = [1.0, 0.0, 0.0]


async def ids(store: VectorStore, where: dict[str, Any] | None, namespace: str = "") -> list[str]:
    hits = await store.search("docs", Q, top_k=10, where=where, namespace=namespace)
    return [h.id for h in hits]


class VectorStoreContract:
    """Behaviour shared by every VectorStore implementation."""

    @pytest.fixture
    async def loaded(self, store: VectorStore) -> VectorStore:
        await store.create_index("docs", 3, "cosine", metadata={"embedder": "hand-made"})
        assert await store.upsert("docs", docs()) == 6
        return store

    async def test_is_a_vector_store(self, store: VectorStore) -> None:
        assert isinstance(store, VectorStore)
        assert await store.health() is True

    async def test_index_lifecycle(self, store: VectorStore) -> None:
        assert await store.list_indexes() == []
        info = await store.create_index("alpha", 4, "dot", metadata={"embedder": "m1", "n": 2})
        assert (info.name, info.dimension, info.metric, info.count) == ("alpha", 4, "dot", 0)
        await store.create_index("beta", 3)
        # creating again with the same shape is a no-op; another shape is refused
        again = await store.create_index("alpha", 4, "dot")
        assert again.dimension == 4
        with pytest.raises(VectorStoreError, match="exists with dimension 4"):
            await store.create_index("alpha", 5, "dot")
        assert await store.list_indexes() == ["alpha", "beta"]
        stats = await store.stats("alpha")
        assert (stats.dimension, stats.metric, stats.count) == (4, "dot", 0)
        assert await store.index_metadata("alpha") == {"embedder": "m1", "n": 2}
        assert await store.index_metadata("beta") == {}
        await store.delete_index("alpha")
        assert await store.list_indexes() == ["beta"]
        with pytest.raises(IndexNotFoundError, match="alpha"):
            await store.stats("alpha")
        with pytest.raises(IndexNotFoundError):
            await store.delete_index("alpha")
        with pytest.raises(IndexNotFoundError):
            await store.search("alpha", [1, 0, 0, 0])

    async def test_bad_metric_and_dimension(self, store: VectorStore) -> None:
        with pytest.raises(ValueError, match="metric"):
            await store.create_index("gamma", 3, "manhattan")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="dimension"):
            await store.create_index("gamma", 0)

    async def test_search_orders_by_cosine(self, loaded: VectorStore) -> None:
        hits = await loaded.search("docs", Q, top_k=4)
        assert [h.id for h in hits] == ["a", "b", "c", "d"]
        assert hits[0].score == pytest.approx(1.0, abs=1e-4)
        assert hits[1].score == pytest.approx(unit(1, 0.2, 0)[0], abs=1e-4)
        assert all(x.score >= y.score for x, y in zip(hits, hits[1:], strict=False))
        assert hits[0].text == "text of a"
        assert dict(hits[0].metadata) == {"source": "faq", "year": 2019, "lang": "en", "ok": True}
        assert hits[0].vector is None
        assert (await loaded.stats("docs")).count == 6

    async def test_top_k_larger_than_index(self, loaded: VectorStore) -> None:
        assert len(await loaded.search("docs", Q, top_k=50)) == 6

    async def test_dot_and_euclidean_scores(self, store: VectorStore) -> None:
        records = [
            VectorRecord("near", [1.0, 1.0]),
            VectorRecord("far", [4.0, 4.0]),
        ]
        await store.create_index("dots", 2, "dot")
        await store.upsert("dots", records)
        hits = await store.search("dots", [1.0, 0.0], top_k=2)
        assert [(h.id, round(h.score, 3)) for h in hits] == [("far", 4.0), ("near", 1.0)]
        await store.create_index("euclid", 2, "euclidean")
        await store.upsert("euclid", records)
        hits = await store.search("euclid", [1.0, 0.0], top_k=2)
        assert [h.id for h in hits] == ["near", "far"]
        assert hits[0].score == pytest.approx(-1.0, abs=1e-3)
        assert hits[1].score == pytest.approx(-5.0, abs=1e-3)

    @pytest.mark.parametrize(
        ("where", "expected"),
        [
            ({"source": "faq"}, ["a", "b"]),
            ({"source": {"$eq": "blog"}}, ["c", "d"]),
            ({"source": {"$ne": "docs"}}, ["a", "b", "c", "d"]),
            ({"year": {"$gt": 2020}}, ["b", "c", "e"]),
            ({"year": {"$gte": 2020}}, ["b", "c", "d", "e"]),
            ({"year": {"$lt": 2020}}, ["a", "f"]),
            ({"year": {"$lte": 2020}}, ["a", "d", "f"]),
            ({"year": {"$gte": 2019, "$lt": 2022}}, ["a", "b", "d"]),
            ({"lang": {"$in": ["de", "fr"]}}, ["b", "d", "f"]),
            ({"lang": {"$nin": ["de", "fr"]}}, ["a", "c", "e"]),
            ({"year": {"$in": [2019, 2023]}}, ["a", "e"]),
            ({"ok": True}, ["a", "c", "d", "f"]),
            ({"ok": {"$ne": True}}, ["b", "e"]),
            ({"source": "faq", "year": {"$gte": 2020}}, ["b"]),
            ({"$and": [{"lang": "en"}, {"year": {"$gt": 2019}}]}, ["c", "e"]),
            ({"$or": [{"source": "faq"}, {"lang": "fr"}]}, ["a", "b", "d"]),
            (
                {"$or": [{"year": {"$lt": 2019}}, {"$and": [{"ok": False}, {"lang": "en"}]}]},
                ["e", "f"],
            ),
            ({"$and": [{"source": "docs"}]}, ["e", "f"]),
            ({"source": "nothing"}, []),
        ],
    )
    async def test_filters(
        self, loaded: VectorStore, where: dict[str, Any], expected: list[str]
    ) -> None:
        assert sorted(await ids(loaded, where)) == expected

    async def test_filtered_search_keeps_order(self, loaded: VectorStore) -> None:
        assert await ids(loaded, {"source": {"$in": ["blog", "docs"]}}) == ["c", "d", "e", "f"]

    async def test_namespaces_are_isolated(self, loaded: VectorStore) -> None:
        other = [VectorRecord("a", unit(0, 0, 1), "other a", {"source": "x"})]
        await loaded.upsert("docs", other, namespace="tenant-2")
        assert await ids(loaded, None, namespace="tenant-2") == ["a"]
        [hit] = await loaded.search("docs", Q, top_k=5, namespace="tenant-2")
        assert (hit.text, dict(hit.metadata)) == ("other a", {"source": "x"})
        assert len(await ids(loaded, None)) == 6
        assert await ids(loaded, None, namespace="nobody") == []
        await loaded.delete("docs", ids=["a"], namespace="tenant-2")
        assert await ids(loaded, None, namespace="tenant-2") == []
        assert "a" in await ids(loaded, None)

    async def test_delete_by_ids(self, loaded: VectorStore) -> None:
        await loaded.delete("docs", ids=["a", "c", "missing"])
        assert await ids(loaded, None) == ["b", "d", "e", "f"]
        await loaded.delete("docs", ids=[])
        assert (await loaded.stats("docs")).count == 4

    async def test_delete_by_filter(self, loaded: VectorStore) -> None:
        await loaded.delete("docs", where={"year": {"$lt": 2021}})
        assert await ids(loaded, None) == ["b", "c", "e"]
        await loaded.delete("docs", ids=["b", "c"], where={"source": "faq"})
        assert await ids(loaded, None) == ["c", "e"]
        with pytest.raises(ValueError, match="ids or a filter"):
            await loaded.delete("docs")

    async def test_include_vectors(self, loaded: VectorStore) -> None:
        hits = await loaded.search("docs", Q, top_k=2, include_vectors=True)
        assert hits[0].vector == pytest.approx(tuple(unit(1, 0, 0)), abs=1e-5)
        assert hits[1].vector == pytest.approx(tuple(unit(1, 0.2, 0)), abs=1e-5)

    async def test_reupsert_replaces(self, loaded: VectorStore) -> None:
        await loaded.upsert("docs", [VectorRecord("f", [0.0, -1.0, 0.0], "new f", {"v": 2})])
        hits = await loaded.search("docs", [0.0, -1.0, 0.0], top_k=1)
        assert (hits[0].id, hits[0].text, dict(hits[0].metadata)) == ("f", "new f", {"v": 2})
        assert (await loaded.stats("docs")).count == 6

    async def test_records_are_checked(self, loaded: VectorStore) -> None:
        with pytest.raises(VectorStoreError, match="2 dimensions"):
            await loaded.upsert("docs", [VectorRecord("x", [1.0, 0.0])])
        with pytest.raises(VectorStoreError, match="reserved"):
            await loaded.upsert("docs", [VectorRecord("x", Q, None, {"_llmo_ns": "y"})])
        with pytest.raises(VectorStoreError, match="twice"):
            await loaded.upsert("docs", [VectorRecord("x", Q), VectorRecord("x", Q)])
        with pytest.raises(VectorStoreError, match="query vector has 2"):
            await loaded.search("docs", [1.0, 0.0])

    async def test_unfilterable_value_is_refused_before_the_store(
        self, loaded: VectorStore
    ) -> None:
        with pytest.raises(ValueError, match=r"unknown operator '\$regex'"):
            await loaded.search("docs", Q, where={"source": {"$regex": "f.*"}})

    async def test_batches_beyond_one_call(self, store: VectorStore) -> None:
        await store.create_index("many", 2)
        records = [
            VectorRecord(f"r{i}", [math.cos(i / 1000), math.sin(i / 1000)], None, {"i": i})
            for i in range(1200)
        ]
        assert await store.upsert("many", records) == 1200
        assert (await store.stats("many")).count == 1200
        hits = await store.search("many", [1.0, 0.0], top_k=3, where={"i": {"$gte": 600}})
        assert [h.id for h in hits] == ["r600", "r601", "r602"]
        assert hits[0].text is None

    async def test_scan_returns_records_by_filter_and_namespace(self, loaded: VectorStore) -> None:
        everything = await loaded.scan("docs")
        assert sorted(r.id for r in everything) == ["a", "b", "c", "d", "e", "f"]
        by_id = {r.id: r for r in everything}
        assert by_id["c"].text == "text of c"
        assert dict(by_id["c"].metadata) == {
            "source": "blog",
            "year": 2022,
            "lang": "en",
            "ok": True,
        }
        faq = await loaded.scan("docs", where={"source": "faq"})
        assert sorted(r.id for r in faq) == ["a", "b"]
        await loaded.upsert("docs", [VectorRecord("z", Q, "other ns", {"source": "faq"})], "ns")
        assert [r.id for r in await loaded.scan("docs", {"source": "faq"}, "ns")] == ["z"]
        assert sorted(r.id for r in await loaded.scan("docs", {"source": "faq"})) == ["a", "b"]
        assert await loaded.scan("docs", where={"source": "nowhere"}) == []
        with pytest.raises(IndexNotFoundError):
            await loaded.scan("missing")
