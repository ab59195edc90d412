"""`upsert`, `vector_search` and `delete` run through the Orchestrator against the default
store (embedded Chroma under LLMO_HOME) and a configured Qdrant store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from llm_orchestrator import Orchestrator, RunStatus, Settings
from llm_orchestrator.orchestrator import validate_file
from llm_orchestrator.steps.vector import UpsertStepKind, VectorSearchStepKind
from llm_orchestrator.vectordb.registry import VectorStoreRegistry, close_all_vector_stores
from tests.support.modules import require_module

require_module("chromadb")


@pytest.fixture(autouse=True)
async def _fresh_stores() -> AsyncIterator[None]:
    await close_all_vector_stores()
    yield
    await close_all_vector_stores()


async def run(tmp_path: Path, settings: Settings, text: str, inputs: dict[str, Any]) -> Any:
    path = tmp_path / "wf.yaml"
    path.write_text(text, encoding="utf-8")
    orch = Orchestrator(settings)
    try:
        return await orch.run(path, inputs)
    finally:
        await orch.aclose()


RAG = """
name: rag
inputs:
  docs: {type: array}
  q: {type: array}
steps:
  - id: ingest
    type: upsert
    index: faq
    namespace: "{{ 'tenant-' ~ 1 }}"
    records: "{{ inputs.docs }}"
  - id: search
    type: vector_search
    depends_on: ingest
    index: faq
    namespace: tenant-1
    query: "{{ inputs.q }}"
    top_k: 2
    filter: {year: {$gte: 2020}}
  - id: forget
    type: delete
    depends_on: search
    index: faq
    namespace: tenant-1
    ids: ["{{ steps.search.results[0].id }}"]
  - id: again
    type: vector_search
    depends_on: forget
    index: faq
    namespace: tenant-1
    query: [1, 0, 0]
    include_metadata: false
"""

DOCS = [
    {"id": "a", "vector": [1, 0, 0], "text": "old a", "metadata": {"year": 2019}},
    {"id": "b", "vector": [0.9, 0.1, 0], "text": "b", "metadata": {"year": 2021}},
    {"id": "c", "vector": [0.5, 0.5, 0], "text": "c", "metadata": {"year": 2022}},
    {"id": 4, "vector": [0, 0, 1], "text": "far", "metadata": {"year": 2023}},
]


async def test_upsert_search_delete_on_the_default_store(
    tmp_path: Path, settings: Settings
) -> None:
    result = await run(tmp_path, settings, RAG, {"docs": DOCS, "q": [1, 0, 0]})
    assert result.status is RunStatus.COMPLETED, result.errors
    assert result.outputs["ingest"]["result"] == {
        "index": "faq",
        "namespace": "tenant-1",
        "upserted": 4,
        "created": True,
    }
    hits = result.outputs["search"]["results"]
    assert [h["id"] for h in hits] == ["b", "c"]
    assert hits[0]["text"] == "b" and hits[0]["metadata"] == {"year": 2021}
    assert hits[0]["score"] > hits[1]["score"]
    assert set(hits[0]) == {"id", "score", "text", "metadata", "index"}
    assert [h["id"] for h in result.outputs["again"]["results"]] == ["a", "c", "4"]
    assert all(h["metadata"] == {} for h in result.outputs["again"]["results"])
    # the default store lives under LLMO_HOME
    assert (settings.home / "vectors" / "chroma").is_dir()


async def test_configured_qdrant_store(tmp_path: Path) -> None:
    require_module("qdrant_client")
    settings = Settings(home=tmp_path / "home")
    registry = VectorStoreRegistry(
        {"q": {"type": "qdrant", "path": "vectors/qdrant"}}, settings.home
    )
    store = registry.get("q")
    await store.create_index("faq", 3, metadata={})
    # until Settings has `vector_stores`, a test reaches the store through the shared registry
    from llm_orchestrator.vectordb import registry as registry_module

    original = VectorStoreRegistry.from_settings
    try:
        registry_module.VectorStoreRegistry.from_settings = classmethod(  # type: ignore[method-assign]
            lambda cls, s: VectorStoreRegistry(
                {"q": {"type": "qdrant", "path": "vectors/qdrant"}}, s.home
            )
        )
        text = RAG.replace("index: faq", "index: faq\n    database: q")
        result = await run(tmp_path, settings, text, {"docs": DOCS, "q": [1, 0, 0]})
    finally:
        registry_module.VectorStoreRegistry.from_settings = original  # type: ignore[method-assign]
    assert result.status is RunStatus.COMPLETED, result.errors
    assert result.outputs["ingest"]["result"]["created"] is False
    assert [h["id"] for h in result.outputs["search"]["results"]] == ["b", "c"]
    assert [h["id"] for h in result.outputs["again"]["results"]] == ["a", "c", "4"]


def problems_of(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    return [str(p) for p in validate_file(path, Settings(home=tmp_path / "home"))]


def test_validation_catches_stores_filters_and_modes(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        """
name: bad
steps:
  - id: s1
    type: vector_search
    database: pinecone-prod
    index: faq
    query: [1, 0]
  - id: s2
    type: vector_search
    index: faq
    query: [1, 0]
    filter: {year: {$regex: "20.*"}}
  - id: s3
    type: vector_search
    index: faq
    query: [1, 0]
    mode: hybrid
  - id: s5
    type: vector_search
    index: faq
    query: hello
    hybrid: {k: 10}
  - id: s6
    type: vector_search
    index: [faq, faq]
    query: hello
  - id: s4
    type: delete
    index: faq
    filter: {$not: [{a: 1}]}
""",
    )
    text = "\n".join(problems)
    assert "unknown vector store 'pinecone-prod'; configured: default" in text
    assert "unknown operator '$regex'" in text
    assert "mode 'hybrid' needs a text query, not a vector" in text
    assert "hybrid settings have no effect with mode 'vector'" in text
    assert "the same index is listed twice" in text
    assert "unknown operator '$not'" in text
    assert len(problems) == 6, problems


def test_delete_needs_ids_or_filter(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        """
name: bad
steps:
  - id: d
    type: delete
    index: faq
""",
    )
    assert any("give `ids`, `filter`, or both" in p for p in problems), problems


async def test_text_query_without_a_recorded_embedder_fails_clearly(
    tmp_path: Path, settings: Settings
) -> None:
    text = """
name: text-query
steps:
  - id: ingest
    type: upsert
    index: faq
    records: [{id: a, vector: [1, 0], text: hello}]
  - id: search
    type: vector_search
    depends_on: ingest
    index: faq
    query: what is hello?
"""
    result = await run(tmp_path, settings, text, {})
    assert result.status is RunStatus.FAILED
    assert "a text query needs an embedder" in str(result.errors)


async def test_bad_records_name_the_record(tmp_path: Path, settings: Settings) -> None:
    text = """
name: bad-records
steps:
  - id: ingest
    type: upsert
    index: faq
    records: [{id: a, vector: [1, 0]}, {id: b, vectors: [1, 0]}]
"""
    result = await run(tmp_path, settings, text, {})
    assert result.status is RunStatus.FAILED
    assert "records[1] is invalid" in str(result.errors)


def test_kinds_are_registered() -> None:
    from llm_orchestrator.steps.registry import step_kinds

    kinds = step_kinds()
    assert kinds["vector_search"] is VectorSearchStepKind
    assert kinds["upsert"] is UpsertStepKind


async def test_text_query_uses_the_embedder_recorded_at_ingest(tmp_path: Path) -> None:
    from llm_orchestrator.embeddings.registry import close_all_embedders
    from llm_orchestrator.settings import ProviderSettings
    from tests.support.embedding_servers import serve

    for server in serve():
        settings = Settings(
            home=tmp_path / "home",
            providers={
                "emb": ProviderSettings(type="openai_compatible", base_url=f"{server.base_url}/v1")
            },
        )
        text = """
name: text-query
steps:
  - id: ingest
    type: upsert
    index: faq
    embedder: emb
    embedding_model: my-embedder
    records:
      - {id: near, vector: [5, 0, 1, 1, 1, 1, 1, 1], text: near}
      - {id: far, vector: [0, 5, 0, 0, 0, 0, 0, 0], text: far}
  - id: search
    type: vector_search
    depends_on: ingest
    index: faq
    query: hello
"""
        try:
            result = await run(tmp_path, settings, text, {})
        finally:
            await close_all_embedders()
        assert result.status is RunStatus.COMPLETED, result.errors
        hits = result.outputs["search"]["results"]
        assert [h["id"] for h in hits] == ["near", "far"]
        assert hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
        [(path, _headers, body)] = server.requests
        assert path == "/v1/embeddings"
        assert (body["model"], body["input"]) == ("my-embedder", ["hello"])


@pytest.mark.usefixtures("blockbuster")
async def test_default_store_never_blocks_the_event_loop(
    tmp_path: Path, settings: Settings
) -> None:
    result = await run(tmp_path, settings, RAG, {"docs": DOCS, "q": [1, 0, 0]})
    assert result.status is RunStatus.COMPLETED, result.errors


def test_named_store_and_embedder_from_the_config_file(tmp_path: Path) -> None:
    """`vector_stores:` and `embedders:` in llm-orchestrator.yaml name what steps use."""
    import json

    from typer.testing import CliRunner

    from llm_orchestrator.cli.main import app

    (tmp_path / "llm-orchestrator.yaml").write_text(
        "vector_stores:\n  kb: {type: qdrant, path: vectors/kb}\n"
        "embedders:\n  remote: {type: openai_compatible, base_url: 'http://127.0.0.1:9/v1'}\n",
        encoding="utf-8",
    )
    workflow = tmp_path / "kb.yaml"
    workflow.write_text(
        """
name: kb
steps:
  - id: put
    type: upsert
    database: kb
    index: notes
    records:
      - {id: x, vector: [1, 0], text: "on the x axis"}
      - {id: y, vector: [0, 1], text: "on the y axis"}
  - {id: find, type: vector_search, database: kb, index: notes, query: [0.1, 0.9],
     top_k: 1, depends_on: [put]}
""",
        encoding="utf-8",
    )
    runner = CliRunner()
    result = runner.invoke(app, ["run", str(workflow), "-q"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)["outputs"]["find"]["results"]
    assert [hit["id"] for hit in found] == ["y"]
    assert (tmp_path / "home" / "vectors" / "kb").is_dir()
    # an unknown store, and a configured embedder name, are checked before running
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\nsteps:\n  - {id: f, type: vector_search, database: nope, index: n,"
        " query: [1, 0]}\n  - {id: e, type: embed, provider: remote, input: hi}\n",
        encoding="utf-8",
    )
    checked = runner.invoke(app, ["validate", str(bad)])
    assert checked.exit_code == 2
    assert "nope" in checked.output
    assert "step 'e'" not in checked.output  # `remote` is a known, configured embedder
