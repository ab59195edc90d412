"""OpenAIProvider against a real OpenAI-compatible server: llama-cpp-python's, on loopback."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llm_orchestrator.providers.base import ChatRequest, Message
from llm_orchestrator.providers.openai import OpenAIProvider
from llm_orchestrator.settings import ProviderSettings
from tests.providers.contract import free_port
from tests.support.modules import require_module

pytestmark = pytest.mark.local_model

STARTUP_DEADLINE = 60.0


@pytest.fixture(scope="module")
def llama_server(gguf_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a `python -m llama_cpp.server` serving the bundled model."""
    require_module("llama_cpp.server.app")
    port = free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "llama_cpp.server",
                "--model", str(gguf_model),
                "--host", "127.0.0.1",
                "--port", str(port),
                "--chat_format", "gemma",
                "--n_ctx", "2048",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_until_ready(process, base_url, log)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _wait_until_ready(process: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_DEADLINE
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"llama_cpp.server exited early:\n{log.read_text()[-3000:]}")
            try:
                if client.get(f"{base_url}/models").status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            time.sleep(0.2)
    pytest.fail(f"llama_cpp.server not ready after {STARTUP_DEADLINE}s:\n{log.read_text()[-3000:]}")


@pytest.fixture
async def provider(llama_server: str) -> AsyncIterator[OpenAIProvider]:
    settings = ProviderSettings(type="openai_compatible", base_url=llama_server, timeout_seconds=60)
    provider = OpenAIProvider("llama", settings)
    yield provider
    await provider.aclose()


def ask(text: str, **kwargs: Any) -> ChatRequest:
    return ChatRequest(model="gemma", messages=[Message("user", text)], **kwargs)


async def test_plain_completion(provider: OpenAIProvider) -> None:
    response = await provider.complete(ask("Name a colour.", max_tokens=8, temperature=0.0))
    assert response.text
    assert response.input_tokens > 0 and response.output_tokens > 0
    assert response.finish_reason in ("stop", "length")


async def test_streaming(provider: OpenAIProvider) -> None:
    deltas: list[str] = []
    response = await provider.complete(
        ask("Count: one, two,", max_tokens=8, on_token=deltas.append)
    )
    assert len(deltas) > 1
    assert "".join(deltas) == response.text
    # this server sends no usage chunk; the adapter reports zero rather than failing
    assert response.input_tokens >= 0 and response.output_tokens >= 0
    assert response.finish_reason in ("stop", "length")
