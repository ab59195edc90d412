"""`llm-orchestrator ingest` and `llm-orchestrator index ...`: build and manage vector indexes.

    llm-orchestrator ingest docs/ --index docs [--store default] [--embedder local]
        [--chunker paragraph] [--chunk-size 1000] [--chunk-overlap 150] [--prune]
    llm-orchestrator index list | stats NAME | delete NAME [--source S ...] [--yes]

`ingest` is the CLI face of `ingest/pipeline.py`: a progress bar over files on stderr (when it
is a terminal), a summary table on stdout. Exit codes: 0 everything ingested; 1 some files
failed (the others were ingested) or a store/embedder call failed; 2 bad options, an unknown
store, embedder, chunker or index, a missing path, or an index built with another embedder.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from llm_orchestrator.cli.common import EXIT_FAILED, EXIT_INVALID, err, fail, settings_from_cli
from llm_orchestrator.embeddings.registry import EmbedderRegistry
from llm_orchestrator.exceptions import (
    ConfigurationError,
    CredentialsError,
    OrchestratorError,
)
from llm_orchestrator.ingest.cache import EmbeddingCache
from llm_orchestrator.ingest.chunkers import CHUNKERS
from llm_orchestrator.ingest.pipeline import (
    SOURCE_KEY,
    IngestReport,
    delete_document,
    ingest,
)
from llm_orchestrator.orchestrator import close_shared_clients
from llm_orchestrator.settings import Settings
from llm_orchestrator.vectordb.base import INDEX_EMBEDDER, IndexNotFoundError, VectorStore
from llm_orchestrator.vectordb.registry import DEFAULT_STORE, VectorStoreRegistry

T = TypeVar("T")

out = Console(highlight=False, soft_wrap=True)

index_app = typer.Typer(help="List, inspect and delete vector indexes.", no_args_is_help=True)

StoreOption = Annotated[
    str, typer.Option("--store", "-s", help="Vector store name (see vector_stores in config).")
]


class _UsageError(Exception):
    """A problem with the command line: exit 2 with this message."""


def _store(settings: Settings, name: str) -> VectorStore:
    registry = VectorStoreRegistry.from_settings(settings)
    problem = registry.check(name)
    if problem is not None:
        raise _UsageError(f"--store {name}: {problem}")
    return registry.get(name)


def _call(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine with the shared clients closed on the same loop; errors -> exit codes."""

    async def main() -> T:
        try:
            return await make()
        finally:
            await close_shared_clients()

    try:
        return asyncio.run(main())
    except _UsageError as exc:
        fail(str(exc))
    except IndexNotFoundError as exc:
        fail(f"{exc}; see `llm-orchestrator index list`")
    except (ConfigurationError, CredentialsError) as exc:
        fail(str(exc))
    except OrchestratorError as exc:
        fail(str(exc), EXIT_FAILED)


def ingest_command(
    paths: Annotated[
        list[Path], typer.Argument(help="Files or directories (.txt .md .html .pdf .json .jsonl).")
    ],
    index: Annotated[str, typer.Option("--index", "-x", help="Index to write.")],
    store: StoreOption = DEFAULT_STORE,
    embedder: Annotated[
        str | None,
        typer.Option(help="Embedder name; default: the one recorded with the index, else local."),
    ] = None,
    chunker: Annotated[
        str, typer.Option(help=f"How to split documents: {', '.join(CHUNKERS)}.")
    ] = "paragraph",
    chunk_size: Annotated[int, typer.Option(help="Chunk size in characters.")] = 1000,
    chunk_overlap: Annotated[int, typer.Option(help="Chunk overlap in characters.")] = 150,
    namespace: Annotated[str, typer.Option(help="Namespace inside the index.")] = "",
    prune: Annotated[
        bool, typer.Option("--prune", help="Delete chunks of files under PATHS that are gone.")
    ] = False,
    text_field: Annotated[
        str, typer.Option(help="JSON/JSONL field holding a record's text.")
    ] = "text",
    id_field: Annotated[
        str, typer.Option(help="JSON/JSONL field holding a record's id (its source suffix).")
    ] = "id",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Read, chunk, embed and index files; re-running writes only what changed."""
    if chunker not in CHUNKERS:
        fail(f"--chunker {chunker!r} is unknown; use one of: {', '.join(CHUNKERS)}")
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        fail(f"PATH {missing[0]} does not exist; give existing files or directories")
    settings = settings_from_cli()
    embedders = EmbedderRegistry(settings, configs=settings.embedders)

    async def run() -> IngestReport:
        vector_store = _store(settings, store)
        name = embedder or await _recorded_embedder(vector_store, index) or "local"
        problem = embedders.check(name)
        if problem is not None:
            raise _UsageError(f"--embedder {name}: {problem}")
        cache = EmbeddingCache.at_home(settings.home)
        progress = Progress(
            TextColumn("[bold]ingest[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=err,
            disable=quiet or not err.is_terminal,
            transient=True,
        )
        task = progress.add_task("", total=None)

        def on_progress(file: Path, done: int, total: int) -> None:
            progress.update(task, completed=done, total=total, description=escape(file.name))

        try:
            with progress:
                return await ingest(
                    paths,
                    store=vector_store,
                    index=index,
                    embedder_name=name,
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
        except ValueError as exc:  # chunker options, a path discover() refuses
            raise _UsageError(str(exc)) from exc
        finally:
            await cache.aclose()

    report = _call(run)
    _print_report(report, store)
    if report.failed:
        noun = "file" if len(report.errors) == 1 else "files"
        err.print(f"[red]{len(report.errors)} {noun} failed[/]; the others were ingested")
        raise typer.Exit(EXIT_FAILED)


async def _recorded_embedder(store: VectorStore, index: str) -> str | None:
    try:
        meta = await store.index_metadata(index)
    except IndexNotFoundError:
        return None
    name = meta.get(INDEX_EMBEDDER)
    return name if isinstance(name, str) else None


def _print_report(report: IngestReport, store: str) -> None:
    for error in report.errors:
        # reader errors already start with the file's name
        said = (
            error.message
            if error.message.startswith(error.file)
            else (f"{error.file}: {error.message}")
        )
        err.print(f"[red]✗[/] {escape(said)}")
    table = Table(title=f"ingest into {store}/{report.index}")
    table.add_column("")
    table.add_column("count", justify="right")
    rows = [
        ("files", report.files),
        ("documents", report.documents),
        ("added", report.added),
        ("updated", report.updated),
        ("unchanged", report.unchanged),
        ("pruned", report.pruned),
        ("empty (skipped)", report.skipped_empty),
        ("chunks written", report.chunks_written),
        ("chunks deleted", report.chunks_deleted),
        ("embedded", report.embedded),
        ("cache hits", report.cache_hits),
        ("failed files", len(report.errors)),
    ]
    for label, value in rows:
        table.add_row(label, str(value))
    out.print(table)


@index_app.command("list")
def list_indexes(store: StoreOption = DEFAULT_STORE) -> None:
    """Indexes of a store: records, vector size, metric and the embedder they were built with."""
    settings = settings_from_cli()

    async def run() -> list[tuple[str, str, str, str, str]]:
        vector_store = _store(settings, store)
        rows: list[tuple[str, str, str, str, str]] = []
        for name in await vector_store.list_indexes():
            info = await vector_store.stats(name)
            embedder = info.metadata.get(INDEX_EMBEDDER)
            rows.append(
                (name, str(info.count), str(info.dimension), info.metric, str(embedder or "-"))
            )
        return rows

    rows = _call(run)
    table = Table(title=f"indexes in {store}")
    for column in ("name", "count", "dimension", "metric", "embedder"):
        table.add_column(column, justify="right" if column in ("count", "dimension") else "left")
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    out.print(table)


@index_app.command("stats")
def index_stats(
    name: Annotated[str, typer.Argument(help="Index name.")],
    store: StoreOption = DEFAULT_STORE,
    namespace: Annotated[str, typer.Option(help="Namespace to count sources in.")] = "",
) -> None:
    """One index: records, vector size, metric, recorded metadata and sources."""
    settings = settings_from_cli()

    async def run() -> list[tuple[str, str]]:
        vector_store = _store(settings, store)
        info = await vector_store.stats(name)
        records = await vector_store.scan(name, namespace=namespace)
        sources = Counter(str(r.metadata.get(SOURCE_KEY, "")) for r in records)
        sources.pop("", None)
        rows = [
            ("name", info.name),
            ("store", store),
            ("count", str(info.count)),
            ("dimension", str(info.dimension)),
            ("metric", info.metric),
        ]
        rows += [(str(k), str(v)) for k, v in sorted(info.metadata.items())]
        rows.append((f"sources (namespace {namespace!r})", str(len(sources))))
        return rows

    rows = _call(run)
    table = Table(title=f"index {name}", show_header=False)
    table.add_column("field")
    table.add_column("value")
    for key, value in rows:
        table.add_row(escape(key), escape(value))
    out.print(table)


@index_app.command("delete")
def index_delete(
    name: Annotated[str, typer.Argument(help="Index name.")],
    store: StoreOption = DEFAULT_STORE,
    source: Annotated[
        list[str] | None,
        typer.Option("--source", help="Delete only this source's chunks (repeatable)."),
    ] = None,
    namespace: Annotated[str, typer.Option(help="Namespace of the sources.")] = "",
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a whole index, or every chunk of the given sources."""
    settings = settings_from_cli()
    sources = list(source or [])
    what = (
        f"all chunks of {len(sources)} source(s) in index '{name}'"
        if sources
        else f"index '{name}' and everything in it"
    )
    if not yes and not typer.confirm(f"delete {what} (store {store})?", err=True):
        err.print("nothing deleted")
        raise typer.Exit(EXIT_FAILED)

    async def run() -> list[tuple[str, int]]:
        vector_store = _store(settings, store)
        if not sources:
            await vector_store.delete_index(name)
            return []
        await vector_store.stats(name)  # IndexNotFoundError before anything is deleted
        return [(s, await delete_document(vector_store, name, s, namespace)) for s in sources]

    deleted = _call(run)
    if not sources:
        out.print(f"deleted index {escape(name)} from store {escape(store)}")
        return
    empty = [s for s, count in deleted if count == 0]
    for src, count in deleted:
        out.print(f"{escape(src)}: {count} chunks deleted")
    if empty:
        err.print(
            f"[yellow]no chunks found for {len(empty)} source(s)[/]: "
            + escape(", ".join(empty))
            + " (see `llm-orchestrator index stats` for the index's sources)"
        )


__all__ = ["EXIT_INVALID", "index_app", "ingest_command"]
