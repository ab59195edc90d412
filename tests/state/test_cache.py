"""RedisCachedStore against a real redis-server: hits and misses, write-through invalidation
(also across two stores, and against a slow reader), finished runs not cached, ciphertext in
Redis, Redis down or cut off mid-test, and full Orchestrator runs on top. The shared StateStore
contract runs on it too."""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis

from llm_orchestrator import Orchestrator, RunStatus, Settings, load_workflow
from llm_orchestrator.exceptions import ConfigurationError
from llm_orchestrator.state import cache as cache_module
from llm_orchestrator.state import open_store
from llm_orchestrator.state.cache import RedisCachedStore
from llm_orchestrator.state.codec import BlobCodec
from llm_orchestrator.state.crypto import FERNET_PREFIX, FernetCipher, generate_key
from llm_orchestrator.state.models import RunState, StoredRun
from llm_orchestrator.state.sql import SQLStateStore
from llm_orchestrator.state.store import StateStore
from tests.state.contract import StateStoreContract, completed, new_run
from tests.support import redis as redis_support
from tests.support.redis import CuttableProxy, free_port, unique_prefix

#: the session's Redis server (LLMO_TEST_REDIS_URL or a redis-server started for the session)
redis_url = redis_support.redis_url

LOGGER = "llm_orchestrator.state.cache"

CHAIN = """
name: cached-chain
inputs: {n: {type: integer}}
steps:
  - {id: s1, type: probe, value: "{{ inputs.n + 1 }}"}
  - {id: s2, type: probe, depends_on: [s1], value: "{{ steps.s1.result * 10 }}"}
  - {id: s3, type: probe, depends_on: [s2], value: "{{ steps.s2.result + 5 }}", FAIL}
"""


def chain(fail: bool = False) -> Any:
    extra = "fail_times: 9, error: auth, retry: {max_attempts: 1}" if fail else "sleep: 0"
    return load_workflow("chain.yaml", text=CHAIN.replace("FAIL", extra))


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'state.db'}"


@pytest.fixture
async def prefix(redis_url: str) -> AsyncIterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    chosen = unique_prefix()
    yield chosen
    client = Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{chosen}:*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def raw_redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def store(db_url: str, redis_url: str, prefix: str) -> AsyncIterator[RedisCachedStore]:
    cached = RedisCachedStore(SQLStateStore(db_url), redis_url, key_prefix=prefix)
    await cached.open()
    yield cached
    await cached.close()


@pytest.fixture
async def second_store(
    store: RedisCachedStore, db_url: str, redis_url: str, prefix: str
) -> AsyncIterator[RedisCachedStore]:
    """Another process: its own database connections and Redis client, the same data."""
    cached = RedisCachedStore(SQLStateStore(db_url), redis_url, key_prefix=prefix)
    await cached.open()
    yield cached
    await cached.close()


class TestRedisCachedStore(StateStoreContract):
    pass


def warnings_in(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= 30]


# -- hits, misses, invalidation ------------------------------------------------------------


async def test_second_get_run_is_served_from_redis(store: RedisCachedStore) -> None:
    run = await new_run(store, "run-1")
    first = await store.get_run("run-1")
    assert (store.stats.hits, store.stats.misses, store.stats.stores) == (0, 1, 1)
    second = await store.get_run("run-1")
    assert (store.stats.hits, store.stats.misses) == (1, 1)
    assert first == second == run
    assert second is not None and isinstance(second.status, RunState)


async def test_unknown_run_is_a_miss_and_not_cached(store: RedisCachedStore) -> None:
    assert await store.get_run("missing") is None
    assert await store.get_run("missing") is None
    assert (store.stats.hits, store.stats.misses, store.stats.stores) == (0, 2, 0)


async def test_steps_are_cached_until_a_step_is_recorded(store: RedisCachedStore) -> None:
    await new_run(store, "run-1")
    await store.record_step(completed("run-1", "a", {"text": "one"}))
    first = await store.get_steps("run-1")
    assert await store.get_steps("run-1") == first
    assert (store.stats.hits, store.stats.misses) == (1, 1)
    await store.record_step(completed("run-1", "b", {"text": "two"}))
    steps = await store.get_steps("run-1")
    assert [s.outputs for s in steps] == [{"text": "one"}, {"text": "two"}]
    assert store.stats.misses == 2


async def test_a_write_is_seen_by_the_next_read(
    store: RedisCachedStore, second_store: RedisCachedStore
) -> None:
    await new_run(store, "run-1")
    for reader in (store, second_store):
        await reader.get_run("run-1")
        await reader.get_run("run-1")
    # one shared entry: filled by the first store, served to both
    assert (store.stats.hits, second_store.stats.hits) == (1, 2)
    await store.update_run("run-1", status=RunState.PAUSED, owner="worker-2")
    for reader in (store, second_store):
        got = await reader.get_run("run-1")
        assert got is not None and got.status is RunState.PAUSED and got.owner == "worker-2"
    await second_store.heartbeat(["run-1"], "worker-2", 60)
    got = await store.get_run("run-1")
    assert got is not None and got.lease_expires_at is not None


async def test_finished_runs_are_not_cached(
    store: RedisCachedStore, raw_redis: Redis, prefix: str
) -> None:
    await new_run(store, "run-1")
    await store.record_step(completed("run-1", "a", {"text": "one"}))
    await store.get_run("run-1")
    await store.get_steps("run-1")
    assert await raw_redis.exists(f"{prefix}:run:run-1", f"{prefix}:steps:run-1") == 2
    await store.update_run("run-1", status=RunState.COMPLETED)
    assert await raw_redis.exists(f"{prefix}:run:run-1", f"{prefix}:steps:run-1") == 0
    before = store.stats.stores
    for _ in range(2):
        got = await store.get_run("run-1")
        assert got is not None and got.status is RunState.COMPLETED
        assert len(await store.get_steps("run-1")) == 1
    assert store.stats.hits == 0 and store.stats.stores == before
    assert await raw_redis.exists(f"{prefix}:run:run-1", f"{prefix}:steps:run-1") == 0


class SlowReads:
    """Delegates to a store; when `slow`, get_run reads the database, then waits."""

    def __init__(self, inner: StateStore) -> None:
        self.inner = inner
        self.slow = False
        self.has_read = asyncio.Event()
        self.release = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def get_run(self, run_id: str) -> StoredRun | None:
        run = await self.inner.get_run(run_id)
        if self.slow:
            self.has_read.set()
            await self.release.wait()
        return run


async def test_a_slow_reader_cannot_put_back_state_older_than_a_write(
    db_url: str, redis_url: str, prefix: str
) -> None:
    slow = SlowReads(SQLStateStore(db_url))
    cache = RedisCachedStore(slow, redis_url, key_prefix=prefix)
    await cache.open()
    try:
        await new_run(cache, "run-1")
        slow.slow = True
        async with asyncio.TaskGroup() as group:
            reader = group.create_task(cache.get_run("run-1"))
            await slow.has_read.wait()
            await cache.update_run("run-1", status=RunState.PAUSED)
            slow.release.set()
        assert reader.result().status is RunState.RUNNING  # type: ignore[union-attr]
        assert cache.stats.stores == 0  # its fill was refused
        slow.slow = False
        got = await cache.get_run("run-1")
        assert got is not None and got.status is RunState.PAUSED
    finally:
        await cache.close()


async def test_purge_user_drops_cached_runs(store: RedisCachedStore) -> None:
    await new_run(store, "run-1", user_id="alice")
    await new_run(store, "run-2", user_id="bob")
    for run_id in ("run-1", "run-2"):
        await store.get_run(run_id)
    assert await store.purge_user("alice") == 1
    assert await store.get_run("run-1") is None
    assert await store.get_run("run-2") is not None


async def test_an_unreadable_entry_falls_back_to_the_database(
    store: RedisCachedStore, raw_redis: Redis, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    run = await new_run(store, "run-1", user_id="alice")
    await raw_redis.set(f"{prefix}:run:run-1", b"not a sealed blob")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert await store.get_run("run-1") == run
    assert any("cannot be read" in m for m in warnings_in(caplog))
    assert await store.get_run("run-1") == run
    assert await store.get_run("run-1") == run
    assert store.stats.hits == 1
    # an entry from an older version (a field missing) is not completed with a default
    entry = {"run": {k: v for k, v in cache_module._plain(run).items() if k != "user_id"}}
    await raw_redis.set(f"{prefix}:run:run-1", BlobCodec().seal(entry, "test").data)
    assert await store.get_run("run-1") == run
    assert store.stats.hits == 1


async def test_cached_values_are_sealed_with_the_cipher(
    db_url: str, redis_url: str, raw_redis: Redis, prefix: str
) -> None:
    cipher = FernetCipher([generate_key()])
    cache = RedisCachedStore(
        SQLStateStore(db_url, cipher=cipher), redis_url, 60, cipher=cipher, key_prefix=prefix
    )
    await cache.open()
    try:
        await new_run(cache, "run-1", inputs={"q": "secret-input-42"})
        await cache.record_step(completed("run-1", "a", {"text": "secret-output-42"}))
        assert (await cache.get_run("run-1")).inputs == {"q": "secret-input-42"}  # type: ignore[union-attr]
        await cache.get_steps("run-1")
        assert (await cache.get_steps("run-1"))[0].outputs == {"text": "secret-output-42"}
        assert cache.stats.hits == 1
    finally:
        await cache.close()
    for kind in ("run", "steps"):
        key = f"{prefix}:{kind}:run-1"
        value = await raw_redis.get(key)
        assert isinstance(value, bytes) and value.startswith(FERNET_PREFIX)
        with pytest.raises(zlib.error):
            zlib.decompress(value)
        assert b"secret" not in value
        assert 0 < await raw_redis.pttl(key) <= 60_000


def test_a_bad_url_is_a_configuration_error(tmp_path: Path) -> None:
    inner = SQLStateStore(f"sqlite+aiosqlite:///{tmp_path / 's.db'}")
    with pytest.raises(ConfigurationError, match="not a Redis URL"):
        RedisCachedStore(inner, "http://127.0.0.1:1/")


# -- Redis down ----------------------------------------------------------------------------


async def test_redis_down_everything_runs_on_the_database(
    settings: Settings, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    closed = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    cache = RedisCachedStore(SQLStateStore(db_url), closed, retry_seconds=0)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        await cache.open()
        try:
            await new_run(cache, "run-1")
            for _ in range(3):
                assert (await cache.get_run("run-1")) is not None
            await cache.record_step(completed("run-1", "a", {"text": "x"}))
            assert len(await cache.get_steps("run-1")) == 1
            orch = Orchestrator(settings, store=cache)
            try:
                result = await orch.run(chain(), {"n": 1})
            finally:
                await orch.aclose()
            assert result.ok, result.errors
            assert result.outputs["s3"] == {"result": 25}
            run = await cache.get_run(result.run_id)
            assert run is not None and run.status is RunState.COMPLETED
        finally:
            await cache.close()
    warnings = warnings_in(caplog)
    assert len(warnings) == 1, warnings  # once per outage, not per call
    assert "hunter2" not in warnings[0] and "***" in warnings[0]
    assert cache.stats.outages == 1 and cache.stats.errors > 5
    assert cache.stats.hits == 0


async def test_a_partition_mid_test_and_no_stale_entry_after_it(
    db_url: str, redis_url: str, raw_redis: Redis, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    port = urlsplit(redis_url).port or 6379
    proxy = CuttableProxy(port)
    await proxy.restore()
    cache = RedisCachedStore(SQLStateStore(db_url), proxy.url, key_prefix=prefix, retry_seconds=0)
    await cache.open()
    try:
        await new_run(cache, "run-1")
        await cache.get_run("run-1")
        await cache.get_run("run-1")
        assert cache.stats.hits == 1
        await proxy.cut()
        with caplog.at_level(logging.INFO, logger=LOGGER):
            await cache.update_run("run-1", status=RunState.PAUSED)
            for _ in range(3):
                got = await cache.get_run("run-1")
                assert got is not None and got.status is RunState.PAUSED
            await cache.record_step(completed("run-1", "a", {"text": "x"}))
            assert len(await cache.get_steps("run-1")) == 1
            assert len(warnings_in(caplog)) == 1
            # Redis kept the old entry: only this store knows it is stale
            assert await raw_redis.exists(f"{prefix}:run:run-1") == 1
            await proxy.restore()
            got = await cache.get_run("run-1")
            assert got is not None and got.status is RunState.PAUSED
            assert any("answers again" in r.getMessage() for r in caplog.records)
        hits = cache.stats.hits
        got = await cache.get_run("run-1")
        assert got is not None and got.status is RunState.PAUSED
        assert cache.stats.hits == hits + 1  # cached again
        assert cache.stats.outages == 1
    finally:
        await cache.close()
        await proxy.cut()


# -- the Orchestrator on top ---------------------------------------------------------------


async def test_orchestrator_runs_and_resumes_through_the_cache(
    settings: Settings, store: RedisCachedStore
) -> None:
    orch = Orchestrator(settings, store=store)
    try:
        done = await orch.run(chain(), {"n": 1})
        assert done.ok, done.errors
        run = await store.get_run(done.run_id)
        assert run is not None and run.status is RunState.COMPLETED
        failed = await orch.run(chain(fail=True), {"n": 1})
        assert failed.status is RunStatus.FAILED
        resumed = await orch.resume(failed.run_id, chain())
        assert resumed.ok, resumed.errors
        assert resumed.outputs["s3"] == {"result": 25}
    finally:
        await orch.aclose()
    run = await store.get_run(failed.run_id)
    assert run is not None and run.status is RunState.COMPLETED
    assert {s.step_id for s in await store.get_steps(failed.run_id)} == {"s1", "s2", "s3"}


async def test_open_store_wraps_in_the_cache_when_redis_is_configured(
    monkeypatch: pytest.MonkeyPatch, db_url: str, redis_url: str
) -> None:
    monkeypatch.setenv("LLMO_DATABASE_URL", db_url)
    monkeypatch.setenv("LLMO_REDIS_URL", redis_url)
    monkeypatch.setenv("LLMO_STATE__REDIS_TTL_SECONDS", "42")
    store = await open_store(Settings())
    try:
        assert isinstance(store, RedisCachedStore)
        assert store.ttl_ms == 42_000
        await new_run(store, "run-1")
        await store.get_run("run-1")
        await store.get_run("run-1")
        assert store.stats.hits == 1
    finally:
        await store.close()
