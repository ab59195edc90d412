"""OpenAI chat completions, and any server speaking that API (`openai_compatible`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import openai
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam
from openai.types.shared_params import ResponseFormatJSONSchema

from llm_orchestrator.exceptions import (
    CredentialsError,
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

if TYPE_CHECKING:
    from openai._legacy_response import LegacyAPIResponse

#: sent to servers that need no key, because the SDK refuses to run without one
PLACEHOLDER_KEY = "not-needed"


class OpenAIProvider:
    """`LLMProvider` over `AsyncOpenAI`; the SDK does not retry (the engine does)."""

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        self.name = name
        self.type = settings.type
        self.default_model = settings.model_or_default(None)
        self._timeout = settings.timeout_seconds
        key = settings.resolve_api_key()
        if key is None:
            if settings.type == "openai":
                raise CredentialsError(name, settings.key_env() or "OPENAI_API_KEY")
            key = PLACEHOLDER_KEY
        self._key = key
        extra: dict[str, Any] = {}
        if settings.base_url is not None:
            extra["base_url"] = settings.base_url
        self._client = openai.AsyncOpenAI(
            api_key=key, timeout=settings.timeout_seconds, max_retries=0, **extra
        )

    async def complete(self, request: ChatRequest) -> ChatResponse:
        model = request.model or self.default_model
        try:
            if request.on_token is not None:
                return await self._stream(request, model, request.on_token)
            raw = await self._client.chat.completions.with_raw_response.create(
                stream=False, **self._params(request, model)
            )
            return self._response(raw, model)
        except openai.OpenAIError as exc:
            raise self._translate(exc, model) from exc
        except json.JSONDecodeError as exc:  # a streamed event that is not JSON
            raise ProviderResponseError(
                f"streamed reply for model '{model}' is not valid JSON: {exc}", provider=self.name
            ) from exc

    async def aclose(self) -> None:
        await self._client.close()

    def _params(self, request: ChatRequest, model: str) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": model,
            "messages": [_message(m) for m in request.messages],
        }
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if request.max_tokens is not None:
            # OpenAI deprecated max_tokens (o-series and gpt-5 reject it); other servers
            # speaking the API mostly know only max_tokens
            limit = "max_completion_tokens" if self.type == "openai" else "max_tokens"
            params[limit] = request.max_tokens
        if request.stop:
            params["stop"] = list(request.stop)
        if request.json_schema is not None:
            fmt: ResponseFormatJSONSchema = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": request.json_schema},
            }
            params["response_format"] = fmt
        return params

    def _response(self, raw: LegacyAPIResponse[ChatCompletion], model: str) -> ChatResponse:
        try:
            completion: object = raw.parse()
        except json.JSONDecodeError as exc:
            raise self._bad_reply(raw, f"reply for model '{model}' is not valid JSON") from exc
        if not isinstance(completion, ChatCompletion) or not completion.choices:
            raise self._bad_reply(raw, f"reply for model '{model}' is not a chat completion")
        choice = completion.choices[0]
        message = getattr(choice, "message", None)
        usage = completion.usage
        return ChatResponse(
            text=getattr(message, "content", None) or "",
            model=completion.model or model,
            input_tokens=usage.prompt_tokens if usage else 0,
            output_tokens=usage.completion_tokens if usage else 0,
            finish_reason=choice.finish_reason,
            raw=completion.to_dict(),
        )

    def _bad_reply(self, raw: LegacyAPIResponse[ChatCompletion], message: str) -> ProviderError:
        return ProviderResponseError(
            message,
            provider=self.name,
            status_code=raw.status_code,
            body=body_text(raw.text, None, self._key),
        )

    async def _stream(
        self, request: ChatRequest, model: str, on_token: Callable[[str], None]
    ) -> ChatResponse:
        stream = await self._client.chat.completions.create(
            stream=True,
            stream_options={"include_usage": True},
            **self._params(request, model),
        )
        parts: list[str] = []
        finish_reason: str | None = None
        reported_model = model
        input_tokens = output_tokens = 0
        response_id: str | None = None
        chunks = 0
        async with stream:
            async for chunk in stream:
                chunks += 1
                response_id = chunk.id or response_id
                reported_model = chunk.model or reported_model
                if chunk.usage is not None:
                    input_tokens = chunk.usage.prompt_tokens
                    output_tokens = chunk.usage.completion_tokens
                for choice in chunk.choices:
                    if choice.index != 0:
                        continue
                    if choice.delta.content:
                        parts.append(choice.delta.content)
                        on_token(choice.delta.content)
                    if choice.finish_reason is not None:
                        finish_reason = choice.finish_reason
        if chunks == 0:  # e.g. a server that ignored `stream` and sent plain JSON
            raise ProviderResponseError(
                f"streamed reply for model '{model}' contained no events", provider=self.name
            )
        return ChatResponse(
            text="".join(parts),
            model=reported_model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            finish_reason=finish_reason,
            raw={"id": response_id, "model": reported_model, "streamed": True},
        )

    def _translate(self, exc: openai.OpenAIError, model: str) -> ProviderError:
        if isinstance(exc, openai.APITimeoutError):
            return ProviderTimeoutError(
                f"request for model '{model}' timed out after {self._timeout}s",
                provider=self.name,
            )
        if isinstance(exc, openai.APIConnectionError):
            cause = redact(str(exc.__cause__ or exc), self._key)
            return ProviderConnectionError(
                f"could not reach {self._client.base_url} ({cause})", provider=self.name
            )
        if isinstance(exc, openai.APIStatusError):
            body = body_text(read_text(exc.response), exc.body, self._key)
            message = vendor_message(exc.body)
            return status_error(
                exc.status_code,
                provider=self.name,
                model=model,
                message=redact(message, self._key) if message else None,
                body=body,
                retry_after=parse_retry_after(exc.response.headers),
            )
        if isinstance(exc, openai.APIResponseValidationError):
            return ProviderResponseError(
                f"reply for model '{model}' does not match the API schema",
                provider=self.name,
                status_code=exc.status_code,
                body=body_text(read_text(exc.response), exc.body, self._key),
            )
        if isinstance(exc, openai.APIError):  # an error event inside a stream
            return ProviderServerError(
                f"stream for model '{model}' failed: {redact(exc.message, self._key)}",
                provider=self.name,
                body=body_text(None, exc.body, self._key),
            )
        return ProviderResponseError(
            f"request for model '{model}' failed: {redact(str(exc), self._key)}",
            provider=self.name,
        )


def _message(message: Message) -> ChatCompletionMessageParam:
    if message.role == "system":
        return {"role": "system", "content": message.content}
    if message.role == "assistant":
        return {"role": "assistant", "content": message.content}
    return {"role": "user", "content": message.content}
