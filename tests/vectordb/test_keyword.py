"""The SQLite FTS5 keyword mirror: BM25 ranking, filters, namespaces, writes and rebuilds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llm_orchestrator.vectordb.base import IndexNotFoundError, VectorRecord
from llm_orchestrator.vectordb.chroma import ChromaStore
from llm_orchestrator.vectordb.keyword import KeywordIndex, KeywordMirror, match_expression
from tests.vectordb.contract import docs

TEXTS = {
    "a": "Checkpoints are written after every step so a crashed run continues.",
    "b": "The retry policy backs off exponentially between attempts.",
    "c": "Resume a crashed run with the recover command; completed steps are not repeated.",
    "d": "Vector stores keep embeddings; Chroma is the embedded default store.",
    "e": "Budgets stop a run when its cost exceeds the limit.",
    "f": "Webhook actions send an Idempotency-Key header so receivers drop duplicates.",
}


def records() -> list[VectorRecord]:
    return [
        VectorRecord(r.id, r.vector, TEXTS[r.id], r.metadata)
        for r in docs()  # same metadata as the store contract suite
    ]


@pytest.fixture
async def mirror(tmp_path: Path) -> Any:
    store = KeywordMirror(ChromaStore(tmp_path / "chroma"), KeywordIndex(tmp_path / "kw.sqlite"))
    await store.create_index("docs", 3)
    await store.upsert("docs", records())
    yield store
    await store.aclose()


def test_match_expression_ors_words_without_stopwords_or_syntax() -> None:
    assert match_expression("How do I resume a crashed run?") == '"resume" OR "crashed" OR "run"'
    assert match_expression('NEAR("x") AND -y*') == '"near" OR "x" OR "y"'
    assert match_expression("the, of and?!") is None
    assert match_expression("run run RUN") == '"run"'


async def test_bm25_ranks_by_shared_rare_terms(mirror: KeywordMirror) -> None:
    hits = await mirror.keyword_search("docs", "how do I resume a crashed run?", top_k=5)
    ids = [h.id for h in hits]
    # c has resume+crashed+run, a has crashed+run(s), e has run: OR semantics, ranked
    assert ids[:2] == ["c", "a"] and set(ids) == {"a", "c", "e"}
    assert hits[0].score > hits[1].score > 0
    assert hits[0].text == TEXTS["c"] and dict(hits[0].metadata)["source"] == "blog"
    # Porter stemming: "checkpointing" matches "Checkpoints", "resumes" matches "Resume"
    stemmed = await mirror.keyword_search("docs", "checkpointing resumes", top_k=5)
    assert sorted(h.id for h in stemmed) == ["a", "c"]
    assert await mirror.keyword_search("docs", "what is it?", top_k=5) == []
    assert await mirror.keyword_search("docs", "kubernetes", top_k=5) == []


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ({"source": "faq"}, ["a", "b"]),
        ({"source": {"$ne": "docs"}}, ["a", "b", "c", "d"]),
        ({"year": {"$gte": 2020}}, ["b", "c", "d", "e"]),
        ({"year": {"$gte": 2019, "$lt": 2022}}, ["a", "b", "d"]),
        ({"lang": {"$in": ["de", "fr"]}}, ["b", "d", "f"]),
        ({"lang": {"$nin": ["de", "fr"]}}, ["a", "c", "e"]),
        ({"ok": True}, ["a", "c", "d", "f"]),
        ({"ok": {"$ne": True}}, ["b", "e"]),
        ({"$or": [{"source": "faq"}, {"lang": "fr"}]}, ["a", "b", "d"]),
        ({"$or": [{"year": {"$lt": 2019}}, {"$and": [{"ok": False}, {"lang": "en"}]}]}, ["e", "f"]),
        ({"missing": "x"}, []),
    ],
)
async def test_filters_match_the_store_semantics(
    mirror: KeywordMirror, where: dict[str, Any], expected: list[str]
) -> None:
    every_word = " ".join(TEXTS.values())
    hits = await mirror.keyword_search("docs", every_word, top_k=10, where=where)
    assert sorted(h.id for h in hits) == expected
    vector_hits = await mirror.search("docs", [1.0, 0.0, 0.0], top_k=10, where=where)
    assert sorted(h.id for h in vector_hits) == expected


async def test_writes_are_mirrored(mirror: KeywordMirror) -> None:
    await mirror.upsert("docs", [VectorRecord("b", [0.0, 1.0, 0.0], "kubernetes pods", {})])
    assert [h.id for h in await mirror.keyword_search("docs", "kubernetes")] == ["b"]
    assert await mirror.keyword_search("docs", "exponentially") == []  # old text replaced
    await mirror.delete("docs", ids=["b"])
    assert await mirror.keyword_search("docs", "kubernetes") == []
    await mirror.delete("docs", where={"source": "blog"})
    assert {h.id for h in await mirror.keyword_search("docs", "crashed run")} == {"a", "e"}
    assert (await mirror.stats("docs")).count == 3


async def test_namespaces_are_separate(mirror: KeywordMirror) -> None:
    await mirror.upsert("docs", [VectorRecord("z", [0.0, 0.0, 1.0], "crashed tenant", {})], "t2")
    assert [h.id for h in await mirror.keyword_search("docs", "tenant", namespace="t2")] == ["z"]
    assert await mirror.keyword_search("docs", "tenant") == []
    await mirror.delete("docs", ids=["z"], namespace="t2")
    assert await mirror.keyword_search("docs", "tenant", namespace="t2") == []
    # deleting in one namespace leaves the other alone
    assert {h.id for h in await mirror.keyword_search("docs", "crashed")} == {"a", "c"}


async def test_delete_index_clears_the_mirror(mirror: KeywordMirror) -> None:
    await mirror.delete_index("docs")
    assert await mirror.keywords.count("docs", "") == 0
    with pytest.raises(IndexNotFoundError):
        await mirror.keyword_search("docs", "crashed")


async def test_rebuilds_from_the_store_when_the_mirror_is_empty(tmp_path: Path) -> None:
    inner = ChromaStore(tmp_path / "chroma")
    await inner.create_index("docs", 3)
    await inner.upsert("docs", records())  # written without the mirror
    store = KeywordMirror(inner, KeywordIndex(tmp_path / "kw.sqlite"))
    try:
        hits = await store.keyword_search("docs", "idempotency duplicates", top_k=3)
        assert [h.id for h in hits] == ["f"]
        assert await store.keywords.count("docs", "") == 6
    finally:
        await store.aclose()


async def test_unknown_index_and_bad_filter(mirror: KeywordMirror) -> None:
    with pytest.raises(IndexNotFoundError):
        await mirror.keyword_search("nope", "crashed")
    with pytest.raises(ValueError, match=r"unknown operator '\$regex'"):
        await mirror.keyword_search("docs", "crashed", where={"source": {"$regex": "x"}})


async def test_mirror_survives_reopen(tmp_path: Path) -> None:
    first = KeywordIndex(tmp_path / "kw.sqlite")
    await first.upsert("docs", "", records())
    first.close()
    again = KeywordIndex(tmp_path / "kw.sqlite")
    try:
        assert [h.id for h in await again.search("docs", "webhook", 5)] == ["f"]
    finally:
        again.close()
