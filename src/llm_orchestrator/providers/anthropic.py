"""Anthropic's messages API."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anthropic
import httpx2
from anthropic.types import Message as AnthropicMessage
from anthropic.types import MessageParam

from llm_orchestrator.exceptions import (
    CredentialsError,
    ProviderBadRequestError,
    ProviderConnectionError,
    ProviderError,
    ProviderResponseError,
    ProviderServerError,
    ProviderTimeoutError,
)
from llm_orchestrator.providers._errors import (
    body_text,
    parse_retry_after,
    read_text,
    redact,
    status_error,
    vendor_message,
)
from llm_orchestrator.providers.base import ChatRequest, ChatResponse, Message
from llm_orchestrator.settings import ProviderSettings

#: the API requires max_tokens; used when the request sets none
DEFAULT_MAX_TOKENS = 1024

#: the HTTP status each documented error type comes with, for errors sent inside a stream
_STREAM_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


class AnthropicProvider:
    """`LLMProvider` over `AsyncAnthropic`; the SDK does not retry (the engine does)."""

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        self.name = name
        self.type = settings.type
        self.default_model = settings.model_or_default(None)
        self._timeout = settings.timeout_seconds
        key = settings.resolve_api_key()
        if key is None:
            raise CredentialsError(name, settings.key_env() or "ANTHROPIC_API_KEY")
        self._key = key
        # base_url None: the SDK falls back to ANTHROPIC_BASE_URL, then the public API
        self._client = anthropic.AsyncAnthropic(
            api_key=key,
            base_url=settings.base_url,
            timeout=settings.timeout_seconds,
            max_retries=0,
        )

    async def complete(self, request: ChatRequest) -> ChatResponse:
        model = request.model or self.default_model
        params = self._params(request, model)
        try:
            if request.on_token is not None:
                return await self._stream(params, model, request.on_token)
            raw = await self._client.messages.with_raw_response.create(**params)
            return await self._response(raw, model)
        except anthropic.AnthropicError as exc:
            raise self._translate(exc, model) from exc
        except httpx2.TimeoutException as exc:  # raised while reading a stream
            raise self._timeout_error(model) from exc
        except httpx2.TransportError as exc:
            raise self._connection_error(exc) from exc
        except json.JSONDecodeError as exc:
            raise ProviderResponseError(
                f"streamed reply for model '{model}' is not valid JSON: {exc}", provider=self.name
            ) from exc

    async def aclose(self) -> None:
        await self._client.close()

    def _params(self, request: ChatRequest, model: str) -> dict[str, Any]:
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        messages = [_message(m) for m in request.messages if m.role != "system"]
        params: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
        }
        if system:
            params["system"] = system
        if request.temperature is not None:
            # API version 2026-10-21 (sent by anthropic SDK 2.x) rejects sampling parameters
            raise ProviderBadRequestError(
                "the Anthropic API rejects `temperature` since API version 2026-10-21; "
                "remove `temperature` from steps that use this provider",
                provider=self.name,
            )
        if request.stop:
            params["stop_sequences"] = list(request.stop)
        if request.json_schema is not None:
            try:
                # the SDK's own rewrite into the schema subset structured outputs accept
                schema = anthropic.transform_schema(request.json_schema)
            except ValueError as exc:
                raise ProviderBadRequestError(
                    f"output schema cannot be used with structured outputs: {exc}",
                    provider=self.name,
                ) from exc
            params["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
        return params

    async def _response(self, raw: anthropic.AsyncAPIResponse[Any], model: str) -> ChatResponse:
        try:
            message: object = await raw.parse()
        except json.JSONDecodeError as exc:
            raise await self._bad_reply(
                raw, f"reply for model '{model}' is not valid JSON"
            ) from exc
        if not isinstance(message, AnthropicMessage) or not isinstance(
            getattr(message, "content", None), list
        ):
            raise await self._bad_reply(raw, f"reply for model '{model}' is not a message")
        return self._to_response(message, model, message.to_dict())

    def _to_response(
        self, message: AnthropicMessage, model: str, raw: dict[str, Any]
    ) -> ChatResponse:
        text = "".join(block.text for block in message.content if block.type == "text")
        usage = getattr(message, "usage", None)
        return ChatResponse(
            text=text,
            model=getattr(message, "model", None) or model,
            input_tokens=usage.input_tokens if usage else 0,
            output_tokens=usage.output_tokens if usage else 0,
            finish_reason=getattr(message, "stop_reason", None),
            raw=raw,
        )

    async def _stream(
        self, params: dict[str, Any], model: str, on_token: Callable[[str], None]
    ) -> ChatResponse:
        started = False
        async with self._client.messages.stream(**params) as stream:
            async for event in stream:
                if event.type == "message_start":
                    started = True
                elif event.type == "text":
                    on_token(event.text)
            if not started:
                raise ProviderResponseError(
                    f"stream for model '{model}' ended without a message", provider=self.name
                )
            message = await stream.get_final_message()
        raw = {"id": message.id, "model": message.model, "streamed": True}
        return self._to_response(message, model, raw)

    async def _bad_reply(self, raw: anthropic.AsyncAPIResponse[Any], message: str) -> ProviderError:
        return ProviderResponseError(
            message,
            provider=self.name,
            status_code=raw.status_code,
            body=body_text(await raw.text(), None, self._key),
        )

    def _timeout_error(self, model: str) -> ProviderError:
        return ProviderTimeoutError(
            f"request for model '{model}' timed out after {self._timeout}s", provider=self.name
        )

    def _connection_error(self, exc: BaseException) -> ProviderError:
        cause = redact(str(exc.__cause__ or exc), self._key)
        return ProviderConnectionError(
            f"could not reach {self._client.base_url} ({cause})", provider=self.name
        )

    def _translate(self, exc: anthropic.AnthropicError, model: str) -> ProviderError:
        if isinstance(exc, anthropic.APITimeoutError):
            return self._timeout_error(model)
        if isinstance(exc, anthropic.APIConnectionError):
            return self._connection_error(exc)
        if isinstance(exc, anthropic.APIStatusError):
            message = exc.api_message or vendor_message(exc.body)
            status = exc.status_code
            if status < 400:  # an `error` event inside a 200 stream: its type says why
                status = _STREAM_ERROR_STATUS.get(str(exc.type), 500)
            return status_error(
                status,
                provider=self.name,
                model=model,
                message=redact(message, self._key) if message else None,
                body=body_text(read_text(exc.response), exc.body, self._key),
                retry_after=parse_retry_after(exc.response.headers),
            )
        if isinstance(exc, anthropic.APIResponseValidationError):
            return ProviderResponseError(
                f"reply for model '{model}' does not match the API schema",
                provider=self.name,
                status_code=exc.status_code,
                body=body_text(read_text(exc.response), exc.body, self._key),
            )
        if isinstance(exc, anthropic.APIError):
            return ProviderServerError(
                f"request for model '{model}' failed: {redact(exc.message, self._key)}",
                provider=self.name,
                body=body_text(None, exc.body, self._key),
            )
        return ProviderResponseError(
            f"request for model '{model}' failed: {redact(str(exc), self._key)}",
            provider=self.name,
        )


def _message(message: Message) -> MessageParam:
    if message.role == "assistant":
        return {"role": "assistant", "content": message.content}
    return {"role": "user", "content": message.content}
