"""Keyword (BM25) search for stores that have no full-text engine of their own.

Chroma, Qdrant, Pinecone and Weaviate stores are wrapped in a `KeywordMirror`: every write
that goes through it (upsert, delete, delete_index) is applied to the store first and then
mirrored into a SQLite FTS5 table next to it (`<LLMO_HOME>/vectors/keyword/<store>-<hash of
its configuration>.sqlite`).
`keyword_search` ranks with FTS5's `bm25()` (Porter-stemmed `unicode61` tokens), ORing the
query's terms, so a natural-language question matches every passage that shares a word with
it and the rarer shared words count most.

The mirror is local to the machine that writes. If it has nothing for an index that the
store does have records in (the index was filled before the mirror existed, or by another
machine), the first keyword search rebuilds it from `store.scan()`. Stores with their own
engine (pgvector: PostgreSQL full-text search) are not wrapped.

Filters use the portable syntax, translated to `json_extract` over the stored metadata;
a record without the field never matches a condition on it (as in the stores).
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from llm_orchestrator.vectordb.base import (
    IndexInfo,
    Metric,
    SearchHit,
    StoredRecord,
    VectorRecord,
    VectorStore,
    VectorStoreError,
)
from llm_orchestrator.vectordb.filters import And, Condition, Node, Or, parse_filter

T = TypeVar("T")

_SQL_OPS = {"$eq": "=", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}

#: very common English words; BM25 would weight them near zero anyway, dropping them keeps
#: a question from matching every passage in the corpus
_STOPWORDS_TEXT = """a about above after again all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers him his how i if in into is it its itself
    just me more most my no nor not now of off on once only or other our ours out over own
    same she should so some such than that the their theirs them then there these they this
    those through to too under until up very was we were what when where which while who whom
    why will with would you your yours"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())
_TOKEN = re.compile(r"\w+", re.UNICODE)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    rowid INTEGER PRIMARY KEY,
    idx TEXT NOT NULL,
    ns TEXT NOT NULL,
    id TEXT NOT NULL,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL,
    UNIQUE (idx, ns, id)
);
CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5(
    text, content='docs', content_rowid='rowid', tokenize='porter unicode61'
);
CREATE TRIGGER IF NOT EXISTS docs_ai AFTER INSERT ON docs BEGIN
    INSERT INTO fts(rowid, text) VALUES (new.rowid, new.text);
END;
CREATE TRIGGER IF NOT EXISTS docs_ad AFTER DELETE ON docs BEGIN
    INSERT INTO fts(fts, rowid, text) VALUES ('delete', old.rowid, old.text);
END;
CREATE TRIGGER IF NOT EXISTS docs_au AFTER UPDATE ON docs BEGIN
    INSERT INTO fts(fts, rowid, text) VALUES ('delete', old.rowid, old.text);
    INSERT INTO fts(rowid, text) VALUES (new.rowid, new.text);
END;
"""


def match_expression(query: str) -> str | None:
    """An FTS5 MATCH expression ORing the query's words (quoted, so no FTS syntax leaks in);
    None when nothing but stopwords and punctuation is left."""
    terms: list[str] = []
    for token in _TOKEN.findall(query.lower()):
        if token not in STOPWORDS and token not in terms:
            terms.append(token)
    if not terms:
        return None
    return " OR ".join(f'"{t}"' for t in terms)


def sql_filter(node: Node, params: list[Any]) -> str:
    """A SQL condition over `docs.metadata` for a parsed portable filter (values bound)."""
    if isinstance(node, And):
        return "(" + " AND ".join(sql_filter(c, params) for c in node.children) + ")"
    if isinstance(node, Or):
        return "(" + " OR ".join(sql_filter(c, params) for c in node.children) + ")"
    assert isinstance(node, Condition)
    path = "$." + json.dumps(node.field)
    column = "json_extract(metadata, ?)"
    if node.op in ("$in", "$nin"):
        values = node.value if isinstance(node.value, tuple) else (node.value,)
        marks = ", ".join("?" for _ in values)
        negate = "NOT " if node.op == "$nin" else ""
        params.extend((path, path))
        params.extend(_sql_value(v) for v in values)
        return f"({column} IS NOT NULL AND {column} {negate}IN ({marks}))"
    params.append(path)
    params.append(_sql_value(node.value))
    return f"({column} {_SQL_OPS[node.op]} ?)"


def _sql_value(value: Any) -> Any:
    # json_extract returns JSON booleans as 1/0
    if isinstance(value, bool):
        return int(value)
    return value


class KeywordIndex:
    """An FTS5 table of (index, namespace, id, text, metadata), one SQLite file per store."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.executescript(_SCHEMA)
            self._conn = conn
        return self._conn

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        def locked() -> T:
            with self._lock:
                return fn(self._db(), *args)

        try:
            return await asyncio.to_thread(locked)
        except sqlite3.Error as exc:
            raise VectorStoreError(f"keyword index {self.path}: {exc}") from exc

    async def upsert(self, index: str, namespace: str, records: Sequence[VectorRecord]) -> None:
        rows = [
            (index, namespace, r.id, r.text or "", json.dumps(dict(r.metadata))) for r in records
        ]

        def write(db: sqlite3.Connection) -> None:
            with db:
                db.executemany(
                    "INSERT INTO docs (idx, ns, id, text, metadata) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (idx, ns, id) DO UPDATE SET text = excluded.text, "
                    "metadata = excluded.metadata",
                    rows,
                )

        await self._run(write)

    async def fill(self, index: str, namespace: str, records: Sequence[StoredRecord]) -> None:
        await self.upsert(
            index,
            namespace,
            [VectorRecord(r.id, (), r.text, r.metadata) for r in records],
        )

    async def delete(
        self,
        index: str,
        namespace: str | None,
        ids: Sequence[str] | None = None,
        where: Mapping[str, Any] | None = None,
    ) -> None:
        """Delete by ids and/or filter; `namespace=None` with nothing else drops the index."""
        clauses, params = ["idx = ?"], [index]
        if namespace is not None:
            clauses.append("ns = ?")
            params.append(namespace)
        if where is not None:
            clauses.append(sql_filter(parse_filter(where), params))

        def write(db: sqlite3.Connection) -> None:
            with db:
                if ids is None:
                    db.execute(f"DELETE FROM docs WHERE {' AND '.join(clauses)}", params)
                    return
                for start in range(0, len(ids), 500):
                    part = list(ids[start : start + 500])
                    marks = ", ".join("?" for _ in part)
                    db.execute(
                        f"DELETE FROM docs WHERE {' AND '.join(clauses)} AND id IN ({marks})",
                        [*params, *part],
                    )

        await self._run(write)

    async def count(self, index: str, namespace: str) -> int:
        def read(db: sqlite3.Connection) -> int:
            row = db.execute(
                "SELECT count(*) FROM docs WHERE idx = ? AND ns = ?", (index, namespace)
            ).fetchone()
            return int(row[0])

        return await self._run(read)

    async def search(
        self,
        index: str,
        query: str,
        top_k: int,
        where: Mapping[str, Any] | None = None,
        namespace: str = "",
    ) -> list[SearchHit]:
        expression = match_expression(query)
        if expression is None:
            return []
        params: list[Any] = [expression, index, namespace]
        extra = ""
        if where is not None:
            extra = " AND " + sql_filter(parse_filter(where), params)
        params.append(top_k)
        # bm25() is lower-is-better (negative); negate it so higher is better like every score
        sql = (
            "SELECT docs.id, docs.text, docs.metadata, -bm25(fts) AS score "
            "FROM fts JOIN docs ON docs.rowid = fts.rowid "
            f"WHERE fts MATCH ? AND docs.idx = ? AND docs.ns = ?{extra} "
            "ORDER BY bm25(fts) LIMIT ?"
        )

        def read(db: sqlite3.Connection) -> list[SearchHit]:
            return [
                SearchHit(id=i, score=float(s), text=t or None, metadata=json.loads(m))
                for i, t, m, s in db.execute(sql, params)
            ]

        return await self._run(read)

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class KeywordMirror:
    """A `VectorStore` that forwards to `inner` and mirrors texts into a `KeywordIndex`."""

    def __init__(self, inner: VectorStore, keywords: KeywordIndex) -> None:
        self.inner = inner
        self.keywords = keywords
        self.kind = inner.kind
        self._rebuilt: set[tuple[str, str]] = set()

    def __repr__(self) -> str:
        return repr(self.inner)

    async def create_index(
        self,
        name: str,
        dimension: int,
        metric: Metric = "cosine",
        metadata: Mapping[str, Any] | None = None,
    ) -> IndexInfo:
        return await self.inner.create_index(name, dimension, metric, metadata)

    async def delete_index(self, name: str) -> None:
        await self.inner.delete_index(name)
        await self.keywords.delete(name, None)
        self._rebuilt = {key for key in self._rebuilt if key[0] != name}

    async def list_indexes(self) -> list[str]:
        return await self.inner.list_indexes()

    async def stats(self, name: str) -> IndexInfo:
        return await self.inner.stats(name)

    async def index_metadata(self, name: str) -> dict[str, Any]:
        return await self.inner.index_metadata(name)

    async def health(self) -> bool:
        return await self.inner.health()

    async def upsert(self, index: str, records: Sequence[VectorRecord], namespace: str = "") -> int:
        written = await self.inner.upsert(index, records, namespace)
        await self.keywords.upsert(index, namespace, records)
        return written

    async def delete(
        self,
        index: str,
        ids: Sequence[str] | None = None,
        where: Mapping[str, Any] | None = None,
        namespace: str = "",
    ) -> None:
        await self.inner.delete(index, ids=ids, where=where, namespace=namespace)
        await self.keywords.delete(index, namespace, ids=ids, where=where)

    async def search(
        self,
        index: str,
        vector: Sequence[float],
        top_k: int = 5,
        where: Mapping[str, Any] | None = None,
        namespace: str = "",
        include_vectors: bool = False,
    ) -> list[SearchHit]:
        return await self.inner.search(index, vector, top_k, where, namespace, include_vectors)

    async def scan(
        self,
        index: str,
        where: Mapping[str, Any] | None = None,
        namespace: str = "",
    ) -> list[StoredRecord]:
        return await self.inner.scan(index, where, namespace)

    async def keyword_search(
        self,
        index: str,
        query: str,
        top_k: int = 5,
        where: Mapping[str, Any] | None = None,
        namespace: str = "",
    ) -> list[SearchHit]:
        if where is not None:
            parse_filter(where)  # the same ValueError as a vector search would raise
        key = (index, namespace)
        if key not in self._rebuilt:
            # first keyword search of this index here: make sure the mirror has its records
            if await self.keywords.count(index, namespace) == 0:
                records = await self.inner.scan(index, None, namespace)
                await self.keywords.fill(index, namespace, records)
            else:
                await self.inner.stats(index)  # unknown index -> IndexNotFoundError
            self._rebuilt.add(key)
        return await self.keywords.search(index, query, top_k, where, namespace)

    async def aclose(self) -> None:
        try:
            await self.inner.aclose()
        finally:
            self.keywords.close()
