"""Combining result lists: hybrid (vector + keyword) and multi-index search.

Hybrid search fuses ranked lists with weighted Reciprocal Rank Fusion (Cormack et al., 2009):
a record scores `sum(weight_i / (k + rank_i))` over the lists it appears in (ranks from 1,
k = 60 by default). Only ranks count, so cosine similarities and BM25 scores, which live on
different scales, never have to be compared.

Multi-index search normalises each index's scores to [0, 1] (min-max within the list; a list
whose scores are all equal maps to 1.0), so an index whose metric or scorer produces larger
numbers does not crowd out the others, then merges: a passage found in several indexes
(same text, or the same id when there is no text) keeps its best normalised score and lists
every index it came from.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from llm_orchestrator.vectordb.base import SearchHit

RRF_K = 60


def reciprocal_rank_fusion(
    lists: Sequence[Sequence[SearchHit]],
    weights: Sequence[float] | None = None,
    k: int = RRF_K,
) -> list[SearchHit]:
    """One list ordered by fused score (ties keep first-seen order); records are matched by id
    and keep the text/metadata/vector of their first appearance."""
    if weights is None:
        weights = [1.0] * len(lists)
    if len(weights) != len(lists):
        raise ValueError(f"{len(lists)} result lists but {len(weights)} weights")
    if k < 1:
        raise ValueError(f"rrf k must be at least 1, got {k}")
    scores: dict[str, float] = {}
    first: dict[str, SearchHit] = {}
    for hits, weight in zip(lists, weights, strict=True):
        for rank, hit in enumerate(hits, start=1):
            scores[hit.id] = scores.get(hit.id, 0.0) + weight / (k + rank)
            first.setdefault(hit.id, hit)
    order = sorted(scores, key=lambda i: -scores[i])  # sorted() is stable
    return [replace(first[i], score=scores[i]) for i in order]


def normalise(hits: Sequence[SearchHit]) -> list[SearchHit]:
    """Scores min-max scaled to [0, 1] within the list (all equal -> 1.0)."""
    if not hits:
        return []
    low = min(h.score for h in hits)
    high = max(h.score for h in hits)
    span = high - low
    return [replace(h, score=(h.score - low) / span if span > 0 else 1.0) for h in hits]


@dataclass(slots=True)
class MergedHit:
    hit: SearchHit
    indexes: list[str] = field(default_factory=list)


def _identity(hit: SearchHit) -> str:
    if hit.text:
        return "t:" + hashlib.sha256(" ".join(hit.text.split()).encode()).hexdigest()
    return "i:" + hit.id


def merge_indexes(per_index: Sequence[tuple[str, Sequence[SearchHit]]]) -> list[MergedHit]:
    """Normalise each index's list, merge duplicates, order by score (best first)."""
    merged: dict[str, MergedHit] = {}
    for index, hits in per_index:
        for hit in normalise(hits):
            key = _identity(hit)
            seen = merged.get(key)
            if seen is None:
                merged[key] = MergedHit(hit, [index])
                continue
            if index not in seen.indexes:
                seen.indexes.append(index)
            if hit.score > seen.hit.score:
                seen.hit = hit
                seen.indexes.remove(index)
                seen.indexes.insert(0, index)
    return sorted(merged.values(), key=lambda m: -m.hit.score)
