"""The ingestion pipeline against the embedded default Chroma store and the real local
embedder: idempotent re-ingestion, edits that replace exactly the changed chunks, pruning,
re-chunking from the cache, deletion by source, per-file errors, and `vector_search` text
queries on an ingested index."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from llm_orchestrator import Orchestrator, RunStatus, Settings
from llm_orchestrator.embeddings.base import Embedder, EmbeddingRequest, EmbeddingResponse
from llm_orchestrator.embeddings.registry import EmbedderRegistry
from llm_orchestrator.exceptions import ConfigurationError
from llm_orchestrator.ingest import EmbeddingCache, IngestReport, delete_document, ingest, update
from llm_orchestrator.ingest.pipeline import chunk_id
from llm_orchestrator.ingest.readers import ReaderError
from llm_orchestrator.vectordb.base import VectorStore
from llm_orchestrator.vectordb.registry import VectorStoreRegistry, close_all_vector_stores
from tests.ingest.test_cache import CountingEmbedder
from tests.support.modules import require_module

require_module("chromadb")
require_module("onnxruntime")


def para(topic: str, n: int = 3) -> str:
    """A paragraph of about 120-160 characters (one chunk at chunk_size=200)."""
    sentences = [
        f"{topic.capitalize()} is discussed in this paragraph with some detail.",
        f"The {topic} notes explain how the parts fit together.",
        f"Everything about {topic} is written down here.",
    ]
    return " ".join(sentences[:n])


FILES = {
    "alpha.md": "# Alpha\n\n" + "\n\n".join(para(t) for t in ("apples", "bananas", "cherries")),
    "guide/beta.md": "# Beta\n\n## Setup\n\n"
    + para("installation")
    + "\n\n## Usage\n\n"
    + para("commands"),
    "gamma.txt": "\n\n".join(para(t) for t in ("oceans", "rivers")),
}
#: chunks the corpus makes at chunk_size=200, overlap 0: one per paragraph
CHUNKS = 3 + 2 + 2


class Counting:
    """The real local embedder, counting the texts it embeds."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.default_model = inner.default_model
        self.max_batch_size = inner.max_batch_size
        self.texts: list[str] = []

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        self.texts.extend(request.texts)
        return await self.inner.embed(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class Env:
    def __init__(self, settings: Settings, corpus: Path) -> None:
        self.settings, self.corpus = settings, corpus
        self.store: VectorStore = VectorStoreRegistry.from_settings(settings).get("default")
        base = EmbedderRegistry(settings)
        self.local = Counting(base.get("local"))
        self.fake = CountingEmbedder()
        self.embedders = EmbedderRegistry(
            settings, instances={"local": self.local, "fake": self.fake}
        )
        self.cache = EmbeddingCache.at_home(settings.home)

    async def ingest(self, paths: list[Path] | None = None, **kw: Any) -> IngestReport:
        options: dict[str, Any] = {
            "store": self.store,
            "index": "docs",
            "embedder_name": "local",
            "embedders": self.embedders,
            "chunk_size": 200,
            "chunk_overlap": 0,
            "cache": self.cache,
        }
        options.update(kw)
        return await ingest(paths or [self.corpus], **options)

    async def records(self, index: str = "docs", **where: Any) -> dict[str, Any]:
        found = await self.store.scan(index, where=where or None)
        return {r.id: r for r in found}


@pytest.fixture
async def env(tmp_path: Path, settings: Settings) -> AsyncIterator[Env]:
    await close_all_vector_stores()
    corpus = tmp_path / "corpus"
    for name, text in FILES.items():
        (corpus / name).parent.mkdir(parents=True, exist_ok=True)
        (corpus / name).write_text(text, encoding="utf-8")
    made = Env(settings, corpus)
    yield made
    await made.cache.aclose()
    await close_all_vector_stores()


async def test_first_ingest_writes_every_chunk_with_its_metadata(env: Env) -> None:
    report = await env.ingest()
    assert (report.files, report.documents, report.added) == (3, 3, 3)
    assert report.chunks_written == report.embedded == len(env.local.texts) == CHUNKS
    assert report.created_index and not report.errors
    info = await env.store.stats("docs")
    assert (info.count, info.dimension, info.metric) == (CHUNKS, 384, "cosine")
    assert info.metadata == {"embedder": "local", "embedding_model": "all-MiniLM-L6-v2"}

    beta = sorted((await env.records(source="guide/beta.md")).values(), key=lambda r: r.id)
    by_position = {r.metadata["position"]: r for r in beta}
    assert set(by_position) == {0, 1}
    first = by_position[0]
    assert first.text == para("installation")
    assert first.metadata["headings"] == "Beta > Setup"
    assert first.metadata["title"] == "Beta"
    assert first.metadata["source"] == "guide/beta.md"
    assert first.metadata["ingest_root"] == str(env.corpus.resolve())
    assert isinstance(first.metadata["doc_hash"], str) and len(first.metadata["doc_hash"]) == 64
    assert first.id == chunk_id("guide/beta.md", para("installation"), 0)


async def test_reingesting_unchanged_files_writes_and_embeds_nothing(env: Env) -> None:
    await env.ingest()
    before = len(env.local.texts)
    report = await env.ingest()
    assert (report.unchanged, report.added, report.updated) == (3, 0, 0)
    assert report.chunks_written == report.chunks_deleted == report.embedded == 0
    assert len(env.local.texts) == before
    assert (await env.store.stats("docs")).count == CHUNKS


async def test_editing_one_paragraph_replaces_only_that_chunk(env: Env) -> None:
    await env.ingest()
    old = await env.records(source="alpha.md")
    env.local.texts.clear()
    alpha = env.corpus / "alpha.md"
    alpha.write_text(
        alpha.read_text(encoding="utf-8").replace(para("bananas"), para("blueberries")),
        encoding="utf-8",
    )
    report = await env.ingest()
    assert (report.updated, report.unchanged) == (1, 2)
    assert (report.chunks_written, report.chunks_deleted) == (1, 1)
    assert env.local.texts == [para("blueberries")]
    new = await env.records(source="alpha.md")
    assert len(new) == 3
    assert len(set(old) & set(new)) == 2
    texts = {r.text for r in new.values()}
    assert para("blueberries") in texts and para("bananas") not in texts
    assert (await env.store.stats("docs")).count == CHUNKS


async def test_a_repeated_paragraph_gets_its_own_id(env: Env) -> None:
    (env.corpus / "twice.txt").write_text(para("echo") + "\n\n" + para("echo"), "utf-8")
    report = await env.ingest()
    assert report.chunks_written == CHUNKS + 2
    assert report.embedded == CHUNKS + 1  # the same text is embedded once
    assert len(await env.records(source="twice.txt")) == 2


async def test_deleted_files_are_pruned_only_with_prune(env: Env) -> None:
    await env.ingest()
    (env.corpus / "gamma.txt").unlink()
    kept = await env.ingest()
    assert kept.pruned == 0 and kept.chunks_deleted == 0
    assert len(await env.records(source="gamma.txt")) == 2

    pruned = await env.ingest(prune=True)
    assert (pruned.pruned, pruned.chunks_deleted, pruned.chunks_written) == (1, 2, 0)
    assert await env.records(source="gamma.txt") == {}
    assert (await env.store.stats("docs")).count == CHUNKS - 2


async def test_prune_stays_inside_the_ingested_roots(env: Env, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "delta.txt").write_text(para("deltas"), encoding="utf-8")
    await env.ingest([env.corpus, other])
    (env.corpus / "alpha.md").unlink()
    report = await env.ingest([other], prune=True)  # alpha.md is not under `other`
    assert report.pruned == 0
    assert len(await env.records(source="alpha.md")) == 3
    report = await env.ingest([env.corpus / "gamma.txt"], prune=True)  # one named file
    assert report.pruned == 0
    assert len(await env.records(source="alpha.md")) == 3
    report = await env.ingest([env.corpus], prune=True)
    assert report.pruned == 1
    assert await env.records(source="alpha.md") == {}
    assert len(await env.records(source="delta.txt")) == 1


async def test_removed_jsonl_records_are_pruned_for_a_named_file(env: Env) -> None:
    data = env.corpus / "faq.jsonl"
    lines = [f'{{"id": "q{i}", "text": "{para(t)}", "lang": "en"}}' for i, t in enumerate("xyz")]
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = await env.ingest([data])
    assert report.documents == 3
    record = next(iter((await env.records(source="faq.jsonl#q1")).values()))
    assert record.metadata["lang"] == "en"
    data.write_text("\n".join([lines[0], lines[2]]) + "\n", encoding="utf-8")
    report = await env.ingest([data], prune=True)
    assert (report.unchanged, report.pruned, report.chunks_deleted) == (2, 1, 1)
    assert await env.records(source="faq.jsonl#q1") == {}


async def test_rechunking_reuses_cached_embeddings(env: Env) -> None:
    first = await env.ingest()
    # another index, another chunk size that cuts the same paragraphs: all from the cache
    again = await env.ingest(index="docs-180", chunk_size=180)
    assert again.chunks_written == first.chunks_written
    assert (again.embedded, again.cache_hits) == (0, CHUNKS)
    assert len(env.local.texts) == CHUNKS
    # packing two paragraphs per chunk makes new texts; only those are embedded
    env.local.texts.clear()
    packed = await env.ingest(index="docs-400", chunk_size=400)
    assert packed.embedded == len(env.local.texts) > 0
    assert all("\n\n" in t for t in env.local.texts)
    assert packed.embedded + packed.cache_hits == packed.chunks_written


async def test_delete_document_and_update_by_source(env: Env) -> None:
    await env.ingest()
    assert await delete_document(env.store, "docs", "guide/beta.md") == 2
    assert await delete_document(env.store, "docs", "guide/beta.md") == 0
    assert await env.records(source="guide/beta.md") == {}
    assert (await env.store.stats("docs")).count == CHUNKS - 2

    beta = env.corpus / "guide" / "beta.md"
    report = await update(
        beta,
        env.corpus,
        store=env.store,
        index="docs",
        embedder_name="local",
        embedders=env.embedders,
        chunk_size=200,
        chunk_overlap=0,
        cache=env.cache,
    )
    assert (report.added, report.chunks_written, report.embedded) == (1, 2, 0)
    assert len(await env.records(source="guide/beta.md")) == 2


async def test_an_emptied_file_loses_its_chunks(env: Env) -> None:
    await env.ingest()
    (env.corpus / "gamma.txt").write_text("  \n", encoding="utf-8")
    report = await env.ingest()
    assert (report.skipped_empty, report.chunks_deleted, report.documents) == (1, 2, 2)
    assert await env.records(source="gamma.txt") == {}


async def test_an_index_built_with_another_embedder_is_refused(env: Env) -> None:
    await env.ingest()
    with pytest.raises(ConfigurationError) as caught:
        await env.ingest(embedder_name="fake")
    message = str(caught.value)
    assert "'local'" in message and "'fake'" in message
    assert "--embedder local" in message and "new index" in message
    assert env.fake.requests == []


async def test_a_bad_file_is_reported_and_the_others_are_ingested(env: Env) -> None:
    (env.corpus / "broken.jsonl").write_text('{"text": "fine line"}\n{not json\n', "utf-8")
    report = await env.ingest()
    assert [e.file for e in report.errors] == ["broken.jsonl"]
    assert "broken.jsonl" in report.errors[0].message
    assert report.failed and report.files == 4 and report.documents == 3
    assert (await env.store.stats("docs")).count == CHUNKS


async def test_bad_options_and_paths_raise_before_anything_is_written(env: Env) -> None:
    with pytest.raises(ReaderError, match="missing"):
        await env.ingest([env.corpus / "missing"])
    with pytest.raises(ValueError, match="overlap"):
        await env.ingest(chunk_size=100, chunk_overlap=100)
    assert await env.store.list_indexes() == []


async def test_progress_is_reported_per_file(env: Env) -> None:
    seen: list[tuple[str, int, int]] = []
    await env.ingest(on_progress=lambda f, done, total: seen.append((f.name, done, total)))
    assert seen == [("alpha.md", 1, 3), ("gamma.txt", 2, 3), ("beta.md", 3, 3)]


async def test_vector_search_text_queries_work_on_an_ingested_index(
    env: Env, tmp_path: Path
) -> None:
    await env.ingest()
    workflow = tmp_path / "search.yaml"
    workflow.write_text(
        """
name: search
inputs: {q: {type: string}}
steps:
  - id: search
    type: vector_search
    index: docs
    query: "{{ inputs.q }}"
    top_k: 2
""",
        encoding="utf-8",
    )
    orch = Orchestrator(env.settings)
    try:
        result = await orch.run(workflow, {"q": "how do I install it?"})
    finally:
        await orch.aclose()
    assert result.status is RunStatus.COMPLETED, result.to_dict()
    hits = result.steps["search"].outputs["results"]
    assert hits[0]["metadata"]["source"] == "guide/beta.md"
    assert hits[0]["text"] == para("installation")


async def test_namespaces_are_ingested_and_pruned_separately(env: Env) -> None:
    await env.ingest(namespace="a")
    other = await env.ingest(namespace="b")
    assert (other.added, other.chunks_written) == (3, CHUNKS)
    assert (other.embedded, other.cache_hits) == (0, CHUNKS)  # same texts: from the cache
    assert (await env.ingest(namespace="b")).unchanged == 3
    (env.corpus / "gamma.txt").unlink()
    report = await env.ingest(namespace="a", prune=True)
    assert report.pruned == 1
    in_a = await env.store.scan("docs", where={"source": "gamma.txt"}, namespace="a")
    in_b = await env.store.scan("docs", where={"source": "gamma.txt"}, namespace="b")
    assert (len(in_a), len(in_b)) == (0, 2)


async def test_text_field_picks_the_json_field_to_embed(env: Env) -> None:
    data = env.corpus / "items.json"
    data.write_text(f'[{{"id": "i1", "body": "{para("kites")}", "n": 3}}]', encoding="utf-8")
    report = await env.ingest([data], text_field="body")
    assert report.documents == 1 and not report.errors
    (record,) = (await env.records(source="items.json#i1")).values()
    assert record.text == para("kites")
    assert record.metadata["n"] == 3
