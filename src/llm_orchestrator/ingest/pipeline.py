"""Ingestion: files -> documents -> chunks -> (cached) embeddings -> a vector index.

    ingest(paths, store=..., index="docs", embedder_name="local", embedders=..., cache=...)

Idempotent by construction. A chunk's id is a hash of (document source, chunk text, how many
times that text occurred before in the document), so it depends on content only. For each
document the pipeline scans the index for the records of its source (`where={"source": ...}`)
and compares id sets: equal sets write nothing; otherwise the new ids are embedded and upserted
and the ids that are no longer produced are deleted, so editing one paragraph replaces exactly
the chunks that changed. Records that are kept keep the metadata they were written with
(`doc_hash` is the hash of the document version that wrote the chunk, `position` its place
then). Embeddings go through `CachedEmbed`: re-chunking or re-ingesting never embeds the same
text with the same model twice.

`prune=True` then deletes the chunks of documents that no longer exist: those whose
`ingest_root` (the absolute directory the source is relative to) is a directory given in
`paths` and whose source was not produced by this run (for a file given by itself, only the
sources of that file, e.g. removed JSONL records). Sources of files that failed to read are
never pruned.

A new index is created with the embedder's vector size, metric cosine, and the metadata
{"embedder": name, "embedding_model": model}, the same keys `vector_search` reads to embed a
text query. An existing index recorded with another embedder or model is refused.

A file that cannot be read or chunked is reported in `IngestReport.errors` and the others go
on; store and embedder failures stop the run (they would fail every file the same way).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_orchestrator.embeddings.registry import EmbedderRegistry
from llm_orchestrator.exceptions import ConfigurationError, MissingDependencyError
from llm_orchestrator.ingest.cache import CachedEmbed, EmbeddingCache, model_key
from llm_orchestrator.ingest.chunkers import Chunk, make_chunker
from llm_orchestrator.ingest.readers import Document, ReaderError, discover, read_file
from llm_orchestrator.vectordb.base import (
    INDEX_EMBEDDER,
    INDEX_MODEL,
    IndexNotFoundError,
    MetadataValue,
    StoredRecord,
    VectorRecord,
    VectorStore,
)

#: chunk metadata the pipeline writes (they win over a document's own metadata keys)
SOURCE_KEY, ROOT_KEY = "source", "ingest_root"

#: called after each file: (file, files done, files in total)
ProgressFn = Callable[[Path, int, int], None]


@dataclass(frozen=True, slots=True)
class FileError:
    file: str
    message: str


@dataclass(slots=True)
class IngestReport:
    index: str
    #: files read (or attempted)
    files: int = 0
    #: documents with text (JSON/JSONL files hold several)
    documents: int = 0
    #: documents whose chunks were already all in the index
    unchanged: int = 0
    #: documents new to the index
    added: int = 0
    #: documents whose chunks changed
    updated: int = 0
    #: sources deleted by --prune
    pruned: int = 0
    chunks_written: int = 0
    chunks_deleted: int = 0
    #: texts answered by the embedding cache
    cache_hits: int = 0
    #: distinct texts sent to the embedder (cache misses)
    embedded: int = 0
    #: documents with no text
    skipped_empty: int = 0
    created_index: bool = False
    errors: list[FileError] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.errors)


def chunk_id(source: str, text: str, occurrence: int) -> str:
    """Stable id of the `occurrence`-th (0-based) chunk with this text in this source."""
    payload = f"{source}\x00{occurrence}\x00{text}".encode()
    return hashlib.sha256(payload).hexdigest()[:32]


def chunk_records(
    document: Document, chunks: Sequence[Chunk], root: str
) -> list[tuple[str, str, dict[str, MetadataValue]]]:
    """(id, text, metadata) per chunk, in chunk order."""
    seen: Counter[str] = Counter()
    out: list[tuple[str, str, dict[str, MetadataValue]]] = []
    for chunk in chunks:
        occurrence = seen[chunk.text]
        seen[chunk.text] += 1
        meta: dict[str, MetadataValue] = dict(document.metadata)
        meta.update(
            {
                SOURCE_KEY: document.source,
                "position": chunk.position,
                "headings": " > ".join(chunk.headings),
                "doc_hash": document.content_hash,
                ROOT_KEY: root,
            }
        )
        if document.title:
            meta["title"] = document.title
        if chunk.page is not None:
            meta["page"] = chunk.page
        out.append((chunk_id(document.source, chunk.text, occurrence), chunk.text, meta))
    return out


def _relative(file: Path, root: Path) -> str:
    """The file's path under its root, as the readers make source ids."""
    for candidate, base in ((file, root), (file.resolve(), root.resolve())):
        try:
            return candidate.relative_to(base).as_posix()
        except ValueError:
            continue
    return file.name


def _source_file(source: str) -> str:
    """The file part of a source id ("data.jsonl#3" -> "data.jsonl")."""
    return source.split("#", 1)[0]


async def check_index_embedder(
    store: VectorStore, index: str, embedder_name: str, model: str
) -> bool:
    """True when the index exists (and matches); False when it does not exist yet."""
    try:
        meta = await store.index_metadata(index)
    except IndexNotFoundError:
        return False
    recorded, recorded_model = meta.get(INDEX_EMBEDDER), meta.get(INDEX_MODEL)
    if recorded is None:
        raise ConfigurationError(
            f"index '{index}' has no recorded embedder (it was written without one), so "
            "text queries could not use it; ingest into a new index (--index NAME)"
        )
    if recorded != embedder_name or (recorded_model not in (None, model)):
        raise ConfigurationError(
            f"index '{index}' was built with embedder '{recorded}' (model "
            f"'{recorded_model}'), not '{embedder_name}' (model '{model}'); use "
            f"--embedder {recorded} or a new index (--index NAME)"
        )
    return True


class _Run:
    """State of one ingest call."""

    def __init__(
        self,
        store: VectorStore,
        index: str,
        embed: CachedEmbed,
        embedder_name: str,
        namespace: str,
        report: IngestReport,
        exists: bool,
    ) -> None:
        self.store, self.index, self.embed = store, index, embed
        self.embedder_name, self.namespace, self.report = embedder_name, namespace, report
        self.exists = exists

    async def ensure_index(self, dimension: int) -> None:
        if self.exists:
            return
        metadata = {INDEX_EMBEDDER: self.embedder_name, INDEX_MODEL: self.embed.model}
        try:
            await self.store.create_index(self.index, dimension, "cosine", metadata)
        except ValueError as exc:  # e.g. a name the store does not accept
            raise ConfigurationError(f"--index {self.index}: {exc}") from exc
        self.exists = True
        self.report.created_index = True

    async def existing(self, where: Mapping[str, Any] | None) -> list[StoredRecord]:
        if not self.exists:
            return []
        return list(await self.store.scan(self.index, where=where, namespace=self.namespace))

    async def document(self, document: Document, chunks: Sequence[Chunk], root: str) -> None:
        report = self.report
        old = {r.id for r in await self.existing({SOURCE_KEY: document.source})}
        records = chunk_records(document, chunks, root)
        new_ids = {rid for rid, _t, _m in records}
        if not records:
            report.skipped_empty += 1
        else:
            report.documents += 1
        if new_ids == old:
            if records:
                report.unchanged += 1
            return
        fresh = [r for r in records if r[0] not in old]
        if fresh:
            vectors = await self.embed([text for _id, text, _m in fresh])
            await self.ensure_index(len(vectors[0]))
            await self.store.upsert(
                self.index,
                [
                    VectorRecord(id=rid, vector=vec, text=text, metadata=meta)
                    for (rid, text, meta), vec in zip(fresh, vectors, strict=True)
                ],
                namespace=self.namespace,
            )
            report.chunks_written += len(fresh)
        stale = sorted(old - new_ids)
        if stale:
            await self.store.delete(self.index, ids=stale, namespace=self.namespace)
            report.chunks_deleted += len(stale)
        if records:
            if old:
                report.updated += 1
            else:
                report.added += 1


async def _resolve(
    embedders: EmbedderRegistry, embedder_name: str, cache: EmbeddingCache | None
) -> CachedEmbed:
    embedder = await embedders.aget(embedder_name)
    model = embedder.default_model
    key = model_key(embedders, embedder_name, model)
    return CachedEmbed(embedder, cache, key, model=model)


async def ingest(
    paths: Sequence[Path],
    *,
    store: VectorStore,
    index: str,
    embedder_name: str,
    embedders: EmbedderRegistry,
    chunker: str = "paragraph",
    chunk_size: int = 1000,
    chunk_overlap: int = 150,
    namespace: str = "",
    prune: bool = False,
    cache: EmbeddingCache | None,
    text_field: str = "text",
    id_field: str = "id",
    on_progress: ProgressFn | None = None,
) -> IngestReport:
    """Bring `index` in line with the files under `paths` (see the module docstring).

    Raises ReaderError for a missing path, ValueError for bad chunker options,
    ConfigurationError for an embedder the index was not built with; file-level problems
    are in the report instead.
    """
    files = discover(paths)
    return await _ingest_files(
        files,
        scopes=_scopes(paths),
        store=store,
        index=index,
        embedder_name=embedder_name,
        embedders=embedders,
        chunker=chunker,
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        namespace=namespace,
        prune=prune,
        cache=cache,
        text_field=text_field,
        id_field=id_field,
        on_progress=on_progress,
    )


async def update(
    file: Path,
    root: Path,
    *,
    store: VectorStore,
    index: str,
    embedder_name: str,
    embedders: EmbedderRegistry,
    chunker: str = "paragraph",
    chunk_size: int = 1000,
    chunk_overlap: int = 150,
    namespace: str = "",
    cache: EmbeddingCache | None,
    text_field: str = "text",
    id_field: str = "id",
) -> IngestReport:
    """Re-ingest one file, its source taken relative to `root` (as a directory ingest would)."""
    return await _ingest_files(
        [(file, root)],
        scopes=[],
        store=store,
        index=index,
        embedder_name=embedder_name,
        embedders=embedders,
        chunker=chunker,
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        namespace=namespace,
        prune=False,
        cache=cache,
        text_field=text_field,
        id_field=id_field,
        on_progress=None,
    )


async def delete_document(store: VectorStore, index: str, source: str, namespace: str = "") -> int:
    """Delete every chunk of `source`; returns how many there were."""
    ids = [r.id for r in await store.scan(index, where={SOURCE_KEY: source}, namespace=namespace)]
    if ids:
        await store.delete(index, ids=ids, namespace=namespace)
    return len(ids)


#: (absolute root, the one file inside it, or None for the whole directory)
_Scope = tuple[str, str | None]


def _scopes(paths: Iterable[Path]) -> list[_Scope]:
    scopes: list[_Scope] = []
    for path in paths:
        if path.is_dir():
            scopes.append((str(path.resolve()), None))
        else:  # discover() makes a named file's parent its root
            scopes.append((str(path.parent.resolve()), path.name))
    return scopes


async def _ingest_files(
    files: Sequence[tuple[Path, Path]],
    *,
    scopes: Sequence[_Scope],
    store: VectorStore,
    index: str,
    embedder_name: str,
    embedders: EmbedderRegistry,
    chunker: str,
    chunk_size: int,
    chunk_overlap: int,
    namespace: str,
    prune: bool,
    cache: EmbeddingCache | None,
    text_field: str,
    id_field: str,
    on_progress: ProgressFn | None,
) -> IngestReport:
    embed = await _resolve(embedders, embedder_name, cache)
    splitter = make_chunker(chunker, size=chunk_size, overlap=chunk_overlap, embed=embed)
    exists = await check_index_embedder(store, index, embedder_name, embed.model)
    report = IngestReport(index=index)
    run = _Run(store, index, embed, embedder_name, namespace, report, exists)
    seen: set[tuple[str, str]] = set()  # (root, source) produced by this run
    failed: set[tuple[str, str]] = set()  # (root, file) that could not be read
    for done, (file, root) in enumerate(files, 1):
        report.files += 1
        root_key = str(root.resolve())
        relative = _relative(file, root)
        try:
            # a missing optional reader package (MissingDependencyError) fails this file only
            documents = read_file(file, root, text_field=text_field, id_field=id_field)
            chunked = [
                (doc, await splitter.split(doc) if doc.sections else []) for doc in documents
            ]
        except (ReaderError, MissingDependencyError, ValueError, OSError) as exc:
            # chunking errors of the embedder (ProviderError) are not caught: they stop the run
            report.errors.append(FileError(relative, str(exc)))
            failed.add((root_key, relative))
        else:
            for doc, chunks in chunked:
                seen.add((root_key, doc.source))
                await run.document(doc, chunks, root_key)
        if on_progress is not None:
            on_progress(file, done, len(files))
    if prune and run.exists:
        await _prune(run, scopes, seen, failed)
    report.cache_hits, report.embedded = embed.hits, embed.misses
    return report


async def _prune(
    run: _Run,
    scopes: Sequence[_Scope],
    seen: set[tuple[str, str]],
    failed: set[tuple[str, str]],
) -> None:
    by_source: dict[tuple[str, str], list[str]] = {}
    for record in await run.existing(None):
        root, source = record.metadata.get(ROOT_KEY), record.metadata.get(SOURCE_KEY)
        if isinstance(root, str) and isinstance(source, str):
            by_source.setdefault((root, source), []).append(record.id)
    for (root, source), ids in sorted(by_source.items()):
        file = _source_file(source)
        in_scope = any(root == r and (only is None or file == only) for r, only in scopes)
        if not in_scope or (root, source) in seen or (root, file) in failed:
            continue
        await run.store.delete(run.index, ids=ids, namespace=run.namespace)
        run.report.pruned += 1
        run.report.chunks_deleted += len(ids)
