"""Reciprocal Rank Fusion and multi-index merging."""

from __future__ import annotations

import pytest

from llm_orchestrator.vectordb.base import SearchHit
from llm_orchestrator.vectordb.fusion import merge_indexes, normalise, reciprocal_rank_fusion


def hits(*pairs: tuple[str, float], text: dict[str, str] | None = None) -> list[SearchHit]:
    return [SearchHit(i, s, (text or {}).get(i), {}) for i, s in pairs]


def test_rrf_scores_are_weighted_reciprocal_ranks() -> None:
    vector = hits(("a", 0.9), ("b", 0.8), ("c", 0.1))
    keyword = hits(("c", 12.0), ("a", 3.0))
    fused = reciprocal_rank_fusion([vector, keyword], k=60)
    assert [h.id for h in fused] == ["a", "c", "b"]
    assert fused[0].score == pytest.approx(1 / 61 + 1 / 62)
    assert fused[1].score == pytest.approx(1 / 63 + 1 / 61)
    assert fused[2].score == pytest.approx(1 / 62)
    # weights move the balance: keyword twice as important puts c first
    assert [h.id for h in reciprocal_rank_fusion([vector, keyword], [1, 2])][:1] == ["c"]
    # a zero weight reproduces the other list's order (ties keep first-seen order)
    assert [h.id for h in reciprocal_rank_fusion([vector, keyword], [1, 0])] == ["a", "b", "c"]
    assert [h.id for h in reciprocal_rank_fusion([vector, keyword], [0, 1])][:2] == ["c", "a"]


def test_rrf_keeps_the_first_appearance_and_checks_arguments() -> None:
    vector = [SearchHit("a", 0.9, "from vector", {"m": 1}, (1.0, 0.0))]
    keyword = [SearchHit("a", 7.0, "from keyword", {"m": 2})]
    [hit] = reciprocal_rank_fusion([vector, keyword])
    assert (hit.text, dict(hit.metadata), hit.vector) == ("from vector", {"m": 1}, (1.0, 0.0))
    with pytest.raises(ValueError, match="2 result lists but 1 weights"):
        reciprocal_rank_fusion([vector, keyword], [1.0])
    with pytest.raises(ValueError, match="at least 1"):
        reciprocal_rank_fusion([vector], k=0)
    assert reciprocal_rank_fusion([[], []]) == []


def test_normalise_min_max() -> None:
    assert [h.score for h in normalise(hits(("a", 3.0), ("b", 2.0), ("c", 1.0)))] == [1, 0.5, 0]
    assert [h.score for h in normalise(hits(("a", 0.3), ("b", 0.3)))] == [1.0, 1.0]
    assert normalise([]) == []


def test_merge_normalises_per_index_and_merges_duplicates_by_text() -> None:
    texts = {"x1": "Same  passage", "y9": "Same passage", "x2": "other"}
    small = hits(("x1", 0.50), ("x2", 0.40), ("x3", 0.30), text=texts)  # cosine-like
    large = hits(("y9", 40.0), ("y8", 10.0), text=texts)  # bm25-like scale
    merged = merge_indexes([("faq", small), ("guide", large)])
    ids = [(m.hit.id, m.indexes) for m in merged]
    # x1 and y9 carry the same text (whitespace aside): one result, found in both
    assert ids[0] in (("x1", ["faq", "guide"]), ("y9", ["guide", "faq"]))
    assert merged[0].hit.score == 1.0
    assert [m.hit.id for m in merged[1:]] == ["x2", "x3", "y8"]
    assert [m.hit.score for m in merged[1:]] == pytest.approx([0.5, 0.0, 0.0])
    # without text, records merge by id
    no_text = merge_indexes([("a", hits(("r", 1.0), ("s", 0.0))), ("b", hits(("r", 5.0)))])
    assert [(m.hit.id, sorted(m.indexes)) for m in no_text] == [("r", ["a", "b"]), ("s", ["a"])]
