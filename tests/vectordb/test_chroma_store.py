"""ChromaStore passes the contract embedded (PersistentClient) and against a real Chroma
server (`chroma run` from the installed package, on loopback)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.modules import require_module
from tests.vectordb.contract import VectorStoreContract

require_module("chromadb")

from llm_orchestrator.vectordb.base import VectorRecord  # noqa: E402
from llm_orchestrator.vectordb.chroma import ChromaStore  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _chroma_script() -> str | None:
    here = Path(sys.executable).parent / "chroma"
    return str(here) if here.exists() else shutil.which("chroma")


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    script = _chroma_script()
    if script is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but the `chroma` console script (chromadb) is not installed")
        pytest.skip("the `chroma` console script is not installed")
    port = _free_port()
    data = tmp_path_factory.mktemp("chroma-server")
    log = (data / "server.log").open("wb")
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
    proc = subprocess.Popen(
        [script, "run", "--path", str(data / "db"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"chroma server did not start: {(data / 'server.log').read_text()}")
            time.sleep(0.1)
        yield "127.0.0.1", port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


class TestChromaEmbedded(VectorStoreContract):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[ChromaStore]:
        opened = ChromaStore(tmp_path / "chroma")
        yield opened
        await opened.aclose()


class TestChromaServer(VectorStoreContract):
    @pytest.fixture
    async def store(self, chroma_server: tuple[str, int]) -> AsyncIterator[ChromaStore]:
        host, port = chroma_server
        opened = ChromaStore(host=host, port=port)
        yield opened
        for name in await opened.list_indexes():  # the server outlives the test
            await opened.delete_index(name)
        await opened.aclose()


async def test_reopen_keeps_data_and_never_embeds(tmp_path: Path) -> None:
    first = ChromaStore(tmp_path / "c")
    await first.create_index("keep", 2, metadata={"embedder": "e"})
    await first.upsert("keep", [VectorRecord("x", [1.0, 0.0], "hello")])
    await first.aclose()
    again = ChromaStore(tmp_path / "c")
    assert (await again.stats("keep")).count == 1
    assert await again.index_metadata("keep") == {"embedder": "e"}
    # the collection's embedding function refuses to embed: no model download, ever
    import chromadb
    from chromadb.config import Settings

    client = chromadb.PersistentClient(
        path=str(tmp_path / "c"), settings=Settings(anonymized_telemetry=False)
    )
    col = await asyncio.to_thread(client.get_collection, "keep")
    with pytest.raises(Exception, match="embeddings explicitly"):
        await asyncio.to_thread(col.query, query_texts=["hello"])
    client.close()
    await again.aclose()


async def test_unreachable_server_is_unhealthy() -> None:
    store = ChromaStore(host="127.0.0.1", port=_free_port())
    assert await store.health() is False
    await store.aclose()


def test_location_is_required() -> None:
    with pytest.raises(ValueError, match="either path"):
        ChromaStore()


WRITE_AGAIN = """
import asyncio, sys
from llm_orchestrator.vectordb.base import VectorRecord
from llm_orchestrator.vectordb.chroma import ChromaStore

async def main():
    store = ChromaStore(sys.argv[1])
    if sys.argv[2] == "a":
        await store.create_index("keep", 2)
    await store.upsert("keep", [VectorRecord(sys.argv[2], [0.0, 1.0], "more")])
    await store.aclose()

asyncio.run(main())
"""


def test_another_process_writes_without_warnings(tmp_path: Path) -> None:
    """A new process rebuilds the guard from the collection schema: Chroma does not warn
    "Could not reconstruct embedding function external" (and drop it) on the next write."""
    for record_id in ("a", "b"):
        done = subprocess.run(
            [
                sys.executable,
                "-W",
                "error::UserWarning",
                "-c",
                WRITE_AGAIN,
                str(tmp_path),
                record_id,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "reconstruct" not in done.stderr
