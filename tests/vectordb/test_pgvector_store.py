"""PgVectorStore against a real PostgreSQL 16 + pgvector 0.6 (pgserver's binaries): the shared
contract, PostgreSQL full-text keyword search, filter translation, persistence, errors and
configuration."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.modules import require_module
from tests.vectordb.contract import VectorStoreContract

require_module("pgvector")

from llm_orchestrator.vectordb.base import (  # noqa: E402
    IndexNotFoundError,
    KeywordSearcher,
    VectorRecord,
    VectorStoreError,
)
from llm_orchestrator.vectordb.filters import parse_filter, validate_for  # noqa: E402
from llm_orchestrator.vectordb.pgvector import (  # noqa: E402
    PgVectorStore,
    check_index_name,
    redact_url,
    translate_filter,
)
from llm_orchestrator.vectordb.registry import (  # noqa: E402
    VectorStoreRegistry,
    close_all_vector_stores,
)


@pytest.fixture
async def pg_store(pgvector_url: str) -> AsyncIterator[PgVectorStore]:
    opened = PgVectorStore(pgvector_url, name="pg")
    yield opened
    await opened.aclose()


class TestPgVector(VectorStoreContract):
    @pytest.fixture
    async def store(self, pg_store: PgVectorStore) -> PgVectorStore:
        return pg_store


# -- keyword search ----------------------------------------------------------------------

PASSAGES = [
    ("retry", "Failed steps are retried with exponential backoff until the budget runs out."),
    ("budget", "The workflow budget caps the total cost of model calls in a run."),
    ("both", "A step retried too often can exhaust the run budget: retries cost money."),
    ("cache", "Responses are cached on disk, keyed by the prompt and the model."),
]


@pytest.fixture
async def passages(pg_store: PgVectorStore) -> PgVectorStore:
    await pg_store.create_index("kw", 2)
    records = [
        VectorRecord(pid, [1.0, float(i)], text, {"n": i, "kind": "odd" if i % 2 else "even"})
        for i, (pid, text) in enumerate(PASSAGES)
    ]
    await pg_store.upsert("kw", records)
    return pg_store


async def test_is_a_keyword_searcher(pg_store: PgVectorStore) -> None:
    assert isinstance(pg_store, KeywordSearcher)


async def test_keyword_search_ors_terms_and_ranks_by_overlap(passages: PgVectorStore) -> None:
    # plainto_tsquery would AND these words and find nothing; OR finds three passages, and the
    # one that has both "retry" and "budget" (stemmed: retried, retries, budget) ranks first
    hits = await passages.keyword_search("kw", "How do retries interact with the budget?", 10)
    assert [h.id for h in hits][0] == "both"
    assert sorted(h.id for h in hits) == ["both", "budget", "retry"]
    assert all(x.score >= y.score for x, y in zip(hits, hits[1:], strict=False))
    assert hits[0].score > hits[1].score > 0
    assert hits[0].text == PASSAGES[2][1]
    assert dict(hits[0].metadata) == {"n": 2, "kind": "even"}
    assert [h.id for h in await passages.keyword_search("kw", "cached prompts", 10)] == ["cache"]
    assert len(await passages.keyword_search("kw", "retries budget", top_k=1)) == 1


async def test_keyword_search_filters_and_namespaces(passages: PgVectorStore) -> None:
    question = "retried budget"
    odd = await passages.keyword_search("kw", question, 10, where={"kind": "odd"})
    assert [h.id for h in odd] == ["budget"]
    assert await passages.keyword_search("kw", question, 10, where={"n": {"$gt": 5}}) == []
    assert await passages.keyword_search("kw", question, 10, namespace="other") == []
    await passages.upsert("kw", [VectorRecord("x", [0.0, 1.0], "budget again")], "other")
    assert [h.id for h in await passages.keyword_search("kw", question, 10, namespace="other")] == [
        "x"
    ]
    # a re-upsert replaces the text, and the generated tsvector with it
    await passages.upsert("kw", [VectorRecord("cache", [1.0, 3.0], "budget")])
    assert "cache" in [h.id for h in await passages.keyword_search("kw", "budget", 10)]
    assert await passages.keyword_search("kw", "disk", 10) == []


async def test_keyword_search_without_terms(passages: PgVectorStore) -> None:
    assert await passages.keyword_search("kw", "the and of, is it?") == []
    assert await passages.keyword_search("kw", "   ") == []
    assert await passages.keyword_search("kw", "!!! ???") == []
    # tsquery syntax in the question is just text
    hits = await passages.keyword_search("kw", "budget & !retry | 'cache':*", 10)
    assert sorted(h.id for h in hits) == ["both", "budget", "cache", "retry"]
    with pytest.raises(IndexNotFoundError, match="nope"):
        await passages.keyword_search("nope", "budget")


async def test_text_search_config_is_the_indexs(pgvector_url: str) -> None:
    simple = PgVectorStore(pgvector_url, text_search_config="simple")
    english = PgVectorStore(pgvector_url)
    try:
        await simple.create_index("s", 1)
        await simple.upsert("s", [VectorRecord("a", [1.0], "the retries")])
        # 'simple' neither stems nor drops stopwords, whichever store asks
        assert [h.id for h in await english.keyword_search("s", "the")] == ["a"]
        assert await english.keyword_search("s", "retry") == []
    finally:
        await simple.aclose()
        await english.aclose()


# -- search details ----------------------------------------------------------------------


async def test_selective_filter_finds_rows_beyond_the_hnsw_candidates(
    pg_store: PgVectorStore, pgvector_url: str
) -> None:
    import asyncpg  # type: ignore[import-untyped]

    rng = random.Random(7)
    await pg_store.create_index("wide", 16)
    records = []
    for i in range(3000):
        vector = [rng.gauss(0, 1) for _ in range(16)]
        tag = "rare" if i % 1000 == 999 else "common"
        records.append(VectorRecord(f"r{i}", vector, None, {"tag": tag}))
    await pg_store.upsert("wide", records)
    # with statistics, the planner takes `$ne` for unselective and walks the HNSW index,
    # which yields only the ef_search nearest candidates (all "common") to the filter
    connection = await asyncpg.connect(pgvector_url)
    try:
        await connection.execute('ANALYZE llmo_vectors."llmo_i_wide"')
        # the first load of an empty index built HNSW after the rows (and rolled nothing back)
        indexes = await connection.fetch(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'llmo_i_wide'"
        )
        assert sum("USING hnsw (embedding vector_cosine_ops)" in r[0] for r in indexes) == 1
    finally:
        await connection.close()
    query = [rng.gauss(0, 1) for _ in range(16)]
    hits = await pg_store.search("wide", query, top_k=5, where={"tag": {"$ne": "common"}})
    assert sorted(h.id for h in hits) == ["r1999", "r2999", "r999"]
    hits = await pg_store.search("wide", query, top_k=100)
    assert len(hits) == 100
    assert all(x.score >= y.score for x, y in zip(hits, hits[1:], strict=False))


async def test_missing_fields_never_match(pg_store: PgVectorStore) -> None:
    await pg_store.create_index("sparse", 2)
    await pg_store.upsert(
        "sparse",
        [
            VectorRecord("has", [1.0, 0.0], None, {"lang": "en", "n": 1}),
            VectorRecord("other", [1.0, 0.1], None, {"lang": "de", "n": "1"}),
            VectorRecord("none", [1.0, 0.2], None, {}),
        ],
    )

    async def found(where: dict[str, Any]) -> list[str]:
        return sorted(r.id for r in await pg_store.scan("sparse", where))

    assert await found({"lang": {"$ne": "de"}}) == ["has"]
    assert await found({"lang": {"$nin": ["de"]}}) == ["has"]
    assert await found({"n": {"$gte": 0}}) == ["has"]  # the string "1" is not a number
    assert await found({"n": 1}) == ["has"]
    assert await found({"n": 1.0}) == ["has"]
    assert await found({"n": "1"}) == ["other"]
    assert await found({"$or": [{"lang": "de"}, {"n": {"$lt": 5}}]}) == ["has", "other"]


async def test_values_are_bound_not_interpolated(pg_store: PgVectorStore) -> None:
    await pg_store.create_index("inj", 1)
    nasty = "x'); DROP TABLE llmo_vectors.llmo_indexes; --"
    await pg_store.upsert("inj", [VectorRecord("a", [1.0], nasty, {nasty: nasty})])
    [hit] = await pg_store.search("inj", [1.0], where={nasty: nasty})
    assert dict(hit.metadata) == {nasty: nasty}
    assert await pg_store.list_indexes() == ["inj"]


async def test_index_names_are_checked(pg_store: PgVectorStore) -> None:
    assert check_index_name("My-index_2") == "My-index_2"
    for bad in ("", "a b", 'x"; DROP', "é", "a" * 49, "a.b"):
        with pytest.raises(ValueError, match="A-Z, a-z, 0-9"):
            check_index_name(bad)
    with pytest.raises(ValueError, match="not allowed"):
        await pg_store.create_index("bad name", 2)
    await pg_store.create_index("Mixed-Case_1", 2, "euclidean")
    assert await pg_store.list_indexes() == ["Mixed-Case_1"]


async def test_reopen_keeps_data(pgvector_url: str) -> None:
    first = PgVectorStore(pgvector_url)
    await first.create_index("keep", 2, metadata={"embedder": "e", "dim": 2})
    await first.upsert("keep", [VectorRecord("x", [1.0, 0.0], "hello", {"k": "v"})])
    await first.aclose()
    again = PgVectorStore(pgvector_url)
    try:
        assert (await again.stats("keep")).count == 1
        assert await again.index_metadata("keep") == {"embedder": "e", "dim": 2}
        [hit] = await again.search("keep", [1.0, 0.0])
        assert (hit.id, hit.text, dict(hit.metadata)) == ("x", "hello", {"k": "v"})
        # another schema is another set of indexes in the same database
        other = PgVectorStore(pgvector_url, schema="elsewhere")
        assert await other.list_indexes() == []
        await other.aclose()
    finally:
        await again.aclose()


# -- errors ------------------------------------------------------------------------------


async def test_unreachable_server_is_a_vector_store_error() -> None:
    from tests.support.postgres import free_port

    url = f"postgresql://app:s3cret-pw@127.0.0.1:{free_port()}/db"
    store = PgVectorStore(url, name="pgbad")
    with pytest.raises(VectorStoreError) as caught:
        await store.list_indexes()
    message = str(caught.value)
    assert "could not connect to postgresql://app@127.0.0.1" in message
    assert "vector store 'pgbad'" in message
    assert "s3cret-pw" not in message
    assert caught.value.retryable is True
    assert await store.health() is False
    await store.aclose()


async def test_wrong_password_and_missing_database(pgvector_url: str) -> None:
    base = pgvector_url.rsplit("/", 1)[0]
    user_host = base.split("@", 1)[1]
    bad = PgVectorStore(f"postgresql://postgres:wrong-pw-123@{user_host}/postgres", name="pw")
    with pytest.raises(VectorStoreError, match="refused the login") as caught:
        await bad.create_index("i", 2)
    assert "wrong-pw-123" not in str(caught.value)
    await bad.aclose()
    missing = PgVectorStore(f"{base}/no_such_db", name="nodb")
    with pytest.raises(VectorStoreError, match="no_such_db") as caught:
        await missing.list_indexes()
    assert pgvector_url.split(":")[2].split("@")[0] not in str(caught.value)  # the password
    await missing.aclose()


async def test_server_without_the_extension(empty_postgres_url: str) -> None:
    # the machine's own PostgreSQL (tests/support/postgres.py) has no pgvector; its URL is
    # SQLAlchemy-style (postgresql+asyncpg://)
    store = PgVectorStore(empty_postgres_url, name="plain")
    with pytest.raises(VectorStoreError, match="pgvector extension is not installed") as caught:
        await store.create_index("i", 2)
    message = str(caught.value)
    assert "vector store 'plain'" in message and "CREATE EXTENSION vector" in message
    password = empty_postgres_url.split("@", 1)[0].rsplit(":", 1)[1]
    assert password not in message
    await store.aclose()


async def test_index_errors(pg_store: PgVectorStore) -> None:
    with pytest.raises(IndexNotFoundError, match="no index 'ghost'"):
        await pg_store.upsert("ghost", [VectorRecord("a", [1.0])])
    with pytest.raises(IndexNotFoundError):
        await pg_store.delete("ghost", ids=["a"])
    with pytest.raises(IndexNotFoundError):
        await pg_store.index_metadata("ghost")


async def test_missing_client_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from llm_orchestrator.exceptions import MissingDependencyError

    monkeypatch.setitem(sys.modules, "pgvector.asyncpg", None)
    store = PgVectorStore("postgresql://u:pw@127.0.0.1:1/db")
    with pytest.raises(MissingDependencyError, match=r"llm-orchestrator\[pgvector\]"):
        await store.list_indexes()


def test_redact_url() -> None:
    assert redact_url("postgresql://u:pw@h:5/db?password=pw") == "postgresql://u@h:5/db"
    assert redact_url("postgresql+asyncpg://h/db") == "postgresql+asyncpg://h/db"


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="db_schema"):
        PgVectorStore("postgresql://h/db", schema="a-b")
    with pytest.raises(ValueError, match="text_search_config"):
        PgVectorStore("postgresql://h/db", text_search_config="english'; --")
    with pytest.raises(ValueError, match="ef_search"):
        PgVectorStore("postgresql://h/db", ef_search=1001)


async def test_unknown_text_search_config(pgvector_url: str) -> None:
    store = PgVectorStore(pgvector_url, text_search_config="klingon", name="tlh")
    with pytest.raises(VectorStoreError, match=r"vector store 'tlh'.*index 'i'.*klingon"):
        await store.create_index("i", 2)
    assert await store.list_indexes() == []
    await store.aclose()


# -- filter translation ------------------------------------------------------------------


def sql_of(raw: dict[str, Any]) -> tuple[str, list[Any]]:
    return translate_filter(parse_filter(raw))


def test_translate_filter() -> None:
    assert sql_of({"source": "faq"}) == ("(metadata @> $1::jsonb)", [{"source": "faq"}])
    assert sql_of({"a": {"$ne": True}}) == (
        "((metadata -> $1::text) <> $2::jsonb)",
        ["a", True],
    )
    assert sql_of({"y": {"$gte": 2020}}) == (
        "(jsonb_typeof(metadata -> $1::text) = 'number' AND (metadata -> $1::text) >= $2::jsonb)",
        ["y", 2020],
    )
    assert sql_of({"l": {"$in": ["de", 1]}}) == (
        "(metadata @> $1::jsonb OR metadata @> $2::jsonb)",
        [{"l": "de"}, {"l": 1}],
    )
    assert sql_of({"l": {"$nin": ["de", "fr"]}}) == (
        "(NOT ((metadata -> $1::text) = ANY($2::jsonb[])))",
        ["l", ["de", "fr"]],
    )
    sql, params = sql_of({"$or": [{"a": 1}, {"$and": [{"b": {"$lt": 2}}, {"c": "x"}]}]})
    assert sql.startswith("((metadata @> $1::jsonb) OR ((jsonb_typeof(metadata -> $2::text)")
    assert params == [{"a": 1}, "b", 2, {"c": "x"}]
    # placeholders continue after what the query already binds
    params = ["namespace"]
    sql, out = translate_filter(parse_filter({"a": 1}), params)
    assert (sql, out) == ("(metadata @> $2::jsonb)", ["namespace", {"a": 1}])
    validate_for("pgvector", {"$or": [{"a": {"$nin": [1, "x", True]}}, {"b": 1.5}]})


def test_translate_filter_refuses_what_it_cannot_express() -> None:
    from llm_orchestrator.vectordb.filters import Condition, Or

    with pytest.raises(ValueError, match="compares numbers"):
        translate_filter(Condition("a", "$gt", "x"))
    with pytest.raises(ValueError, match="at least one"):
        translate_filter(Or(()))
    with pytest.raises(ValueError, match="unsupported operator"):
        translate_filter(Condition("a", "$regex", "x"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cannot translate"):
        translate_filter("a")  # type: ignore[arg-type]


# -- configuration -----------------------------------------------------------------------


async def test_registry_builds_the_store(tmp_path: Path) -> None:
    registry = VectorStoreRegistry(
        {
            "pg": {
                "type": "pgvector",
                "url": "postgresql://u:pw@127.0.0.1:5/db",
                "db_schema": "rag",
                "text_search_config": "simple",
                "pool_size": 3,
                "hnsw_ef_search": 64,
            }
        },
        tmp_path,
    )
    store = registry.get("pg")
    # PostgreSQL has its own full-text engine: no SQLite keyword mirror around it
    assert isinstance(store, PgVectorStore)
    assert (store.name, store.schema, store.text_search_config, store.pool_size) == (
        "pg",
        "rag",
        "simple",
        3,
    )
    assert store.ef_search == 64
    assert store.url == "postgresql://u@127.0.0.1:5/db"
    assert "pw" not in repr(store)
    assert registry.kind("pg") == "pgvector"
    await close_all_vector_stores()
