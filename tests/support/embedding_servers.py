"""A loopback HTTP server speaking the OpenAI (`POST /v1/embeddings`) and Cohere v2
(`POST /v2/embed`) embedding wire formats.

Vectors are deterministic: text i of a request gets `[len(text), i, 1.0, ...]` padded to the
requested size (`dimensions` / `output_dimension`, default 8). `script(...)` queues replies
(status, JSON body, headers) consumed in order before the default. `delay` holds every
answer that long, and `max_in_flight` records the most requests served at once.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_DIMENSIONS = 8


@dataclass(frozen=True)
class Reply:
    status: int = 200
    json: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)


def vector_for(text: str, index: int, dimensions: int) -> list[float]:
    values = [float(len(text)), float(index)] + [1.0] * max(0, dimensions - 2)
    return values[:dimensions]


class EmbeddingServer:
    def __init__(self, *, delay: float = 0.0) -> None:
        self.delay = delay
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                owner._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._replies.extend(replies)

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        raw = handler.rfile.read(length)
        body = json.loads(raw) if raw else None
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self._lock:
            self.requests.append((handler.path, headers, body))
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            reply = self._replies.popleft() if self._replies else None
        try:
            if self.delay:
                time.sleep(self.delay)
            if reply is None or (reply.status == 200 and reply.json is None):
                payload = self._default(handler.path, body)
                status, extra = 200, {}
            else:
                payload, status, extra = reply.json, reply.status, dict(reply.headers)
            data = json.dumps(payload).encode()
            handler.send_response(status)
            handler.send_header("content-type", "application/json")
            handler.send_header("content-length", str(len(data)))
            for name, value in extra.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(data)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _default(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if path.endswith("/v2/embed"):
            texts = body["texts"]
            size = body.get("output_dimension") or DEFAULT_DIMENSIONS
            return {
                "id": "emb-1",
                "embeddings": {"float": [vector_for(t, i, size) for i, t in enumerate(texts)]},
                "texts": texts,
                "meta": {
                    "api_version": {"version": "2"},
                    "billed_units": {"input_tokens": sum(len(t.split()) for t in texts)},
                },
                "response_type": "embeddings_by_type",
            }
        inputs = body["input"]
        inputs = [inputs] if isinstance(inputs, str) else inputs
        size = body.get("dimensions") or DEFAULT_DIMENSIONS
        tokens = sum(len(t.split()) for t in inputs)
        return {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": vector_for(t, i, size)}
                for i, t in enumerate(inputs)
            ],
            "model": body["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    def __enter__(self) -> EmbeddingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def serve(*, delay: float = 0.0) -> Iterator[EmbeddingServer]:
    with EmbeddingServer(delay=delay) as server:
        yield server
