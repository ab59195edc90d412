"""Vector stores by name.

With no configuration, `default` is the embedded Chroma store under `<LLMO_HOME>/vectors/chroma`.
Stores without a full-text engine are wrapped in a `KeywordMirror` (see `keyword.py`).
Named stores come from a `vector_stores:` mapping of `VectorStoreConfig` (settings field
`vector_stores: dict[str, VectorStoreConfig]`). Store instances are shared process-wide (one
client per configuration: Qdrant's local mode allows only one per path); close them with
`close_all_vector_stores()`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llm_orchestrator.exceptions import ConfigurationError
from llm_orchestrator.settings import ChromaConfig, Settings, VectorStoreConfig
from llm_orchestrator.vectordb.base import KeywordSearcher, VectorStore

DEFAULT_STORE = "default"

#: store type -> (adapter module, client package it imports, pip extra that installs it);
#: each adapter module has `from_config(name, config, resolve_path) -> VectorStore`
BACKENDS: dict[str, tuple[str, str, str]] = {
    "chroma": ("llm_orchestrator.vectordb.chroma", "chromadb", "rag"),
    "qdrant": ("llm_orchestrator.vectordb.qdrant", "qdrant_client", "rag"),
    "pgvector": ("llm_orchestrator.vectordb.pgvector", "pgvector", "pgvector"),
    "pinecone": ("llm_orchestrator.vectordb.pinecone", "pinecone", "pinecone"),
    "weaviate": ("llm_orchestrator.vectordb.weaviate", "weaviate", "weaviate"),
}

_shared: dict[tuple[str, str, str], VectorStore] = {}
_shared_lock = threading.Lock()


def _default_config() -> ChromaConfig:
    return ChromaConfig(type="chroma", path="vectors/chroma")


class VectorStoreRegistry:
    """Resolves store names to (shared) store instances; `check` never touches the network."""

    def __init__(self, configs: Mapping[str, Any] | None, home: Path) -> None:
        from pydantic import BaseModel, TypeAdapter, ValidationError

        self.home = home
        self.configs: dict[str, Any] = {}
        adapter: TypeAdapter[Any] = TypeAdapter(VectorStoreConfig)
        for name, raw in (configs or {}).items():
            if isinstance(raw, BaseModel):
                self.configs[name] = raw
                continue
            try:
                self.configs[name] = adapter.validate_python(raw)
            except ValidationError as exc:
                raise ConfigurationError(f"vector_stores.{name}: {exc}") from exc
        if DEFAULT_STORE not in self.configs:
            self.configs[DEFAULT_STORE] = _default_config()

    @classmethod
    def from_settings(cls, settings: Settings) -> VectorStoreRegistry:
        """The stores of `vector_stores:` in the config file, plus `default`."""
        return cls(settings.vector_stores, settings.home)

    def names(self) -> list[str]:
        return sorted(self.configs)

    def kind(self, name: str) -> str | None:
        config = self.configs.get(name)
        return str(config.type) if config is not None else None

    def check(self, name: str) -> str | None:
        """Why `name` cannot be used (unknown, or its client package missing), or None."""
        config = self.configs.get(name)
        if config is None:
            return (
                f"unknown vector store '{name}'; configured: {', '.join(self.names())} "
                "(add it under vector_stores in llm-orchestrator.yaml)"
            )
        import importlib.util

        _module, package, extra = BACKENDS[config.type]
        if importlib.util.find_spec(package) is None:
            return (
                f"vector store '{name}' ({config.type}) needs the package '{package}': "
                f"pip install 'llm-orchestrator[{extra}]'"
            )
        return None

    def get(self, name: str) -> VectorStore:
        problem = self.check(name)
        if problem is not None:
            raise ConfigurationError(problem)
        config = self.configs[name]
        key = (name, config.model_dump_json(), str(self.home))
        with _shared_lock:
            store = _shared.get(key)
            if store is None:
                store = self._construct(name, config)
                _shared[key] = store
        return store

    def _path(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.home / p

    def _construct(self, name: str, config: Any) -> VectorStore:
        import hashlib
        import importlib

        from llm_orchestrator.vectordb.keyword import KeywordIndex, KeywordMirror

        module = importlib.import_module(BACKENDS[config.type][0])
        store: VectorStore = module.from_config(name, config, self._path)
        if isinstance(store, KeywordSearcher):
            return store
        # no full-text engine of its own: keyword search from a local FTS5 mirror, one file
        # per store name and location
        digest = hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:10]
        path = self.home / "vectors" / "keyword" / f"{name}-{digest}.sqlite"
        return KeywordMirror(store, KeywordIndex(path))


async def close_all_vector_stores() -> None:
    """Close every shared store and forget it; for shutdown and tests."""
    with _shared_lock:
        stores = list(_shared.values())
        _shared.clear()
    results = await asyncio.gather(*(s.aclose() for s in stores), return_exceptions=True)
    errors = [r for r in results if isinstance(r, Exception)]
    if errors:
        raise ExceptionGroup("closing vector stores failed", errors)
