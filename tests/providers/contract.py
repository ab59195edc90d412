"""The behaviour every HTTP provider adapter must show against its vendor's wire format.

A test module subclasses `ProviderContract`, sets `kind` and implements `make_provider`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, ClassVar

import pytest

from llm_orchestrator.exceptions import (
    ProviderAuthError,
    ProviderBadRequestError,
    ProviderConnectionError,
    ProviderError,
    ProviderRateLimitedError,
    ProviderResponseError,
    ProviderServerError,
    ProviderTimeoutError,
)
from llm_orchestrator.providers.base import ChatRequest, LLMProvider, Message
from tests.support.vendor_servers import FakeVendorServer, Kind, Reply, serve

SECRET = "sk-test-0123456789abcdef"


def request(text: str = "hello there", **kwargs: Any) -> ChatRequest:
    return ChatRequest(model="test-model", messages=[Message("user", text)], **kwargs)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ProviderContract:
    kind: ClassVar[Kind]
    #: the SDK exception class a 429 is raised as, to check the chain
    sdk_rate_limit_error: ClassVar[type[BaseException]]
    sdk_timeout_error: ClassVar[type[BaseException]]

    def make_provider(self, base_url: str, *, timeout: float = 10.0) -> LLMProvider:
        raise NotImplementedError

    @pytest.fixture
    def server(self) -> Iterator[FakeVendorServer]:
        yield from serve(self.kind)

    @pytest.fixture
    async def provider(self, server: FakeVendorServer) -> AsyncIterator[LLMProvider]:
        provider = self.make_provider(server.base_url)
        yield provider
        await provider.aclose()

    async def failed(
        self, provider: LLMProvider, server: FakeVendorServer, reply: Reply
    ) -> ProviderError:
        """The error one scripted reply turns into; exactly one HTTP request was sent."""
        server.script(reply)
        before = len(server.requests)
        with pytest.raises(ProviderError) as caught:
            await provider.complete(request())
        assert len(server.requests) - before == 1, "the SDK retried on its own"
        return caught.value

    # -- success ---------------------------------------------------------------------------

    async def test_plain_completion(self, provider: LLMProvider, server: FakeVendorServer) -> None:
        response = await provider.complete(request("hello there"))
        assert response.text == "echo: hello there"
        assert response.model == "test-model"
        # the fake counts words: prompt "hello there", reply "echo: hello there"
        assert (response.input_tokens, response.output_tokens) == (2, 3)
        assert response.finish_reason is not None
        assert len(server.requests) == 1

    async def test_streaming_delivers_deltas_in_order(self, provider: LLMProvider) -> None:
        deltas: list[str] = []
        response = await provider.complete(request("one two three four", on_token=deltas.append))
        assert deltas == ["echo: ", "one ", "two ", "three ", "four"]
        assert response.text == "".join(deltas) == "echo: one two three four"
        assert (response.input_tokens, response.output_tokens) == (4, 5)
        assert response.finish_reason is not None

    async def test_scripted_text(self, provider: LLMProvider, server: FakeVendorServer) -> None:
        server.script(Reply(text="positive"))
        assert (await provider.complete(request())).text == "positive"
        assert (await provider.complete(request("again"))).text == "echo: again"

    # -- errors ----------------------------------------------------------------------------

    async def test_429_with_retry_after_seconds(
        self, provider: LLMProvider, server: FakeVendorServer
    ) -> None:
        error = await self.failed(provider, server, Reply(status=429, headers={"Retry-After": "7"}))
        assert isinstance(error, ProviderRateLimitedError)
        assert error.retryable
        assert error.retry_after == 7.0
        assert error.status_code == 429
        assert error.body is not None and "rate" in error.body.lower()
        assert isinstance(error.__cause__, self.sdk_rate_limit_error)

    async def test_429_with_retry_after_ms(
        self, provider: LLMProvider, server: FakeVendorServer
    ) -> None:
        reply = Reply(status=429, headers={"retry-after-ms": "1500", "Retry-After": "9"})
        error = await self.failed(provider, server, reply)
        assert error.retry_after == 1.5

    async def test_429_with_retry_after_http_date(
        self, provider: LLMProvider, server: FakeVendorServer
    ) -> None:
        when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
        error = await self.failed(
            provider, server, Reply(status=429, headers={"Retry-After": when})
        )
        assert error.retry_after is not None and 25 <= error.retry_after <= 30

    @pytest.mark.parametrize("status", [500, 502, 503])
    async def test_5xx_is_a_retryable_server_error(
        self, provider: LLMProvider, server: FakeVendorServer, status: int
    ) -> None:
        error = await self.failed(provider, server, Reply(status=status))
        assert isinstance(error, ProviderServerError)
        assert error.retryable and error.status_code == status

    async def test_503_keeps_retry_after(
        self, provider: LLMProvider, server: FakeVendorServer
    ) -> None:
        error = await self.failed(provider, server, Reply(status=503, headers={"Retry-After": "2"}))
        assert isinstance(error, ProviderServerError)
        assert error.retry_after == 2.0

    @pytest.mark.parametrize("status", [401, 403])
    async def test_auth_errors_are_not_retryable(
        self, provider: LLMProvider, server: FakeVendorServer, status: int
    ) -> None:
        error = await self.failed(provider, server, Reply(status=status))
        assert isinstance(error, ProviderAuthError)
        assert not error.retryable and error.status_code == status

    @pytest.mark.parametrize("status", [400, 404, 409, 422])
    async def test_rejected_requests_are_not_retryable(
        self, provider: LLMProvider, server: FakeVendorServer, status: int
    ) -> None:
        error = await self.failed(provider, server, Reply(status=status))
        assert isinstance(error, ProviderBadRequestError)
        assert not error.retryable and error.status_code == status

    async def test_malformed_json_is_a_response_error(
        self, provider: LLMProvider, server: FakeVendorServer
    ) -> None:
        error = await self.failed(provider, server, Reply(body='{"id": "x", "choices": [tru'))
        assert isinstance(error, ProviderResponseError)
        assert error.status_code == 200
        assert error.body == '{"id": "x", "choices": [tru'
        assert error.__cause__ is not None

    async def test_json_that_is_not_a_completion_is_a_response_error(
        self, provider: LLMProvider, server: FakeVendorServer
    ) -> None:
        error = await self.failed(provider, server, Reply(json={"unexpected": True}))
        assert isinstance(error, ProviderResponseError)

    async def test_error_body_is_truncated(
        self, provider: LLMProvider, server: FakeVendorServer
    ) -> None:
        huge = {"error": {"message": "x" * 5000, "type": "server_error"}}
        error = await self.failed(provider, server, Reply(status=500, json=huge))
        assert error.body is not None and len(error.body) == 2000

    async def test_api_key_never_appears_in_the_error(
        self, provider: LLMProvider, server: FakeVendorServer
    ) -> None:
        leaky = {
            "type": "error",
            "error": {"type": "authentication_error", "message": f"bad key {SECRET}"},
        }
        error = await self.failed(provider, server, Reply(status=401, json=leaky))
        assert SECRET not in str(error)
        assert error.body is not None and SECRET not in error.body

    async def test_slow_reply_times_out(self, server: FakeVendorServer) -> None:
        provider = self.make_provider(server.base_url, timeout=0.3)
        server.script(Reply(delay=10))
        started = time.monotonic()
        with pytest.raises(ProviderTimeoutError) as caught:
            await provider.complete(request())
        assert time.monotonic() - started < 3
        assert caught.value.retryable
        assert isinstance(caught.value.__cause__, self.sdk_timeout_error)
        assert len(server.requests) == 1
        await provider.aclose()

    async def test_unreachable_server_is_a_connection_error(self) -> None:
        base = f"http://127.0.0.1:{free_port()}"
        provider = self.make_provider(base + ("/v1" if self.kind == "openai" else ""))
        with pytest.raises(ProviderConnectionError) as caught:
            await provider.complete(request())
        assert caught.value.retryable
        assert caught.value.__cause__ is not None
        await provider.aclose()

    # -- cancellation ----------------------------------------------------------------------

    @pytest.mark.parametrize("stream", [False, True])
    async def test_cancelling_the_task_abandons_the_request_promptly(
        self, provider: LLMProvider, server: FakeVendorServer, stream: bool
    ) -> None:
        server.script(Reply(delay=30))
        on_token = [].append if stream else None
        task = asyncio.create_task(provider.complete(request(on_token=on_token)))
        assert await asyncio.to_thread(server.wait_for_requests, 1, 5.0)
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - started < 1.0
        # the client is still usable afterwards
        assert (await provider.complete(request("after"))).text == "echo: after"

    async def test_cancelling_mid_stream(
        self, provider: LLMProvider, server: FakeVendorServer
    ) -> None:
        server.script(Reply(text=" ".join(["word"] * 50), chunk_delay=0.5))
        first = asyncio.Event()
        deltas: list[str] = []

        def on_token(delta: str) -> None:
            deltas.append(delta)
            first.set()

        task = asyncio.create_task(provider.complete(request(on_token=on_token)))
        await asyncio.wait_for(first.wait(), 10)
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - started < 1.0
        assert 0 < len(deltas) < 50
