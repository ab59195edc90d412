"""A real Redis server for tests, and a TCP proxy that can cut the connection to it.

`LLMO_TEST_REDIS_URL` (redis://127.0.0.1:6379/0) names an existing server; without it
`redis-server` (Debian: apt-get install -y redis-server) is started on a free loopback port
without persistence and stopped at the end of the session. If neither is possible the tests
are skipped, or fail under CI=true.

Tests share one server: give each store its own `key_prefix` (see `unique_prefix`).
Request the session fixture as `redis_url` after importing it into the test module or a
conftest (`from tests.support.redis import redis_url`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

ENV_URL = "LLMO_TEST_REDIS_URL"
#: read at import: the autouse `_clean_env` fixture removes LLMO_* variables from each test
URL_FROM_ENV = os.environ.get(ENV_URL)


def unavailable(reason: str) -> NoReturn:
    """Skip, or under CI=true fail: CI must run the Redis tests."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but no Redis server for the tests: {reason}")
    pytest.skip(f"no Redis server: {reason}")


def free_port() -> int:
    """A loopback port nothing listens on (at the time of asking)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def unique_prefix() -> str:
    """A key prefix no other test uses."""
    return f"llmo-test:{uuid.uuid4().hex[:12]}"


def _wait_until_listening(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"redis-server exited with {process.returncode}:\n"
                + log.read_text(errors="replace")
            )
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError(f"redis-server did not listen on port {port} within 10 s")


@contextlib.contextmanager
def redis_server(port: int | None = None) -> Iterator[str]:
    """Run `redis-server` on 127.0.0.1 (a free port unless given); yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("redis-server is not installed (apt-get install -y redis-server)")
    root = Path(tempfile.mkdtemp(prefix="llmo-redis-"))
    log = root / "redis.log"
    chosen = port or free_port()
    args = [
        binary,
        "--port",
        str(chosen),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--dir",
        str(root),
        "--logfile",
        str(log),
    ]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_until_listening(process, chosen, log)
        yield f"redis://127.0.0.1:{chosen}/0"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """LLMO_TEST_REDIS_URL's server, or a redis-server started for this session."""
    if URL_FROM_ENV:
        yield URL_FROM_ENV
        return
    if shutil.which("redis-server") is None:
        unavailable(
            "redis-server is not installed (apt-get install -y redis-server), "
            f"and {ENV_URL} is not set"
        )
    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(redis_server())
        except (RuntimeError, OSError) as exc:
            unavailable(f"could not start redis-server: {exc}")
        yield url


class CuttableProxy:
    """A loopback TCP proxy to `target_port`: `cut()` drops every connection and refuses new
    ones (a network partition; the server keeps its data), `restore()` listens again."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def restore(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        handlers = list(self._handlers)
        if handlers:
            await asyncio.wait(handlers, timeout=5)

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(client_w)
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_w.close()
            self._writers.discard(client_w)
            self._handlers.discard(task)
            return
        self._writers.add(server_w)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._pump(client_r, server_w, client_w))
                group.create_task(self._pump(server_r, client_w, server_w))
        finally:
            for writer in (client_w, server_w):
                writer.close()
                self._writers.discard(writer)
            self._handlers.discard(task)

    @staticmethod
    async def _pump(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, other: asyncio.StreamWriter
    ) -> None:
        """Copy until EOF or a closed socket, then close both directions."""
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass  # the other side went away: that is what cut() does
        finally:
            writer.close()
            other.close()
