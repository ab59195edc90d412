"""PostgreSQL with the pgvector extension, through an asyncpg pool; one table per index.

Layout, created on first use in the configured schema (`db_schema`, default `llmo_vectors`):

    llmo_indexes(name PK, dimension, metric, text_search_config, metadata jsonb, created_at)
    "llmo_i_<name>"(namespace, id, embedding vector(d), text, metadata jsonb,
                    tsv tsvector GENERATED ALWAYS AS (to_tsvector(<config>, coalesce(text, ''))))
        PRIMARY KEY (namespace, id); HNSW on embedding with the metric's operator class
        (vector_cosine_ops / vector_ip_ops / vector_l2_ops); GIN on tsv and on metadata

Index names are `[A-Za-z0-9_-]{1,48}` and always double-quoted; the schema and the text
search configuration are checked identifiers. Values never enter SQL text: filters become
conditions over `metadata` with bind parameters (`translate_filter`). A record without the
field never matches a condition on it, `$ne` and `$nin` included (as in the other stores).
`$eq`/`$in` use containment (`metadata @> {"field": value}`), which the GIN index serves.

Search orders by the distance operator (`<=>`, `<#>`, `<->`) so the HNSW index can answer,
and turns distances into "higher is better" scores: cosine `1 - d`, dot `-(<#>)`, euclidean
`-(<->)`. HNSW applies the WHERE clause (namespace, filter) to the `hnsw.ef_search` nearest
candidates only (`ef_search`, default 100, at least `top_k`), so a selective filter can leave
fewer than `top_k` hits although more rows match: such a search is run again exactly, ordered
by an expression the index cannot serve (`(distance) + 0`).
pgvector's HNSW takes at most 2000 dimensions; wider indexes are created without it and
searched exactly. Upserts run in one transaction, `executemany` in batches of 500; the first
load of an empty index (1000 records or more) drops the HNSW index and builds it once after
the rows are in (the table is locked meanwhile), which is several times faster than growing
the graph row by row.

Keyword search is PostgreSQL full-text search on the generated `tsv` column: the query's
lexemes (`plainto_tsquery` with the index's text search configuration: stemmed, stopwords
dropped) are ORed, so a question matches every passage sharing a word with it, ranked by
`ts_rank_cd`.

Errors from asyncpg and the server become `VectorStoreError` / `IndexNotFoundError` naming
the store, index and URL (without its password); connection failures are retryable.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from llm_orchestrator.exceptions import MissingDependencyError
from llm_orchestrator.vectordb.base import (
    METRICS,
    MISSING_INDEX_FIX,
    IndexInfo,
    IndexNotFoundError,
    Metric,
    SearchHit,
    StoredRecord,
    VectorRecord,
    VectorStoreError,
    check_metric,
    check_query,
    check_records,
)
from llm_orchestrator.vectordb.filters import And, Condition, Node, Or, parse_filter

_INDEX_NAME = re.compile(r"[A-Za-z0-9_-]{1,48}")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_TEXT_CONFIG = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?")
_CATALOG = "llmo_indexes"
_TABLE_PREFIX = "llmo_i_"
_BATCH = 500
#: an upsert of at least this many records into an empty index builds HNSW afterwards
_BULK_LOAD = 1000
#: pgvector's limits: HNSW indexes up to 2000 dimensions, `hnsw.ef_search` up to 1000
_HNSW_MAX_DIMENSION = 2000
_EF_SEARCH_MAX = 1000
#: distance operator, operator class, SQL turning the distance `d` into our score
_METRIC_SQL: dict[Metric, tuple[str, str, str]] = {
    "cosine": ("<=>", "vector_cosine_ops", "1 - ({d})"),
    "dot": ("<#>", "vector_ip_ops", "-({d})"),
    "euclidean": ("<->", "vector_l2_ops", "-({d})"),
}
_RANGE_OPS = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
#: SQLSTATE classes/codes worth retrying: connection, serialization/deadlock, resources,
#: operator intervention (server shutting down)
_RETRYABLE_SQLSTATES = ("08", "40001", "40P01", "53", "57P01", "57P02", "57P03")


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def check_index_name(name: str) -> str:
    """`name` if it can name an index table, else a ValueError saying what is allowed."""
    if not isinstance(name, str) or not _INDEX_NAME.fullmatch(name):
        raise ValueError(
            f"pgvector index name {name!r} is not allowed: use 1 to 48 characters from "
            "A-Z, a-z, 0-9, '_' and '-'"
        )
    return name


def redact_url(url: str) -> str:
    """`url` without its password (and without query parameters, which may carry one)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        return "<unparseable url>"
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit((parts.scheme, f"{user}{host}{port}", parts.path, "", ""))


def _dsn(url: str) -> str:
    """asyncpg's DSN for a SQLAlchemy-style URL (`postgresql+asyncpg://` -> `postgresql://`)."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}"


# -- filters -----------------------------------------------------------------------------


def translate_filter(node: Node, params: list[Any] | None = None) -> tuple[str, list[Any]]:
    """A SQL condition over the `metadata` column for a parsed portable filter, and its bind
    parameters. Placeholders continue after the parameters already in `params` (which is
    appended to), so the condition can join a query that binds other values first. Values
    are bound as jsonb (the pool encodes them with `json.dumps`); keys as text.
    """
    out = [] if params is None else params

    def bind(value: Any) -> str:
        out.append(value)
        return f"${len(out)}"

    def sql(item: Node) -> str:
        if isinstance(item, And | Or):
            if not item.children:
                raise ValueError("pgvector filter: $and/$or need at least one sub-filter")
            joiner = " AND " if isinstance(item, And) else " OR "
            return "(" + joiner.join(sql(child) for child in item.children) + ")"
        if not isinstance(item, Condition):
            raise ValueError(f"pgvector filter: cannot translate {item!r}")
        op, value = item.op, item.value
        if op in ("$in", "$nin"):
            if not isinstance(value, tuple) or not value:
                raise ValueError(f"pgvector filter field '{item.field}': {op} takes a list")
            if op == "$in":
                return (
                    "("
                    + " OR ".join(f"metadata @> {bind({item.field: v})}::jsonb" for v in value)
                    + ")"
                )
            key, values = bind(item.field), bind(list(value))
            return f"(NOT ((metadata -> {key}::text) = ANY({values}::jsonb[])))"
        if isinstance(value, tuple):
            raise ValueError(f"pgvector filter field '{item.field}': {op} takes one value")
        if op == "$eq":
            return f"(metadata @> {bind({item.field: value})}::jsonb)"
        if op == "$ne":
            return f"((metadata -> {bind(item.field)}::text) <> {bind(value)}::jsonb)"
        if op in _RANGE_OPS:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(
                    f"pgvector filter field '{item.field}': {op} compares numbers, got {value!r}"
                )
            key = bind(item.field) + "::text"
            # jsonb orders across types (booleans sort above numbers): compare numbers only
            return (
                f"(jsonb_typeof(metadata -> {key}) = 'number' AND "
                f"(metadata -> {key}) {_RANGE_OPS[op]} {bind(value)}::jsonb)"
            )
        raise ValueError(f"pgvector filter field '{item.field}': unsupported operator {op!r}")

    return sql(node), out


# -- store -------------------------------------------------------------------------------


def _asyncpg() -> Any:
    try:
        import pgvector.asyncpg  # noqa: F401

        # asyncpg ships no type information
        asyncpg = importlib.import_module("asyncpg")
    except ImportError as exc:
        raise MissingDependencyError("pgvector", "pgvector", "the pgvector vector store") from exc
    return asyncpg


class PgVectorStore:
    """`PgVectorStore("postgresql://user:pw@host:5432/db", schema="llmo_vectors")`."""

    kind = "pgvector"

    def __init__(
        self,
        url: str,
        *,
        schema: str = "llmo_vectors",
        text_search_config: str = "english",
        pool_size: int = 5,
        ef_search: int = 100,
        name: str = "pgvector",
        connect_timeout_seconds: float = 10.0,
    ) -> None:
        if not _IDENTIFIER.fullmatch(schema):
            raise ValueError(
                f"vector store '{name}': db_schema {schema!r} is not a plain identifier "
                "(letters, digits, '_', not starting with a digit, at most 63 characters)"
            )
        if not _TEXT_CONFIG.fullmatch(text_search_config):
            raise ValueError(
                f"vector store '{name}': text_search_config {text_search_config!r} is not a "
                "text search configuration name such as 'english' or 'pg_catalog.simple'"
            )
        if pool_size < 1:
            raise ValueError(f"vector store '{name}': pool_size must be at least 1")
        if not 1 <= ef_search <= _EF_SEARCH_MAX:
            raise ValueError(f"vector store '{name}': ef_search must be between 1 and 1000")
        self.name = name
        self.schema = schema
        self.text_search_config = text_search_config
        self.pool_size = pool_size
        self.ef_search = ef_search
        self._url = url
        self._connect_timeout = connect_timeout_seconds
        self._pool: Any = None
        self._pool_lock = asyncio.Lock()
        self._vector_schema = "public"

    def __repr__(self) -> str:
        return f"PgVectorStore({self.name!r}, {redact_url(self._url)})"

    @property
    def url(self) -> str:
        """The database URL without its password."""
        return redact_url(self._url)

    # -- connections and errors ----------------------------------------------------------

    def _scrub(self, text: str) -> str:
        try:
            password = urlsplit(self._url).password
        except ValueError:
            password = None
        return text.replace(password, "***") if password else text

    def _translate(self, exc: BaseException, index: str | None) -> VectorStoreError:
        """Our error for an asyncpg / server / socket failure, naming store, index and URL."""
        asyncpg = _asyncpg()

        where = f"vector store '{self.name}' (pgvector)" + (f", index '{index}'" if index else "")
        detail = self._scrub(str(exc)) or type(exc).__name__
        error: VectorStoreError
        if isinstance(
            exc, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError
        ):
            return VectorStoreError(
                f"{where}: PostgreSQL at {self.url} refused the login ({detail}); check the "
                f"user and password in `url` under vector_stores.{self.name}"
            )
        if isinstance(exc, asyncpg.InvalidCatalogNameError):
            return VectorStoreError(
                f"{where}: {detail} at {self.url}; create the database or fix `url` under "
                f"vector_stores.{self.name}"
            )
        if isinstance(exc, asyncpg.PostgresError):
            sqlstate = str(getattr(exc, "sqlstate", "") or "")
            message = detail
            if "vector" in detail and ("not available" in detail or "could not open" in detail):
                message += (
                    "; the pgvector extension is not installed on this server: install it "
                    "(https://github.com/pgvector/pgvector#installation) and run "
                    "CREATE EXTENSION vector as a superuser, or use a server that has it"
                )
            elif sqlstate == "42501":
                message += "; the role in `url` lacks a privilege this store needs"
            error = VectorStoreError(f"{where}: PostgreSQL error {sqlstate}: {message}")
            error.retryable = sqlstate.startswith(_RETRYABLE_SQLSTATES)
            return error
        if isinstance(exc, OSError | TimeoutError | asyncpg.InterfaceError):
            error = VectorStoreError(
                f"{where}: could not connect to {self.url} ({type(exc).__name__}: {detail}); "
                "check `url` and that the server is running"
            )
            error.retryable = True
            return error
        return VectorStoreError(f"{where}: {type(exc).__name__}: {detail}")

    async def _init_connection(self, connection: Any) -> None:
        from pgvector.asyncpg import register_vector

        await register_vector(connection, schema=self._vector_schema)
        await connection.set_type_codec(
            "jsonb", schema="pg_catalog", encoder=json.dumps, decoder=json.loads
        )

    async def _setup(self, asyncpg: Any) -> None:
        """Extension, schema and catalog, once, on a connection of its own (the pool's
        connections need the `vector` type to exist before they can register its codec)."""
        connection = await asyncpg.connect(_dsn(self._url), timeout=self._connect_timeout)
        try:
            async with connection.transaction():
                # one setup at a time per database: CREATE ... IF NOT EXISTS races otherwise
                await connection.execute("SELECT pg_advisory_xact_lock(hashtext('llmo_pgvector'))")
                await connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
                await connection.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(self.schema)}")
                await connection.execute(
                    f"CREATE TABLE IF NOT EXISTS {self._catalog} ("
                    "name text PRIMARY KEY, dimension integer NOT NULL, metric text NOT NULL, "
                    "text_search_config text NOT NULL, metadata jsonb NOT NULL DEFAULT '{}', "
                    "created_at timestamptz NOT NULL DEFAULT now())"
                )
            schema = await connection.fetchval(
                "SELECT n.nspname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
                "WHERE t.typname = 'vector' LIMIT 1"
            )
            self._vector_schema = str(schema or "public")
        finally:
            await connection.close()

    async def _get_pool(self) -> Any:
        if self._pool is not None:
            return self._pool
        async with self._pool_lock:
            if self._pool is None:
                asyncpg = _asyncpg()
                try:
                    await self._setup(asyncpg)
                    self._pool = await asyncpg.create_pool(
                        _dsn(self._url),
                        min_size=1,
                        max_size=self.pool_size,
                        init=self._init_connection,
                        timeout=self._connect_timeout,
                    )
                except (
                    OSError,
                    TimeoutError,
                    asyncpg.PostgresError,
                    asyncpg.InterfaceError,
                ) as exc:
                    raise self._translate(exc, None) from exc
        return self._pool

    @asynccontextmanager
    async def _connection(self, index: str | None) -> AsyncIterator[Any]:
        """A pooled connection; failures inside come out as our errors."""
        asyncpg = _asyncpg()

        pool = await self._get_pool()
        try:
            async with pool.acquire() as connection:
                yield connection
        except VectorStoreError:
            raise
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise self._translate(exc, index) from exc

    @property
    def _catalog(self) -> str:
        return f"{_quote(self.schema)}.{_CATALOG}"

    def _table(self, name: str) -> str:
        return f"{_quote(self.schema)}.{_quote(_TABLE_PREFIX + check_index_name(name))}"

    def _hnsw_index(self, name: str) -> str:
        return f"{_quote(self.schema)}.{_quote(_TABLE_PREFIX + check_index_name(name) + '_hnsw')}"

    def _hnsw_ddl(self, name: str, metric: Metric) -> str:
        opclass = _METRIC_SQL[metric][1]
        index = _quote(_TABLE_PREFIX + check_index_name(name) + "_hnsw")
        return f"CREATE INDEX {index} ON {self._table(name)} USING hnsw (embedding {opclass})"

    async def _info(self, connection: Any, name: str) -> tuple[IndexInfo, str]:
        """The index's catalog row (count -1) and its text search configuration."""
        check_index_name(name)
        row = await connection.fetchrow(
            f"SELECT dimension, metric, text_search_config, metadata FROM {self._catalog} "
            "WHERE name = $1",
            name,
        )
        if row is None:
            raise IndexNotFoundError(
                f"vector store '{self.name}' (pgvector): no index '{name}'; {MISSING_INDEX_FIX}"
            )
        metric = str(row["metric"])
        if metric not in METRICS:
            raise VectorStoreError(
                f"vector store '{self.name}' (pgvector): index '{name}' has the unknown metric "
                f"{metric!r} in {self.schema}.{_CATALOG}"
            )
        info = IndexInfo(
            name=name,
            dimension=int(row["dimension"]),
            metric=check_metric(metric),
            count=-1,
            metadata=dict(row["metadata"] or {}),
        )
        return info, str(row["text_search_config"])

    # -- indexes -------------------------------------------------------------------------

    async def create_index(
        self,
        name: str,
        dimension: int,
        metric: Metric = "cosine",
        metadata: Mapping[str, Any] | None = None,
    ) -> IndexInfo:
        check_metric(metric)
        check_index_name(name)
        if dimension < 1:
            raise ValueError(f"index '{name}': dimension must be at least 1, got {dimension}")
        table = self._table(name)
        prefix = _TABLE_PREFIX + name
        config = "'" + self.text_search_config.replace("'", "''") + "'"
        async with self._connection(name) as connection, connection.transaction():
            await connection.execute(
                "SELECT pg_advisory_xact_lock(hashtext($1))", f"{self.schema}.{name}"
            )
            existing = await connection.fetchrow(
                f"SELECT dimension, metric FROM {self._catalog} WHERE name = $1", name
            )
            if existing is not None:
                if (existing["dimension"], existing["metric"]) != (dimension, metric):
                    raise VectorStoreError(
                        f"vector store '{self.name}' (pgvector): index '{name}' exists with "
                        f"dimension {existing['dimension']} and metric {existing['metric']}, "
                        f"not {dimension}/{metric}"
                    )
                info, _config = await self._info(connection, name)
                count = await connection.fetchval(f"SELECT count(*) FROM {table}")
                return IndexInfo(name, info.dimension, info.metric, int(count), info.metadata)
            await connection.execute(
                f"CREATE TABLE {table} ("
                "namespace text NOT NULL, id text NOT NULL, "
                f"embedding vector({int(dimension)}) NOT NULL, text text, "
                "metadata jsonb NOT NULL DEFAULT '{}', "
                f"tsv tsvector GENERATED ALWAYS AS (to_tsvector({config}::regconfig, "
                "coalesce(text, ''))) STORED, "
                "PRIMARY KEY (namespace, id))"
            )
            if dimension <= _HNSW_MAX_DIMENSION:
                await connection.execute(self._hnsw_ddl(name, metric))
            await connection.execute(
                f"CREATE INDEX {_quote(prefix + '_tsv')} ON {table} USING gin (tsv)"
            )
            await connection.execute(
                f"CREATE INDEX {_quote(prefix + '_meta')} ON {table} "
                "USING gin (metadata jsonb_path_ops)"
            )
            await connection.execute(
                f"INSERT INTO {self._catalog} (name, dimension, metric, text_search_config, "
                "metadata) VALUES ($1, $2, $3, $4, $5)",
                name,
                dimension,
                metric,
                self.text_search_config,
                dict(metadata or {}),
            )
        return IndexInfo(name, dimension, metric, 0, dict(metadata or {}))

    async def delete_index(self, name: str) -> None:
        async with self._connection(name) as connection, connection.transaction():
            await self._info(connection, name)
            await connection.execute(f"DROP TABLE IF EXISTS {self._table(name)}")
            await connection.execute(f"DELETE FROM {self._catalog} WHERE name = $1", name)

    async def list_indexes(self) -> list[str]:
        async with self._connection(None) as connection:
            rows = await connection.fetch(f"SELECT name FROM {self._catalog} ORDER BY name")
        return [str(row["name"]) for row in rows]

    async def stats(self, name: str) -> IndexInfo:
        async with self._connection(name) as connection:
            info, _config = await self._info(connection, name)
            count = await connection.fetchval(f"SELECT count(*) FROM {self._table(name)}")
        return IndexInfo(name, info.dimension, info.metric, int(count), info.metadata)

    async def index_metadata(self, name: str) -> dict[str, Any]:
        async with self._connection(name) as connection:
            info, _config = await self._info(connection, name)
        return dict(info.metadata)

    async def health(self) -> bool:
        try:
            async with self._connection(None) as connection:
                await connection.fetchval("SELECT 1")
        except VectorStoreError:
            return False
        return True

    # -- records -------------------------------------------------------------------------

    async def upsert(self, index: str, records: Sequence[VectorRecord], namespace: str = "") -> int:
        from pgvector import Vector

        async with self._connection(index) as connection:
            info, _config = await self._info(connection, index)
            check_records(records, info.dimension, index)
            statement = (
                f"INSERT INTO {self._table(index)} (namespace, id, embedding, text, metadata) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (namespace, id) DO UPDATE SET "
                "embedding = EXCLUDED.embedding, text = EXCLUDED.text, "
                "metadata = EXCLUDED.metadata"
            )
            table = self._table(index)
            async with connection.transaction():
                rebuild = False
                if len(records) >= _BULK_LOAD and info.dimension <= _HNSW_MAX_DIMENSION:
                    # first load of an empty index: building HNSW once after the rows are in
                    # is several times faster than inserting into it row by row
                    await connection.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
                    rebuild = not await connection.fetchval(
                        f"SELECT EXISTS (SELECT 1 FROM {table})"
                    )
                    if rebuild:
                        await connection.execute(f"DROP INDEX {self._hnsw_index(index)}")
                for start in range(0, len(records), _BATCH):
                    await connection.executemany(
                        statement,
                        [
                            (
                                namespace,
                                r.id,
                                Vector([float(x) for x in r.vector]),
                                r.text,
                                dict(r.metadata),
                            )
                            for r in records[start : start + _BATCH]
                        ],
                    )
                if rebuild:
                    await connection.execute(self._hnsw_ddl(index, info.metric))
        return len(records)

    def _where(self, where: Mapping[str, Any] | None, namespace: str, params: list[Any]) -> str:
        """`namespace = $n [AND <filter>]`, appending the values to `params`."""
        node = parse_filter(where) if where is not None else None
        params.append(namespace)
        clause = f"namespace = ${len(params)}"
        if node is not None:
            condition, _ = translate_filter(node, params)
            clause += f" AND {condition}"
        return clause

    async def delete(
        self,
        index: str,
        ids: Sequence[str] | None = None,
        where: Mapping[str, Any] | None = None,
        namespace: str = "",
    ) -> None:
        if ids is None and where is None:
            raise ValueError(f"index '{index}': delete needs ids or a filter")
        params: list[Any] = []
        clause = self._where(where, namespace, params)
        if ids is not None:
            if not ids:
                return
            params.append([str(i) for i in ids])
            clause += f" AND id = ANY(${len(params)}::text[])"
        async with self._connection(index) as connection:
            await self._info(connection, index)
            await connection.execute(f"DELETE FROM {self._table(index)} WHERE {clause}", *params)

    async def search(
        self,
        index: str,
        vector: Sequence[float],
        top_k: int = 5,
        where: Mapping[str, Any] | None = None,
        namespace: str = "",
        include_vectors: bool = False,
    ) -> list[SearchHit]:
        from pgvector import Vector

        params: list[Any] = []
        clause = self._where(where, namespace, params)
        async with self._connection(index) as connection:
            info, _config = await self._info(connection, index)
            check_query(vector, info.dimension, index)
            if top_k < 1:
                return []
            op, _opclass, score = _METRIC_SQL[info.metric]
            params.append(Vector([float(x) for x in vector]))
            distance = f"embedding {op} ${len(params)}"
            params.append(top_k)
            columns = "id, text, metadata" + (", embedding" if include_vectors else "")
            head = (
                f"SELECT {columns}, {score.format(d=distance)} AS score "
                f"FROM {self._table(index)} WHERE {clause} ORDER BY "
            )
            limit = f" LIMIT ${len(params)}"
            # `+ 0` is an ORDER BY the HNSW index cannot serve: an exact scan
            exact = f"{head}({distance}) + 0{limit}"
            if info.dimension > _HNSW_MAX_DIMENSION or top_k > _EF_SEARCH_MAX:
                rows = await connection.fetch(exact, *params)
            else:
                async with connection.transaction():
                    ef_search = max(self.ef_search, top_k)
                    await connection.execute(f"SET LOCAL hnsw.ef_search = {int(ef_search)}")
                    rows = await connection.fetch(f"{head}{distance}{limit}", *params)
                if len(rows) < top_k:
                    # HNSW filters its candidates after the fact: look at every row
                    rows = await connection.fetch(exact, *params)
        return [
            SearchHit(
                id=str(row["id"]),
                score=float(row["score"]),
                text=row["text"],
                metadata=dict(row["metadata"] or {}),
                vector=tuple(row["embedding"].to_list()) if include_vectors else None,
            )
            for row in rows
        ]

    async def keyword_search(
        self,
        index: str,
        query: str,
        top_k: int = 5,
        where: Mapping[str, Any] | None = None,
        namespace: str = "",
    ) -> list[SearchHit]:
        """Full-text search: records sharing any lexeme with `query`, best `ts_rank_cd`
        first (score = the rank); [] for a query of stopwords and punctuation only."""
        params: list[Any] = []
        clause = self._where(where, namespace, params)
        async with self._connection(index) as connection:
            _info, config = await self._info(connection, index)
            if top_k < 1 or not query.strip():
                return []
            # plainto_tsquery normalises like the stored tsvector and ANDs the lexemes
            # ('a' & 'b'); lexemes never contain spaces, so ' & ' only ever is the operator
            ored = await connection.fetchval(
                "SELECT replace(plainto_tsquery($1::text::regconfig, $2)::text, ' & ', ' | ')",
                config,
                query,
            )
            if not ored:
                return []
            params.append(ored)
            tsquery = f"${len(params)}::text::tsquery"
            params.append(top_k)
            rows = await connection.fetch(
                f"SELECT id, text, metadata, ts_rank_cd(tsv, {tsquery}) AS score "
                f"FROM {self._table(index)} WHERE {clause} AND tsv @@ {tsquery} "
                f"ORDER BY score DESC, id LIMIT ${len(params)}",
                *params,
            )
        return [
            SearchHit(
                id=str(row["id"]),
                score=float(row["score"]),
                text=row["text"],
                metadata=dict(row["metadata"] or {}),
            )
            for row in rows
        ]

    async def scan(
        self,
        index: str,
        where: Mapping[str, Any] | None = None,
        namespace: str = "",
    ) -> list[StoredRecord]:
        params: list[Any] = []
        clause = self._where(where, namespace, params)
        async with self._connection(index) as connection:
            await self._info(connection, index)
            rows = await connection.fetch(
                f"SELECT id, text, metadata FROM {self._table(index)} WHERE {clause}", *params
            )
        return [
            StoredRecord(id=str(row["id"]), text=row["text"], metadata=dict(row["metadata"] or {}))
            for row in rows
        ]

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()


def from_config(name: str, config: Any, resolve: Callable[[str], Path]) -> PgVectorStore:
    """The store of a `PgVectorConfig` (registry hook)."""
    return PgVectorStore(
        config.url,
        schema=config.db_schema,
        text_search_config=config.text_search_config,
        pool_size=config.pool_size,
        ef_search=config.hnsw_ef_search,
        name=name,
    )
