"""Durable run state: the `StateStore` protocol, what it stores, and `open_store`.

Importing this package is cheap: the SQL store (SQLAlchemy), encryption (cryptography) and
the Redis cache (redis) are imported when `open_store` needs them, or on first access of
`SQLStateStore`, `RedisCachedStore`, `FernetCipher` from here.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from llm_orchestrator.state.models import CheckpointInfo as CheckpointInfo
from llm_orchestrator.state.models import LedgerEntry as LedgerEntry
from llm_orchestrator.state.models import RunState as RunState
from llm_orchestrator.state.models import StoredRun as StoredRun
from llm_orchestrator.state.models import StoredStep as StoredStep
from llm_orchestrator.state.models import WorkflowDefinition as WorkflowDefinition
from llm_orchestrator.state.store import StateStore as StateStore

if TYPE_CHECKING:
    from llm_orchestrator.settings import Settings
    from llm_orchestrator.state.cache import RedisCachedStore as RedisCachedStore
    from llm_orchestrator.state.crypto import FernetCipher as FernetCipher
    from llm_orchestrator.state.crypto import generate_key as generate_key
    from llm_orchestrator.state.sql import SQLStateStore as SQLStateStore

__all__ = [
    "CheckpointInfo",
    "FernetCipher",
    "LedgerEntry",
    "RedisCachedStore",
    "RunState",
    "SQLStateStore",
    "StateStore",
    "StoredRun",
    "StoredStep",
    "WorkflowDefinition",
    "generate_key",
    "open_store",
]

log = logging.getLogger(__name__)

_LAZY = {
    "SQLStateStore": "llm_orchestrator.state.sql",
    "RedisCachedStore": "llm_orchestrator.state.cache",
    "FernetCipher": "llm_orchestrator.state.crypto",
    "generate_key": "llm_orchestrator.state.crypto",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


async def open_store(settings: Settings) -> StateStore:
    """The configured state store, opened: `SQLStateStore` on `settings.database()`,
    encrypting blobs when keys are configured (LLMO_ENCRYPTION_KEY), wrapped in a
    `RedisCachedStore` when a Redis URL is (LLMO_REDIS_URL). Close it with `close()`."""
    from llm_orchestrator.state.crypto import FernetCipher
    from llm_orchestrator.state.sql import SQLStateStore

    keys = settings.encryption_keys()
    # without keys the codec's default still names LLMO_ENCRYPTION_KEY on an encrypted blob
    cipher = FernetCipher(keys) if keys else None
    store: StateStore = SQLStateStore(settings.database(), settings.state, cipher=cipher)
    redis_url = settings.redis()
    if redis_url:
        from llm_orchestrator.state.cache import RedisCachedStore

        store = RedisCachedStore(store, redis_url, settings.state.redis_ttl_seconds, cipher=cipher)
    try:
        await store.open()
    except BaseException:
        try:
            await store.close()
        except Exception:
            log.exception("closing the state store after it failed to open also failed")
        raise
    return store
