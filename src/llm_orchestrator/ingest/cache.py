"""An on-disk embedding cache, so the same text is never embedded (or paid for) twice.

Rows live in SQLite (WAL) at `<LLMO_HOME>/cache/embeddings.sqlite`, keyed by
(model key, sha256 of the text); the value is the vector as a float32 blob plus its
dimension. Every SQLite call runs on one dedicated worker thread that owns the connection,
so the event loop never blocks on disk and the connection is never shared between threads.

The model key (`model_key`) is a hash of what decides the vectors: the embedder type, the
model, the requested dimensions and the resolved base URL. It deliberately leaves out what
does not (API key, timeouts, rate limits, the instance name), unlike the registry's
`_fingerprint`, which identifies a client: rotating a key must not throw the cache away.

`CachedEmbed` is the embed function ingestion (and the semantic chunker) uses: it looks every
text up, embeds only the distinct misses through `embed_batched`, stores them, and returns
one vector per input in input order. Hits and misses are counted.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from array import array
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from llm_orchestrator.embeddings.base import Embedder
from llm_orchestrator.embeddings.batching import embed_batched
from llm_orchestrator.embeddings.registry import EmbedderRegistry
from llm_orchestrator.exceptions import ProviderResponseError, StateError

T = TypeVar("T")

#: texts looked up per SELECT (SQLite's bound-parameter limit is 32766 in 3.32+)
_LOOKUP_CHUNK = 500

_SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
    model_key TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    dimension INTEGER NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (model_key, text_hash)
) WITHOUT ROWID
"""


def cache_path(home: Path) -> Path:
    return home / "cache" / "embeddings.sqlite"


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def model_key(
    registry: EmbedderRegistry, name: str, model: str, dimensions: int | None = None
) -> str:
    """What identifies the vectors embedder `name` makes with `model` (see the docstring)."""
    cfg = registry.config(name) if name not in registry.instances else None
    if cfg is not None:
        ident: dict[str, object] = {
            "type": cfg.type,
            "base_url": cfg.resolve_base_url(),
        }
    else:  # an application-supplied instance: only its name identifies it
        ident = {"instance": name}
    ident.update(model=model, dimensions=dimensions)
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def _to_blob(vector: Sequence[float]) -> bytes:
    return array("f", vector).tobytes()


def _from_blob(blob: bytes) -> list[float]:
    values = array("f")
    values.frombytes(blob)
    return values.tolist()


def as_float32(vector: Sequence[float]) -> list[float]:
    """The vector as the cache returns it, so a hit and a miss give identical values."""
    return _from_blob(_to_blob(vector))


class EmbeddingCache:
    """Vectors by (model key, text) in one SQLite file; all I/O on one worker thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    @classmethod
    def at_home(cls, home: Path) -> EmbeddingCache:
        return cls(cache_path(home))

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmo-embcache")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._with_conn, fn)

    def _with_conn(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            if self._conn is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute(_SCHEMA)
                conn.commit()
                self._conn = conn
            return fn(self._conn)
        except (sqlite3.Error, OSError) as exc:
            raise StateError(
                f"embedding cache {self.path}: {exc}; delete the file to start an empty cache"
            ) from exc

    async def get_many(self, key: str, texts: Sequence[str]) -> list[list[float] | None]:
        """One vector (or None: not cached) per text, in input order."""
        hashes = [text_hash(t) for t in texts]
        distinct = list(dict.fromkeys(hashes))

        def lookup(conn: sqlite3.Connection) -> dict[str, list[float]]:
            found: dict[str, list[float]] = {}
            for start in range(0, len(distinct), _LOOKUP_CHUNK):
                part = distinct[start : start + _LOOKUP_CHUNK]
                marks = ",".join("?" * len(part))
                rows = conn.execute(
                    "SELECT text_hash, dimension, vector FROM embeddings "
                    f"WHERE model_key = ? AND text_hash IN ({marks})",
                    [key, *part],
                )
                for digest, dimension, blob in rows:
                    vector = _from_blob(blob)
                    if len(vector) == dimension:  # a torn row is a miss, not an error
                        found[digest] = vector
            return found

        found = await self._call(lookup) if distinct else {}
        return [found.get(h) for h in hashes]

    async def put_many(
        self, key: str, texts: Sequence[str], vectors: Sequence[Sequence[float]]
    ) -> None:
        if len(texts) != len(vectors):
            raise ValueError(f"{len(texts)} texts but {len(vectors)} vectors")
        rows = [
            (key, text_hash(t), len(v), _to_blob(v)) for t, v in zip(texts, vectors, strict=True)
        ]

        def store(conn: sqlite3.Connection) -> None:
            with conn:
                conn.executemany(
                    "INSERT OR REPLACE INTO embeddings (model_key, text_hash, dimension, vector) "
                    "VALUES (?, ?, ?, ?)",
                    rows,
                )

        if rows:
            await self._call(store)

    async def count(self, key: str | None = None) -> int:
        def counted(conn: sqlite3.Connection) -> int:
            if key is None:
                row = conn.execute("SELECT count(*) FROM embeddings").fetchone()
            else:
                row = conn.execute(
                    "SELECT count(*) FROM embeddings WHERE model_key = ?", (key,)
                ).fetchone()
            return int(row[0])

        return await self._call(counted)

    async def aclose(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return

        def close(conn: sqlite3.Connection) -> None:
            conn.close()

        if self._conn is not None:
            await asyncio.get_running_loop().run_in_executor(executor, close, self._conn)
            self._conn = None
        executor.shutdown(wait=False)


class CachedEmbed:
    """An `EmbedFn` (texts -> unit vectors) that asks the cache first; counts hits/misses.

    `cache=None` embeds every call (still deduplicated within the call).
    """

    def __init__(
        self,
        embedder: Embedder,
        cache: EmbeddingCache | None,
        key: str,
        *,
        model: str,
        dimensions: int | None = None,
        batch_size: int = 100,
        max_concurrency: int = 4,
    ) -> None:
        self.embedder, self.cache, self.key = embedder, cache, key
        self.model, self.dimensions = model, dimensions
        self.batch_size, self.max_concurrency = batch_size, max_concurrency
        self.hits = 0
        #: distinct texts sent to the embedder
        self.misses = 0

    async def __call__(self, texts: Sequence[str]) -> list[list[float]]:
        texts = list(texts)
        cached: list[list[float] | None] = (
            await self.cache.get_many(self.key, texts)
            if self.cache is not None
            else [None] * len(texts)
        )
        missing = list(dict.fromkeys(t for t, v in zip(texts, cached, strict=True) if v is None))
        self.hits += sum(v is not None for v in cached)
        fresh: dict[str, list[float]] = {}
        if missing:
            responses = await embed_batched(
                self.embedder,
                missing,
                model=self.model,
                dimensions=self.dimensions,
                batch_size=self.batch_size,
                max_concurrency=self.max_concurrency,
            )
            vectors = [as_float32(v) for r in responses for v in r.vectors]
            if len(vectors) != len(missing):
                raise ProviderResponseError(
                    f"returned {len(vectors)} vectors for {len(missing)} texts",
                    provider=self.embedder.name,
                )
            self.misses += len(missing)
            if self.cache is not None:
                await self.cache.put_many(self.key, missing, vectors)
            fresh = dict(zip(missing, vectors, strict=True))
        return [v if v is not None else fresh[t] for t, v in zip(texts, cached, strict=True)]
