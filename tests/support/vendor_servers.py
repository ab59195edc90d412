"""Loopback HTTP servers that speak the OpenAI and Anthropic wire formats.

Use as a context manager (`with FakeVendorServer("openai") as srv: ...`) or from a fixture
(`yield from serve("anthropic")`). Point the real SDK at `srv.base_url`. Every request is
recorded in `srv.requests`; `srv.script(Reply(...), ...)` queues replies consumed in order,
after which the default reply is a normal completion ("echo: <last user message>", or the
text from `responder(body)`), streamed in the vendor's SSE format when the request asks for it.
"""

from __future__ import annotations

import itertools
import json
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal

Kind = Literal["openai", "anthropic"]
Responder = Callable[[dict[str, Any]], str]

__all__ = ["FakeVendorServer", "RecordedRequest", "Reply", "Responder", "serve"]


@dataclass(frozen=True)
class Reply:
    """One scripted reply.

    Precedence: `json` (sent as is), then `body` (raw bytes, e.g. malformed JSON), then
    `text` (a normal completion with this text). With none of them, a status >= 400 sends the
    vendor's error body for that status and a 200 sends the default completion.
    `stream` forces (True) or forbids (False) SSE; None follows the request's `stream` flag.
    """

    status: int = 200
    json: Any = None
    body: bytes | str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    #: seconds to wait before answering (woken early when the server stops)
    delay: float = 0.0
    text: str | None = None
    stream: bool | None = None
    #: seconds between SSE events of a streamed reply
    chunk_delay: float = 0.0
    finish_reason: str | None = None


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    #: header names lower-cased
    headers: dict[str, str]
    #: the parsed JSON body (None when the body was empty or not JSON)
    json: Any


_OPENAI_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Forbidden."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    409: ("invalid_request_error", None, "Conflict."),
    422: ("invalid_request_error", None, "Unprocessable entity."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
}

_ANTHROPIC_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use this resource."),
    404: ("not_found_error", "Not found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit."),
    500: ("api_error", "Internal server error."),
    529: ("overloaded_error", "Overloaded"),
}

_ids = itertools.count(1)


def _content_text(content: Any) -> str:
    """Text of a message `content`: a string or a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""


def _word_count(text: str) -> int:
    return len(text.split())


def _prompt_tokens(body: dict[str, Any]) -> int:
    words = sum(
        _word_count(_content_text(m.get("content")))
        for m in body.get("messages") or []
        if isinstance(m, dict)
    )
    return words + _word_count(_content_text(body.get("system")))


def _pieces(text: str) -> list[str]:
    """Split text into streamed deltas: one word plus its trailing spaces each."""
    return re.findall(r"\s*\S+\s*", text) or ([text] if text else [])


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    payload = data if isinstance(data, str) else json.dumps(data)
    return f"{head}data: {payload}\n\n".encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: FakeVendorServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that hung up (it cancelled or timed out) is expected, not an error
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        owner._record(
            RecordedRequest(
                method=self.command,
                path=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                json=body,
            )
        )
        reply = owner._next_reply()
        if reply.delay and owner._stopping.wait(reply.delay):
            self.close_connection = True
            return
        owner._respond(self, reply, body if isinstance(body, dict) else {})


class FakeVendorServer:
    """A stdlib HTTP server on 127.0.0.1 (free port) speaking one vendor's wire format."""

    def __init__(self, kind: Kind, *, responder: Responder | None = None) -> None:
        self.kind: Kind = kind
        self.responder = responder
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._requests: list[RecordedRequest] = []
        self._replies: deque[Reply] = deque()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> FakeVendorServer:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.owner = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-{self.kind}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; handlers sleeping on a `delay` wake up and drop their reply."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeVendorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeVendorServer is not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        root = f"http://127.0.0.1:{self.port}"
        return root + "/v1" if self.kind == "openai" else root

    # -- scripting and inspection --------------------------------------------------------

    def script(self, *replies: Reply) -> None:
        """Queue replies, consumed one per request in order, before the default reply."""
        with self._lock:
            self._replies.extend(replies)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> bool:
        """Block until `count` requests arrived (call via `asyncio.to_thread` in async code)."""
        with self._arrived:
            return self._arrived.wait_for(lambda: len(self._requests) >= count, timeout)

    def _record(self, request: RecordedRequest) -> None:
        with self._arrived:
            self._requests.append(request)
            self._arrived.notify_all()

    def _next_reply(self) -> Reply:
        with self._lock:
            return self._replies.popleft() if self._replies else Reply()

    # -- replies -------------------------------------------------------------------------

    def _respond(self, handler: _Handler, reply: Reply, body: dict[str, Any]) -> None:
        if reply.json is not None:
            self._send(handler, reply.status, json.dumps(reply.json).encode(), reply.headers)
        elif reply.body is not None:
            raw = reply.body.encode() if isinstance(reply.body, str) else reply.body
            self._send(handler, reply.status, raw, reply.headers)
        elif reply.text is None and reply.status >= 400:
            self._send(handler, reply.status, self._error_body(reply.status), reply.headers)
        else:
            text = reply.text if reply.text is not None else self._default_text(body)
            streaming = reply.stream if reply.stream is not None else bool(body.get("stream"))
            if streaming:
                self._send_stream(handler, reply, self._events(body, text, reply))
            else:
                completion = self._completion(body, text, reply.finish_reason)
                self._send(handler, reply.status, json.dumps(completion).encode(), reply.headers)

    def _default_text(self, body: dict[str, Any]) -> str:
        if self.responder is not None:
            return self.responder(body)
        return "echo: " + _last_user_text(body)

    def _send(self, handler: _Handler, status: int, raw: bytes, headers: Mapping[str, str]) -> None:
        handler.send_response(status)
        names = {k.lower() for k in headers}
        if "content-type" not in names:
            handler.send_header("Content-Type", "application/json")
        if self.kind == "anthropic" and "request-id" not in names:
            handler.send_header("request-id", f"req_fake{next(_ids)}")
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(raw)))
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(raw)
        handler.wfile.flush()

    def _send_stream(self, handler: _Handler, reply: Reply, events: Iterator[bytes]) -> None:
        handler.send_response(reply.status)
        handler.send_header("Content-Type", "text/event-stream; charset=utf-8")
        handler.send_header("Cache-Control", "no-cache")
        for name, value in reply.headers.items():
            handler.send_header(name, value)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.send_header("Connection", "close")
        handler.end_headers()
        for event in events:
            if reply.chunk_delay and self._stopping.wait(reply.chunk_delay):
                handler.close_connection = True
                return
            handler.wfile.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
            handler.wfile.flush()
        handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()

    def _error_body(self, status: int) -> bytes:
        if self.kind == "openai":
            kind, code, message = _OPENAI_ERRORS.get(
                status, ("server_error", None, "The server had an error processing your request.")
            )
            error = {"message": message, "type": kind, "param": None, "code": code}
            return json.dumps({"error": error}).encode()
        kind, message = _ANTHROPIC_ERRORS.get(status, ("api_error", "Internal server error."))
        payload = {
            "type": "error",
            "error": {"type": kind, "message": message},
            "request_id": f"req_fake{next(_ids)}",
        }
        return json.dumps(payload).encode()

    def _completion(self, body: dict[str, Any], text: str, finish: str | None) -> dict[str, Any]:
        model = body.get("model", "fake-model")
        prompt, output = _prompt_tokens(body), _word_count(text)
        if self.kind == "openai":
            return {
                "id": f"chatcmpl-fake{next(_ids)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "refusal": None},
                        "logprobs": None,
                        "finish_reason": finish or "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": output,
                    "total_tokens": prompt + output,
                },
                "system_fingerprint": "fp_fake",
            }
        return {
            "id": f"msg_fake{next(_ids)}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": finish or "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": prompt, "output_tokens": output},
        }

    def _events(self, body: dict[str, Any], text: str, reply: Reply) -> Iterator[bytes]:
        if self.kind == "openai":
            return self._openai_events(body, text, reply.finish_reason)
        return self._anthropic_events(body, text, reply.finish_reason)

    def _openai_events(
        self, body: dict[str, Any], text: str, finish: str | None
    ) -> Iterator[bytes]:
        options = body.get("stream_options") or {}
        include_usage = bool(options.get("include_usage"))
        base = {
            "id": f"chatcmpl-fake{next(_ids)}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model", "fake-model"),
            "system_fingerprint": "fp_fake",
        }
        extra: dict[str, Any] = {"usage": None} if include_usage else {}

        def chunk(delta: dict[str, Any], finish_reason: str | None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            return _sse({**base, "choices": [choice], **extra})

        yield chunk({"role": "assistant", "content": "", "refusal": None}, None)
        for piece in _pieces(text):
            yield chunk({"content": piece}, None)
        yield chunk({}, finish or "stop")
        if include_usage:
            prompt, output = _prompt_tokens(body), _word_count(text)
            usage = {"prompt_tokens": prompt, "completion_tokens": output}
            usage["total_tokens"] = prompt + output
            yield _sse({**base, "choices": [], "usage": usage})
        yield _sse("[DONE]")

    def _anthropic_events(
        self, body: dict[str, Any], text: str, finish: str | None
    ) -> Iterator[bytes]:
        message = {
            "id": f"msg_fake{next(_ids)}",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": body.get("model", "fake-model"),
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": _prompt_tokens(body), "output_tokens": 1},
        }
        yield _sse({"type": "message_start", "message": message}, "message_start")
        block = {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "text", "text": ""},
        }
        yield _sse(block, "content_block_start")
        yield _sse({"type": "ping"}, "ping")
        for piece in _pieces(text):
            delta = {"type": "text_delta", "text": piece}
            yield _sse(
                {"type": "content_block_delta", "index": 0, "delta": delta}, "content_block_delta"
            )
        yield _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
        delta_event = {
            "type": "message_delta",
            "delta": {"stop_reason": finish or "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": _word_count(text)},
        }
        yield _sse(delta_event, "message_delta")
        yield _sse({"type": "message_stop"}, "message_stop")


def serve(kind: Kind, *, responder: Responder | None = None) -> Iterator[FakeVendorServer]:
    """For fixtures: `yield from serve("openai")` starts a server and stops it afterwards."""
    with FakeVendorServer(kind, responder=responder) as server:
        yield server
