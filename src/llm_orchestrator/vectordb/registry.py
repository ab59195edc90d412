"""Vector stores by name.

With no configuration, `default` is the embedded Chroma store under `<LLMO_HOME>/vectors/chroma`.
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
from llm_orchestrator.settings import ChromaConfig, QdrantConfig, Settings, VectorStoreConfig
from llm_orchestrator.vectordb.base import VectorStore

DEFAULT_STORE = "default"


_shared: dict[tuple[str, str, str], VectorStore] = {}
_shared_lock = threading.Lock()


def _default_config() -> ChromaConfig:
    return ChromaConfig(type="chroma", path="vectors/chroma")


class VectorStoreRegistry:
    """Resolves store names to (shared) store instances; `check` never touches the network."""

    def __init__(self, configs: Mapping[str, Any] | None, home: Path) -> None:
        self.home = home
        self.configs: dict[str, ChromaConfig | QdrantConfig] = {}
        for name, raw in (configs or {}).items():
            if isinstance(raw, ChromaConfig | QdrantConfig):
                self.configs[name] = raw
            else:
                from pydantic import TypeAdapter, ValidationError

                try:
                    self.configs[name] = TypeAdapter(VectorStoreConfig).validate_python(raw)
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
        return config.type if config is not None else None

    def check(self, name: str) -> str | None:
        """Why `name` cannot be used (unknown, or its client package missing), or None."""
        config = self.configs.get(name)
        if config is None:
            return (
                f"unknown vector store '{name}'; configured: {', '.join(self.names())} "
                "(add it under vector_stores in llm-orchestrator.yaml)"
            )
        import importlib.util

        module, extra = ("chromadb", "rag") if config.type == "chroma" else ("qdrant_client", "rag")
        if importlib.util.find_spec(module) is None:
            return (
                f"vector store '{name}' ({config.type}) needs the package '{module}': "
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

    def _construct(self, name: str, config: ChromaConfig | QdrantConfig) -> VectorStore:
        if isinstance(config, ChromaConfig):
            from llm_orchestrator.vectordb.chroma import ChromaStore

            if config.host is not None:
                return ChromaStore(host=config.host, port=config.port, ssl=config.ssl, name=name)
            return ChromaStore(self._path(config.path or "vectors/chroma"), name=name)
        from llm_orchestrator.vectordb.qdrant import QdrantStore

        if config.url is not None:
            return QdrantStore(
                url=config.url,
                api_key=config.api_key,
                timeout_seconds=config.timeout_seconds,
                name=name,
            )
        assert config.path is not None
        return QdrantStore(self._path(config.path), name=name)


async def close_all_vector_stores() -> None:
    """Close every shared store and forget it; for shutdown and tests."""
    with _shared_lock:
        stores = list(_shared.values())
        _shared.clear()
    results = await asyncio.gather(*(s.aclose() for s in stores), return_exceptions=True)
    errors = [r for r in results if isinstance(r, Exception)]
    if errors:
        raise ExceptionGroup("closing vector stores failed", errors)
