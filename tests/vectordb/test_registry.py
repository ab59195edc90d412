"""Store names: the built-in `default`, configured stores, sharing and closing."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_orchestrator.exceptions import ConfigurationError
from llm_orchestrator.settings import Settings
from llm_orchestrator.vectordb.base import VectorStore
from llm_orchestrator.vectordb.chroma import ChromaStore
from llm_orchestrator.vectordb.keyword import KeywordMirror
from llm_orchestrator.vectordb.qdrant import QdrantStore
from llm_orchestrator.vectordb.registry import (
    ChromaConfig,
    VectorStoreRegistry,
    close_all_vector_stores,
)


def inner(store: VectorStore) -> VectorStore:
    assert isinstance(store, KeywordMirror)
    return store.inner


async def test_default_is_embedded_chroma_under_home(settings: Settings) -> None:
    registry = VectorStoreRegistry.from_settings(settings)
    assert registry.names() == ["default"]
    store = registry.get("default")
    assert isinstance(store, KeywordMirror) and isinstance(store.inner, ChromaStore)
    assert store.inner.path == settings.home / "vectors" / "chroma"
    assert store.keywords.path.parent == settings.home / "vectors" / "keyword"
    assert registry.get("default") is store  # shared
    assert VectorStoreRegistry(None, settings.home).get("default") is store
    await close_all_vector_stores()
    assert VectorStoreRegistry(None, settings.home).get("default") is not store
    await close_all_vector_stores()


async def test_configured_stores(tmp_path: Path) -> None:
    registry = VectorStoreRegistry(
        {
            "server": {"type": "chroma", "host": "127.0.0.1", "port": 8123},
            "q": {"type": "qdrant", "path": str(tmp_path / "abs")},
            "qs": {"type": "qdrant", "url": "http://127.0.0.1:6333", "api_key": "k"},
            "default": ChromaConfig(type="chroma", path="elsewhere"),
        },
        tmp_path,
    )
    server = inner(registry.get("server"))
    assert isinstance(server, ChromaStore) and (server.host, server.port) == ("127.0.0.1", 8123)
    local = inner(registry.get("q"))
    assert isinstance(local, QdrantStore) and local.path == tmp_path / "abs"
    remote = inner(registry.get("qs"))
    assert isinstance(remote, QdrantStore) and remote.url == "http://127.0.0.1:6333"
    default = inner(registry.get("default"))
    assert isinstance(default, ChromaStore) and default.path == tmp_path / "elsewhere"
    assert registry.kind("q") == "qdrant" and registry.kind("nope") is None
    await close_all_vector_stores()


def test_unknown_and_invalid(tmp_path: Path) -> None:
    registry = VectorStoreRegistry({}, tmp_path)
    assert "unknown vector store 'pinecone'; configured: default" in str(registry.check("pinecone"))
    with pytest.raises(ConfigurationError, match="unknown vector store"):
        registry.get("pinecone")
    with pytest.raises(ConfigurationError, match=r"vector_stores\.bad"):
        VectorStoreRegistry({"bad": {"type": "qdrant"}}, tmp_path)
    with pytest.raises(ConfigurationError, match="not both"):
        VectorStoreRegistry({"bad": {"type": "chroma", "path": "a", "host": "b"}}, tmp_path)
    with pytest.raises(ConfigurationError, match="vector_stores.bad"):
        VectorStoreRegistry({"bad": {"type": "milvus"}}, tmp_path)
