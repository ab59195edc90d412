from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from llm_orchestrator.exceptions import (
    CredentialsError,
    ProviderResponseError,
    ProviderServerError,
)
from llm_orchestrator.providers.base import ChatRequest, LLMProvider, Message
from llm_orchestrator.providers.openai import PLACEHOLDER_KEY, OpenAIProvider
from llm_orchestrator.settings import ProviderSettings
from tests.providers.contract import SECRET, ProviderContract, request
from tests.support.vendor_servers import FakeVendorServer, Reply, serve


def make(base_url: str | None, *, type: Any = "openai", **kwargs: Any) -> OpenAIProvider:
    if type == "openai":
        kwargs.setdefault("api_key", SECRET)
    return OpenAIProvider("test", ProviderSettings(type=type, base_url=base_url, **kwargs))


class TestOpenAIContract(ProviderContract):
    kind = "openai"
    sdk_rate_limit_error = openai.RateLimitError
    sdk_timeout_error = openai.APITimeoutError

    def make_provider(self, base_url: str, *, timeout: float = 10.0) -> LLMProvider:
        return make(base_url, timeout_seconds=timeout)


@pytest.fixture
def server() -> Any:
    yield from serve("openai")


async def test_request_body(server: FakeVendorServer) -> None:
    provider = make(server.base_url)
    schema = {"type": "object", "properties": {"label": {"type": "string"}}}
    await provider.complete(
        ChatRequest(
            model="gpt-4o-mini",
            messages=[Message("system", "be brief"), Message("user", "hi")],
            temperature=0.2,
            max_tokens=50,
            stop=["\n\n"],
            json_schema=schema,
        )
    )
    [sent] = server.requests
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {SECRET}"
    assert sent.headers["x-stainless-retry-count"] == "0"
    assert sent.json == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi"},
        ],
        "temperature": 0.2,
        # OpenAI deprecated max_tokens; its current models accept only this name
        "max_completion_tokens": 50,
        "stop": ["\n\n"],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": schema},
        },
        "stream": False,
    }
    await provider.aclose()


async def test_optional_fields_are_left_out(server: FakeVendorServer) -> None:
    provider = make(server.base_url)
    await provider.complete(request())
    assert set(server.requests[0].json) == {"model", "messages", "stream"}
    await provider.aclose()


async def test_streaming_request_asks_for_usage(server: FakeVendorServer) -> None:
    provider = make(server.base_url)
    await provider.complete(request(on_token=lambda _: None))
    body = server.requests[0].json
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    await provider.aclose()


async def test_stream_without_usage_chunk_reports_zero_usage(server: FakeVendorServer) -> None:
    chunk = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}],
    }
    sse = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n"
    server.script(Reply(body=sse, headers={"Content-Type": "text/event-stream"}))
    provider = make(server.base_url)
    deltas: list[str] = []
    response = await provider.complete(request(on_token=deltas.append))
    assert (response.text, deltas) == ("hi", ["hi"])
    assert (response.input_tokens, response.output_tokens) == (0, 0)
    assert response.finish_reason == "stop"
    await provider.aclose()


async def test_stream_answered_with_plain_json_is_a_response_error(
    server: FakeVendorServer,
) -> None:
    server.script(Reply(text="not streamed", stream=False))
    provider = make(server.base_url)
    with pytest.raises(ProviderResponseError, match="no events"):
        await provider.complete(request(on_token=lambda _: None))
    await provider.aclose()


async def test_error_event_inside_a_stream(server: FakeVendorServer) -> None:
    sse = 'data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n'
    server.script(Reply(body=sse, headers={"Content-Type": "text/event-stream"}))
    provider = make(server.base_url)
    with pytest.raises(ProviderServerError, match="overloaded") as caught:
        await provider.complete(request(on_token=lambda _: None))
    assert isinstance(caught.value.__cause__, openai.APIError)
    await provider.aclose()


async def test_compatible_server_uses_max_tokens_and_needs_no_key(
    server: FakeVendorServer,
) -> None:
    provider = make(server.base_url, type="openai_compatible", default_model="llama3")
    assert provider.default_model == "llama3"
    await provider.complete(request(max_tokens=20))
    sent = server.requests[0]
    assert sent.headers["authorization"] == f"Bearer {PLACEHOLDER_KEY}"
    assert sent.json["max_tokens"] == 20
    assert "max_completion_tokens" not in sent.json
    await provider.aclose()


def test_openai_without_key_is_a_credentials_error() -> None:
    with pytest.raises(CredentialsError, match="OPENAI_API_KEY"):
        OpenAIProvider("openai", ProviderSettings(type="openai"))


async def test_key_from_the_configured_env_var(
    server: FakeVendorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_KEY", "sk-from-env")
    provider = make(server.base_url, api_key_env="MY_KEY", api_key=None)
    await provider.complete(request())
    assert server.requests[0].headers["authorization"] == "Bearer sk-from-env"
    await provider.aclose()


async def test_base_url_falls_back_to_openai_base_url(
    server: FakeVendorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    provider = make(None)
    assert (await provider.complete(request())).text == "echo: hello there"
    await provider.aclose()


async def test_responder_computes_the_default_reply() -> None:
    def classify(body: dict[str, Any]) -> str:
        return "positive" if "love" in body["messages"][-1]["content"] else "negative"

    with FakeVendorServer("openai", responder=classify) as srv:
        provider = make(srv.base_url)
        assert (await provider.complete(request("I love it"))).text == "positive"
        assert (await provider.complete(request("meh"))).text == "negative"
        await provider.aclose()
