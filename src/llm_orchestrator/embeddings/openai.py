"""OpenAI embeddings (`/v1/embeddings`), and any server speaking that API
(`openai_compatible`). The SDK does not retry: the engine does."""

from __future__ import annotations

import json
from typing import Any

import openai
from openai.types import CreateEmbeddingResponse

from llm_orchestrator.embeddings.base import EmbeddingRequest, EmbeddingResponse
from llm_orchestrator.exceptions import (
    ProviderConnectionError,
    ProviderError,
    ProviderResponseError,
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

#: sent to servers that need no key, because the SDK refuses to run without one
PLACEHOLDER_KEY = "not-needed"
#: OpenAI accepts at most this many inputs per request
OPENAI_MAX_INPUTS = 2048


class OpenAIEmbedder:
    """`Embedder` over `AsyncOpenAI.embeddings.create`."""

    def __init__(
        self,
        name: str,
        *,
        api_key: str | None,
        base_url: str | None,
        default_model: str,
        timeout_seconds: float,
    ) -> None:
        self.name = name
        self.default_model = default_model
        self.max_batch_size: int | None = OPENAI_MAX_INPUTS
        self._timeout = timeout_seconds
        self._key = api_key or PLACEHOLDER_KEY
        extra: dict[str, Any] = {}
        if base_url is not None:
            extra["base_url"] = base_url
        self._client = openai.AsyncOpenAI(
            api_key=self._key, timeout=timeout_seconds, max_retries=0, **extra
        )

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        model = request.model or self.default_model
        params: dict[str, Any] = {
            "model": model,
            "input": list(request.texts),
            "encoding_format": "float",
        }
        if request.dimensions is not None:
            params["dimensions"] = request.dimensions
        try:
            raw = await self._client.embeddings.with_raw_response.create(**params)
            try:
                parsed: object = raw.parse()
            except json.JSONDecodeError as exc:
                raise ProviderResponseError(
                    f"embeddings reply for model '{model}' is not valid JSON",
                    provider=self.name,
                    status_code=raw.status_code,
                    body=body_text(raw.text, None, self._key),
                ) from exc
        except openai.OpenAIError as exc:
            raise self._translate(exc, model) from exc
        return self._response(parsed, model, len(request.texts))

    async def aclose(self) -> None:
        await self._client.close()

    def _response(self, parsed: object, model: str, count: int) -> EmbeddingResponse:
        if not isinstance(parsed, CreateEmbeddingResponse):
            raise ProviderResponseError(
                f"embeddings reply for model '{model}' has an unexpected shape",
                provider=self.name,
            )
        items = sorted(parsed.data, key=lambda item: item.index)
        if len(items) != count or [item.index for item in items] != list(range(count)):
            raise ProviderResponseError(
                f"embeddings reply for model '{model}' has {len(items)} vectors for {count} inputs",
                provider=self.name,
            )
        vectors = [list(item.embedding) for item in items]
        tokens = parsed.usage.prompt_tokens if parsed.usage is not None else 0
        return EmbeddingResponse(vectors=vectors, model=parsed.model or model, input_tokens=tokens)

    def _translate(self, exc: openai.OpenAIError, model: str) -> ProviderError:
        if isinstance(exc, openai.APITimeoutError):
            return ProviderTimeoutError(
                f"embeddings request for model '{model}' timed out after {self._timeout}s",
                provider=self.name,
            )
        if isinstance(exc, openai.APIConnectionError):
            cause = redact(str(exc.__cause__ or exc), self._key)
            return ProviderConnectionError(
                f"could not reach {self._client.base_url} ({cause})", provider=self.name
            )
        if isinstance(exc, openai.APIStatusError):
            message = vendor_message(exc.body)
            return status_error(
                exc.status_code,
                provider=self.name,
                model=model,
                message=redact(message, self._key) if message else None,
                body=body_text(read_text(exc.response), exc.body, self._key),
                retry_after=parse_retry_after(exc.response.headers),
            )
        if isinstance(exc, openai.APIResponseValidationError):
            return ProviderResponseError(
                f"embeddings reply for model '{model}' does not match the API schema",
                provider=self.name,
                status_code=exc.status_code,
                body=body_text(read_text(exc.response), exc.body, self._key),
            )
        return ProviderResponseError(
            f"embeddings request for model '{model}' failed: {redact(str(exc), self._key)}",
            provider=self.name,
        )
