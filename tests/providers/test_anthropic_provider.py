from __future__ import annotations

from typing import Any

import anthropic
import pytest

from llm_orchestrator.exceptions import (
    CredentialsError,
    ProviderBadRequestError,
    ProviderRateLimitedError,
    ProviderResponseError,
    ProviderServerError,
)
from llm_orchestrator.providers.anthropic import DEFAULT_MAX_TOKENS, AnthropicProvider
from llm_orchestrator.providers.base import ChatRequest, LLMProvider, Message
from llm_orchestrator.settings import ProviderSettings
from tests.providers.contract import SECRET, ProviderContract, request
from tests.support.vendor_servers import FakeVendorServer, Reply, serve


def make(base_url: str | None, **kwargs: Any) -> AnthropicProvider:
    kwargs.setdefault("api_key", SECRET)
    return AnthropicProvider(
        "test", ProviderSettings(type="anthropic", base_url=base_url, **kwargs)
    )


class TestAnthropicContract(ProviderContract):
    kind = "anthropic"
    sdk_rate_limit_error = anthropic.RateLimitError
    sdk_timeout_error = anthropic.APITimeoutError

    def make_provider(self, base_url: str, *, timeout: float = 10.0) -> LLMProvider:
        return make(base_url, timeout_seconds=timeout)


@pytest.fixture
def server() -> Any:
    yield from serve("anthropic")


async def test_request_body(server: FakeVendorServer) -> None:
    provider = make(server.base_url)
    schema = {"type": "object", "properties": {"label": {"type": "string"}}}
    await provider.complete(
        ChatRequest(
            model="claude-haiku-4-5",
            messages=[
                Message("system", "be brief"),
                Message("user", "hi"),
                Message("assistant", "hello"),
                Message("user", "again"),
            ],
            max_tokens=50,
            stop=["\n\n"],
            json_schema=schema,
        )
    )
    [sent] = server.requests
    assert sent.path == "/v1/messages"
    assert sent.headers["x-stainless-retry-count"] == "0"
    assert SECRET in (sent.headers.get("x-api-key", "") + sent.headers.get("authorization", ""))
    body = sent.json
    assert body["model"] == "claude-haiku-4-5"
    assert body["system"] == "be brief"
    assert body["messages"] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "again"},
    ]
    assert body["max_tokens"] == 50
    assert body["stop_sequences"] == ["\n\n"]
    # structured outputs, with the SDK's own strict rewrite of the schema
    assert body["output_config"]["format"]["type"] == "json_schema"
    sent_schema = body["output_config"]["format"]["schema"]
    assert sent_schema["properties"] == schema["properties"]
    assert sent_schema["additionalProperties"] is False
    await provider.aclose()


async def test_max_tokens_defaults_and_system_is_omitted(server: FakeVendorServer) -> None:
    provider = make(server.base_url)
    await provider.complete(request())
    body = server.requests[0].json
    assert body["max_tokens"] == DEFAULT_MAX_TOKENS
    assert "system" not in body and "output_config" not in body and "temperature" not in body
    await provider.aclose()


async def test_overloaded_529_is_a_server_error(server: FakeVendorServer) -> None:
    server.script(Reply(status=529))
    provider = make(server.base_url)
    with pytest.raises(ProviderServerError) as caught:
        await provider.complete(request())
    assert caught.value.status_code == 529 and caught.value.retryable
    assert isinstance(caught.value.__cause__, anthropic.APIStatusError)
    await provider.aclose()


def sse(*events: tuple[str, str]) -> Reply:
    body = "".join(f"event: {name}\ndata: {data}\n\n" for name, data in events)
    return Reply(body=body, headers={"Content-Type": "text/event-stream"})


MESSAGE_START = (
    "message_start",
    '{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant",'
    '"content":[],"model":"m","stop_reason":null,"stop_sequence":null,'
    '"usage":{"input_tokens":3,"output_tokens":1}}}',
)


@pytest.mark.parametrize(
    ("kind", "error"),
    [("overloaded_error", ProviderServerError), ("rate_limit_error", ProviderRateLimitedError)],
)
async def test_error_event_inside_a_stream(
    server: FakeVendorServer, kind: str, error: type[Exception]
) -> None:
    event = f'{{"type":"error","error":{{"type":"{kind}","message":"try later"}}}}'
    server.script(sse(MESSAGE_START, ("error", event)))
    provider = make(server.base_url)
    with pytest.raises(error, match="try later"):
        await provider.complete(request(on_token=lambda _: None))
    await provider.aclose()


async def test_stream_without_events_is_a_response_error(server: FakeVendorServer) -> None:
    server.script(sse())
    provider = make(server.base_url)
    with pytest.raises(ProviderResponseError):
        await provider.complete(request(on_token=lambda _: None))
    await provider.aclose()


async def test_temperature_is_refused_before_sending(server: FakeVendorServer) -> None:
    provider = make(server.base_url)
    with pytest.raises(ProviderBadRequestError, match="temperature"):
        await provider.complete(request(temperature=0.2))
    assert server.requests == []
    await provider.aclose()


def test_missing_key_is_a_credentials_error() -> None:
    with pytest.raises(CredentialsError, match="ANTHROPIC_API_KEY"):
        AnthropicProvider("anthropic", ProviderSettings(type="anthropic"))
