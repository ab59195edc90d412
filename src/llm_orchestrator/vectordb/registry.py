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
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from llm_orchestrator.exceptions import ConfigurationError
from llm_orchestrator.vectordb.base import VectorStore

DEFAULT_STORE = "default"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChromaConfig(_Strict):
    type: Literal["chroma"]
    #: embedded store directory; relative paths are under LLMO_HOME
    path: str | None = None
    #: a Chroma server (`chroma run`); give host or path, not both
    host: str | None = None
    port: int = Field(default=8000, ge=1, le=65535)
    ssl: bool = False

    @model_validator(mode="after")
    def _one_location(self) -> ChromaConfig:
        if self.path is not None and self.host is not None:
            raise ValueError("give either path (embedded) or host (server), not both")
        return self


class QdrantConfig(_Strict):
    type: Literal["qdrant"]
    #: local mode (embedded) directory; relative paths are under LLMO_HOME
    path: str | None = None
    #: a Qdrant server, e.g. http://127.0.0.1:6333
    url: str | None = None
    api_key: SecretStr | None = None
    timeout_seconds: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _one_location(self) -> QdrantConfig:
        if (self.path is None) == (self.url is None):
            raise ValueError("give exactly one of path (local mode) or url (server)")
        return self


VectorStoreConfig = Annotated[ChromaConfig | QdrantConfig, Field(discriminator="type")]

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
    def from_settings(cls, settings: Any) -> VectorStoreRegistry:
        """From `settings.vector_stores` when Settings has that field, else defaults only."""
        return cls(getattr(settings, "vector_stores", None), settings.home)

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
