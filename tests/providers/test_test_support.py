"""The test helpers other suites rely on: the network guard, require_module, the fake server."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.request

import pytest

from tests.support.modules import require_module
from tests.support.vendor_servers import FakeVendorServer, Reply


def test_network_beyond_loopback_is_refused() -> None:
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("example.com", 443)
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError, match="network"):
        sock.connect(("192.0.2.1", 80))


def test_require_module_skips_unless_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        require_module("no_such_module_for_llmo_tests")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_module("no_such_module_for_llmo_tests")
    assert require_module("json") is json


def post(url: str, body: dict[str, object]) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_openai_wire_format() -> None:
    with FakeVendorServer("openai") as server:
        assert server.base_url.endswith("/v1")
        body = {"model": "m", "messages": [{"role": "user", "content": "hi there"}]}
        status, _, raw = post(server.base_url + "/chat/completions", body)
        assert status == 200
        reply = json.loads(raw)
        assert reply["object"] == "chat.completion"
        assert reply["choices"][0]["message"]["content"] == "echo: hi there"
        assert reply["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}

        stream = {**body, "stream": True, "stream_options": {"include_usage": True}}
        status, headers, raw = post(server.base_url + "/chat/completions", stream)
        assert headers["Content-Type"].startswith("text/event-stream")
        events = [line[6:] for line in raw.decode().split("\n\n") if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1])
        assert text == "echo: hi there"

        server.script(Reply(status=429, headers={"Retry-After": "3"}))
        status, headers, raw = post(server.base_url + "/chat/completions", body)
        assert (status, headers["Retry-After"]) == (429, "3")
        assert json.loads(raw)["error"]["code"] == "rate_limit_exceeded"
        assert [r.path for r in server.requests] == ["/v1/chat/completions"] * 3
        assert server.requests[0].json == body


def test_anthropic_wire_format() -> None:
    with FakeVendorServer("anthropic") as server:
        body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
        status, headers, raw = post(server.base_url + "/v1/messages", {**body, "stream": True})
        assert status == 200
        names = [
            line.split(": ", 1)[1]
            for line in raw.decode().splitlines()
            if line.startswith("event:")
        ]
        assert names == [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
        server.script(Reply(status=529))
        status, _, raw = post(server.base_url + "/v1/messages", body)
        assert status == 529
        assert json.loads(raw)["error"]["type"] == "overloaded_error"


def test_stop_does_not_wait_for_sleeping_handlers() -> None:
    server = FakeVendorServer("openai").start()
    server.script(Reply(delay=60))
    outcome: list[BaseException] = []

    def client() -> None:
        try:
            post(server.base_url + "/chat/completions", {"messages": []})
        except (OSError, http.client.HTTPException) as exc:  # the server hung up: expected
            outcome.append(exc)

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    assert server.wait_for_requests(1, 5)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 2
    thread.join(5)
    assert len(outcome) == 1
