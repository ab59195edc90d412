from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from llm_orchestrator.orchestrator import close_shared_clients
from llm_orchestrator.settings import Settings
from tests.support import probe

probe.install()

# real PostgreSQL and Redis servers, started once per session when a test asks for them
pytest_plugins = ["tests.support.postgres", "tests.support.redis", "tests.support.pgvector"]


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests talk to 127.0.0.1 only: any other address fails loudly."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: object) -> object:
        host = address[0] if isinstance(address, tuple) else address
        if (
            isinstance(host, str)
            and host not in ("127.0.0.1", "localhost", "::1")
            and not (self.family == socket.AF_UNIX)
        ):
            raise OSError(f"test tried to reach the network: {address!r}")
        return real_connect(self, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No vendor keys or LLMO_ settings leak in from the developer's shell."""
    for name in list(os.environ):
        if name.startswith("LLMO_") or name in (
            "OPENAI_API_KEY",
            "ANTHROPIC_API_KEY",
            "OPENAI_BASE_URL",
            "ANTHROPIC_BASE_URL",
        ):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LLMO_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    probe.CALLS.clear()
    yield


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


@pytest.fixture(autouse=True)
async def _fresh_providers() -> AsyncIterator[None]:
    """Provider instances are shared process-wide: each test starts and ends without them."""
    await close_shared_clients()
    yield
    await close_shared_clients()


@pytest.fixture
def blockbuster() -> Iterator[object]:
    """Fail the test on any blocking call made inside the event loop."""
    from blockbuster import blockbuster_ctx

    with blockbuster_ctx("llm_orchestrator") as bb:
        yield bb
