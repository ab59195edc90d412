"""`RedisCachedStore`: a `StateStore` that serves the state of active runs from Redis.

Only `get_run` and `get_steps` of runs that are not finished are cached; everything else goes
straight to the wrapped store. The database stays the source of truth:

    read   Redis (MGET entry, run version, epoch) ─hit─▶ value
             └─miss─▶ database ─▶ SET entry (only if the version and epoch are unchanged)
    write  database (commit) ─▶ INCR run version + DEL its entries ─▶ return

A writer bumps the run's version after its commit, and a reader only fills the cache if the
version it saw before reading the database is still current (one Lua script), so a slow
reader cannot put back state older than a write that has returned. `delete_runs` and
`purge_user` do not know which runs they touch: they bump a global epoch and drop every entry.

Redis is optional at run time: when it is down or errors, one warning is logged per outage,
reads and writes use the database, and invalidations that could not be sent are kept and sent
before this store reads from Redis again. Other processes' entries are bounded by the TTL.

Entries are the codec's sealed blobs (JSON, zlib, cipher): with a cipher, Redis holds only
ciphertext. Pass the cipher the wrapped store uses.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Sequence
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from llm_orchestrator.exceptions import ConfigurationError, StateError
from llm_orchestrator.state.codec import BlobCodec, Cipher
from llm_orchestrator.state.models import (
    CheckpointInfo,
    LedgerEntry,
    RunState,
    StoredRun,
    StoredStep,
    WorkflowDefinition,
)
from llm_orchestrator.state.store import StateStore

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = ["CacheStats", "RedisCachedStore"]

log = logging.getLogger(__name__)

D = TypeVar("D", bound="DataclassInstance")
T = TypeVar("T")

_RUN = "run"
_STEPS = "steps"

#: above this many unsent invalidations, every entry is dropped instead
MAX_PENDING = 10_000

#: SET the entry KEYS[1] only if the run version KEYS[2] and the epoch KEYS[3] are still what
#: the reader saw before it read the database (ARGV[1], ARGV[2]; "" for a missing key)
_FILL_SCRIPT = """
if (redis.call('GET', KEYS[2]) or '') == ARGV[1]
    and (redis.call('GET', KEYS[3]) or '') == ARGV[2] then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
  return 1
end
return 0
"""


@dataclasses.dataclass
class CacheStats:
    """Counters, for tests and metrics."""

    #: get_run / get_steps answered from Redis
    hits: int = 0
    #: get_run / get_steps answered by the database (absent, unusable or Redis down)
    misses: int = 0
    #: entries written to Redis
    stores: int = 0
    #: runs whose entries were dropped after a write
    invalidations: int = 0
    #: Redis calls that failed
    errors: int = 0
    #: times Redis became unusable (one warning each)
    outages: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class _Token:
    """The run version and epoch a reader saw before it read the database."""

    version: bytes
    epoch: bytes


def display_url(url: str) -> str:
    """The URL with its password masked, for messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port is not None else ""
    netloc = f"{user}:***@{host}{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _bytes(value: bytes | str | None) -> bytes | None:
    """A Redis reply as bytes (the client is made with decode_responses=False)."""
    return value.encode() if isinstance(value, str) else value


def _plain(obj: DataclassInstance) -> dict[str, Any]:
    """A stored dataclass as JSON values (datetimes as ISO text, enums as their value)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, Enum):
            value = value.value
        out[f.name] = value
    return out


def _restore(cls: type[D], data: dict[str, Any]) -> D:
    """The inverse of `_plain`. A missing field raises KeyError: the entry was written by
    an older version (the caller then reads the database instead of guessing a default)."""
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        value = data[f.name]
        if value is not None and "datetime" in str(f.type):
            value = datetime.fromisoformat(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def _run_from(data: Any) -> StoredRun:
    run = _restore(StoredRun, data["run"])
    return dataclasses.replace(run, status=RunState(run.status))


def _steps_from(data: Any) -> list[StoredStep]:
    return [_restore(StoredStep, item) for item in data["steps"]]


class RedisCachedStore:
    """A `StateStore` wrapping `inner`, caching active runs' state in Redis for `ttl_seconds`.

    `cipher` seals the cached values (use the wrapped store's; without one, a `codec`
    attribute of `inner` is used if it has one, else values are stored unencrypted).
    `key_prefix` separates deployments sharing one Redis. Redis calls give up after
    `timeout_seconds`; after a failure Redis is tried again `retry_seconds` later.
    """

    def __init__(
        self,
        inner: StateStore,
        redis_url: str,
        ttl_seconds: float = 300,
        *,
        cipher: Cipher | None = None,
        key_prefix: str = "llmo:state",
        timeout_seconds: float = 0.5,
        retry_seconds: float = 5.0,
        max_value_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        if ttl_seconds <= 0:
            raise ConfigurationError(f"redis_ttl_seconds must be > 0, not {ttl_seconds}")
        self.inner = inner
        self.url = display_url(redis_url)
        self.ttl_ms = max(1, int(ttl_seconds * 1000))
        #: a run version outlives its entries by far: a reader compares against it
        self.version_ttl_ms = max(2 * self.ttl_ms, 3_600_000)
        self.prefix = key_prefix
        self.retry_seconds = retry_seconds
        self.max_value_bytes = max_value_bytes
        self.stats = CacheStats()
        inner_codec = getattr(inner, "codec", None)
        if cipher is None and isinstance(inner_codec, BlobCodec):
            self._codec = inner_codec
        else:
            self._codec = BlobCodec(cipher)
        try:
            self._redis: Redis = Redis.from_url(
                redis_url,
                socket_timeout=timeout_seconds,
                socket_connect_timeout=timeout_seconds,
                retry=Retry(NoBackoff(), 1),
                client_name="llm-orchestrator",
            )
        except ValueError as exc:
            raise ConfigurationError(
                f"LLMO_REDIS_URL {self.url!r} is not a Redis URL (redis://host:port/db): {exc}"
            ) from exc
        self._fill_script = self._redis.register_script(_FILL_SCRIPT)
        self._epoch_key = f"{key_prefix}:epoch"
        #: monotonic time of the current outage's start, None while Redis works
        self._down_since: float | None = None
        self._retry_at = 0.0
        #: runs written while their entries could not be dropped; dropped before any read
        self._pending: set[str] = set()
        self._pending_all = False

    def __repr__(self) -> str:
        return f"RedisCachedStore({self.inner!r}, {self.url!r})"

    # -- keys, health --------------------------------------------------------------------

    def _key(self, kind: str, run_id: str) -> str:
        return f"{self.prefix}:{kind}:{run_id}"

    def _failed(self, action: str, exc: BaseException) -> None:
        """Note a failed Redis call: warn once per outage, then skip Redis for a while."""
        self.stats.errors += 1
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
            self.stats.outages += 1
            log.warning(
                "Redis at %s failed (%s: %s: %s); run state is read from the database "
                "until Redis answers again",
                self.url,
                action,
                type(exc).__name__,
                exc,
            )
        else:
            log.debug("Redis at %s still failing (%s: %s)", self.url, action, exc)
        self._retry_at = now + self.retry_seconds

    def _succeeded(self) -> None:
        if self._down_since is not None:
            log.info(
                "Redis at %s answers again after %.1fs; caching active runs again",
                self.url,
                time.monotonic() - self._down_since,
            )
            self._down_since = None

    def _resting(self) -> bool:
        """Whether Redis failed recently and is not to be tried yet."""
        return self._down_since is not None and time.monotonic() < self._retry_at

    # -- invalidation --------------------------------------------------------------------

    def _mark(self, run_ids: Sequence[str] | None) -> None:
        """Remember that these runs' entries (None: all entries) must be dropped."""
        if run_ids is None or len(self._pending) + len(run_ids) > MAX_PENDING:
            self._pending_all = True
            self._pending.clear()
        elif not self._pending_all:
            self._pending.update(run_ids)

    async def _flush_pending(self) -> bool:
        """Drop every entry marked stale; False if Redis could not be reached."""
        if not (self._pending or self._pending_all):
            return True
        if self._resting():
            return False
        try:
            if self._pending_all:
                await self._drop_all()
                self._pending_all = False
                self._pending.clear()
            else:
                ids = sorted(self._pending)
                await self._drop(ids)
                self._pending.difference_update(ids)
        except (RedisError, OSError) as exc:
            self._failed("dropping stale entries", exc)
            return False
        self._succeeded()
        return True

    async def _drop(self, run_ids: Sequence[str]) -> None:
        pipe = self._redis.pipeline(transaction=True)
        for run_id in run_ids:
            version = self._key("version", run_id)
            pipe.incr(version)
            pipe.pexpire(version, self.version_ttl_ms)
            pipe.delete(self._key(_RUN, run_id), self._key(_STEPS, run_id))
        await pipe.execute()
        self.stats.invalidations += len(run_ids)

    async def _drop_all(self) -> None:
        """Bump the epoch (so in-flight fills fail), then delete every entry."""
        await self._redis.incr(self._epoch_key)
        pattern_prefix = "".join("\\" + c if c in "*?[]\\" else c for c in self.prefix)
        for kind in (_RUN, _STEPS):
            batch: list[bytes] = []
            async for key in self._redis.scan_iter(match=f"{pattern_prefix}:{kind}:*", count=500):
                batch.append(key)
                if len(batch) >= 500:
                    await self._redis.delete(*batch)
                    batch = []
            if batch:
                await self._redis.delete(*batch)
        self.stats.invalidations += 1

    async def _invalidate(self, run_ids: Sequence[str] | None) -> None:
        """After a database write: drop the affected entries (None: all) before returning.
        If Redis cannot be reached they stay marked and are dropped before the next read."""
        self._mark(run_ids)
        await self._flush_pending()

    async def _writing(self, run_ids: Sequence[str] | None, write: Awaitable[T]) -> T:
        """Await the database write `write`, then invalidate. A failed write may still have
        committed (a lost COMMIT reply), so its entries are dropped too; a cancelled one's
        are marked, to be dropped before the next read."""
        try:
            result = await write
        except Exception:
            await self._invalidate(run_ids)
            raise
        except BaseException:
            self._mark(run_ids)
            raise
        await self._invalidate(run_ids)
        return result

    # -- cached reads --------------------------------------------------------------------

    async def _lookup(
        self, run_id: str, kind: str
    ) -> tuple[bytes | None, bytes | None, _Token | None]:
        """The cached `kind` entry and run entry of `run_id`, and the token a fill needs;
        (None, None, None) when Redis is not usable now."""
        if not await self._flush_pending() or self._resting():
            return None, None, None
        keys = [
            self._key(kind, run_id),
            self._key(_RUN, run_id),
            self._key("version", run_id),
            self._epoch_key,
        ]
        try:
            entry, run_entry, version, epoch = await self._redis.mget(keys)
        except (RedisError, OSError) as exc:
            self._failed(f"reading run {run_id}", exc)
            return None, None, None
        self._succeeded()
        return (
            _bytes(entry),
            _bytes(run_entry),
            _Token(_bytes(version) or b"", _bytes(epoch) or b""),
        )

    def _decode(self, run_id: str, kind: str, blob: bytes | None, parse: Any) -> Any:
        """A cached entry as a value; an entry that cannot be read is logged and ignored."""
        if blob is None:
            return None
        try:
            return parse(self._codec.unseal(blob))
        except (StateError, KeyError, TypeError, ValueError) as exc:
            self.stats.errors += 1
            log.warning(
                "cached %s of run %s in Redis at %s cannot be read (%s: %s); using the "
                "database and dropping the entry",
                kind,
                run_id,
                self.url,
                type(exc).__name__,
                exc,
            )
            self._mark([run_id])
            return None

    async def _fill(self, run_id: str, kind: str, value: dict[str, Any], token: _Token) -> None:
        """Cache `value` unless a write happened since `token` was read."""
        blob = self._codec.seal(value, f"cached {kind} of run {run_id}").data
        if len(blob) > self.max_value_bytes:
            return
        try:
            stored = await self._fill_script(
                keys=[self._key(kind, run_id), self._key("version", run_id), self._epoch_key],
                args=[token.version, token.epoch, blob, self.ttl_ms],
            )
        except (RedisError, OSError) as exc:
            self._failed(f"caching run {run_id}", exc)
            return
        self._succeeded()
        if stored:
            self.stats.stores += 1

    @staticmethod
    def _active(run: StoredRun | None) -> bool:
        return run is not None and not RunState(run.status).finished

    async def get_run(self, run_id: str) -> StoredRun | None:
        """The run, from Redis while it is active and cached, else from the database."""
        entry, _, token = await self._lookup(run_id, _RUN)
        cached: StoredRun | None = self._decode(run_id, _RUN, entry, _run_from)
        if cached is not None:
            self.stats.hits += 1
            return cached
        self.stats.misses += 1
        run = await self.inner.get_run(run_id)
        if token is not None and run is not None and self._active(run):
            await self._fill(run_id, _RUN, {"run": _plain(run)}, token)
        return run

    async def get_steps(self, run_id: str) -> list[StoredStep]:
        """The run's steps, from Redis while the run is active and cached, else from the
        database."""
        entry, run_entry, token = await self._lookup(run_id, _STEPS)
        cached: list[StoredStep] | None = self._decode(run_id, _STEPS, entry, _steps_from)
        if cached is not None:
            self.stats.hits += 1
            return cached
        self.stats.misses += 1
        steps = await self.inner.get_steps(run_id)
        if token is None:
            return steps
        run: StoredRun | None = self._decode(run_id, _RUN, run_entry, _run_from)
        if run is None:
            run = await self.inner.get_run(run_id)
            if run is not None and self._active(run):
                await self._fill(run_id, _RUN, {"run": _plain(run)}, token)
        if self._active(run):
            await self._fill(run_id, _STEPS, {"steps": [_plain(s) for s in steps]}, token)
        return steps

    # -- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        """Open the wrapped store and check Redis (a Redis that is down only logs)."""
        await self.inner.open()
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            self._failed("connecting", exc)
        else:
            self._succeeded()

    async def close(self) -> None:
        """Close the wrapped store and the Redis client."""
        try:
            await self.inner.close()
        finally:
            await self._redis.aclose()

    # -- writes: database first, then the affected entries are dropped -------------------

    async def save_workflow(self, definition: WorkflowDefinition) -> None:
        await self.inner.save_workflow(definition)

    async def get_workflow(self, workflow_hash: str) -> WorkflowDefinition | None:
        return await self.inner.get_workflow(workflow_hash)

    async def create_run(self, run: StoredRun) -> None:
        await self._writing([run.id], self.inner.create_run(run))

    async def update_run(
        self,
        run_id: str,
        *,
        status: RunState | None = None,
        error: dict[str, Any] | None = None,
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
        usage: tuple[int, int, float] | None = None,
        owner: str | None = None,
        lease_expires_at: datetime | None = None,
        workflow_hash: str | None = None,
    ) -> None:
        await self._writing(
            [run_id],
            self.inner.update_run(
                run_id,
                status=status,
                error=error,
                started_at=started_at,
                finished_at=finished_at,
                usage=usage,
                owner=owner,
                lease_expires_at=lease_expires_at,
                workflow_hash=workflow_hash,
            ),
        )

    async def list_runs(
        self,
        *,
        status: RunState | None = None,
        workflow: str | None = None,
        since: datetime | None = None,
        user_id: str | None = None,
        limit: int = 100,
    ) -> list[StoredRun]:
        return await self.inner.list_runs(
            status=status, workflow=workflow, since=since, user_id=user_id, limit=limit
        )

    async def record_step(self, step: StoredStep, *, checkpoint: bool = True) -> None:
        await self._writing([step.run_id], self.inner.record_step(step, checkpoint=checkpoint))

    async def list_checkpoints(self, run_id: str) -> list[CheckpointInfo]:
        return await self.inner.list_checkpoints(run_id)

    async def load_checkpoint(self, checkpoint_id: str) -> tuple[StoredRun, list[StoredStep]]:
        return await self.inner.load_checkpoint(checkpoint_id)

    async def claim_interrupted(
        self, owner: str, lease_seconds: float, limit: int = 100
    ) -> list[StoredRun]:
        try:
            claimed = await self.inner.claim_interrupted(owner, lease_seconds, limit)
        except Exception:
            await self._invalidate(None)  # which runs it changed is unknown
            raise
        except BaseException:
            self._mark(None)
            raise
        await self._invalidate([run.id for run in claimed])
        return claimed

    async def heartbeat(self, run_ids: Sequence[str], owner: str, lease_seconds: float) -> int:
        ids = list(run_ids)
        return await self._writing(ids, self.inner.heartbeat(ids, owner, lease_seconds))

    async def ledger_claim(self, run_id: str, step_id: str, key: str) -> LedgerEntry:
        return await self.inner.ledger_claim(run_id, step_id, key)

    async def ledger_receipt(
        self, run_id: str, step_id: str, key: str, receipt: dict[str, Any]
    ) -> None:
        await self.inner.ledger_receipt(run_id, step_id, key, receipt)

    async def prune_checkpoints(self, *, keep_last: int, older_than: datetime) -> int:
        return await self.inner.prune_checkpoints(keep_last=keep_last, older_than=older_than)

    async def delete_runs(self, *, finished_before: datetime) -> int:
        return await self._writing(None, self.inner.delete_runs(finished_before=finished_before))

    async def purge_user(self, user_id: str) -> int:
        return await self._writing(None, self.inner.purge_user(user_id))

    async def storage_stats(self) -> dict[str, int]:
        return await self.inner.storage_stats()
