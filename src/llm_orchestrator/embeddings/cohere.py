"""Cohere embeddings through the official SDK (`AsyncClientV2.embed`, the v2 API)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import cohere
import httpx
import pydantic
from cohere.core.api_error import ApiError

from llm_orchestrator.embeddings.base import EmbeddingRequest, EmbeddingResponse
from llm_orchestrator.exceptions import (
    ProviderConnectionError,
    ProviderError,
    ProviderResponseError,
    ProviderTimeoutError,
)
from llm_orchestrator.providers._errors import body_text, parse_retry_after, redact, status_error

#: Cohere's limit of texts per embed call
COHERE_MAX_TEXTS = 96
DEFAULT_MODEL = "embed-v4.0"


class CohereEmbedder:
    """`Embedder` over Cohere's v2 embed endpoint (input_type search_document, float vectors)."""

    def __init__(
        self,
        name: str,
        *,
        api_key: str,
        base_url: str | None,
        default_model: str,
        timeout_seconds: float,
    ) -> None:
        self.name = name
        self.default_model = default_model
        self.max_batch_size: int | None = COHERE_MAX_TEXTS
        self._key = api_key
        self._timeout = timeout_seconds
        self._base_url = base_url or "https://api.cohere.com"
        self._http = httpx.AsyncClient(timeout=timeout_seconds)
        self._client = cohere.AsyncClientV2(
            api_key=api_key,
            base_url=self._base_url,
            timeout=timeout_seconds,
            max_retries=0,
            httpx_client=self._http,
            log_warning_experimental_features=False,
        )

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        model = request.model or self.default_model
        params: dict[str, Any] = {
            "model": model,
            "texts": list(request.texts),
            "input_type": "search_document",
            "embedding_types": ["float"],
        }
        if request.dimensions is not None:
            params["output_dimension"] = request.dimensions
        try:
            response = await self._client.embed(**params)
        except ApiError as exc:
            raise self._status(exc, model) from exc
        except httpx.TimeoutException as exc:
            raise ProviderTimeoutError(
                f"embed request for model '{model}' timed out after {self._timeout}s",
                provider=self.name,
            ) from exc
        except httpx.TransportError as exc:
            raise ProviderConnectionError(
                f"could not reach {self._base_url} ({redact(str(exc), self._key)})",
                provider=self.name,
            ) from exc
        except (json.JSONDecodeError, pydantic.ValidationError) as exc:
            raise ProviderResponseError(
                f"embed reply for model '{model}' could not be understood: {exc}",
                provider=self.name,
            ) from exc
        vectors = response.embeddings.float_
        if vectors is None or len(vectors) != len(request.texts):
            got = "no float vectors" if vectors is None else f"{len(vectors)} vectors"
            raise ProviderResponseError(
                f"embed reply for model '{model}' has {got} for {len(request.texts)} texts",
                provider=self.name,
            )
        tokens = 0
        meta = response.meta
        if meta is not None and meta.billed_units is not None:
            tokens = int(meta.billed_units.input_tokens or 0)
        return EmbeddingResponse(
            vectors=[list(v) for v in vectors], model=model, input_tokens=tokens
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    def _status(self, exc: ApiError, model: str) -> ProviderError:
        headers: Mapping[str, str] = {k.lower(): v for k, v in (exc.headers or {}).items()}
        status = exc.status_code
        if status is None:
            return ProviderResponseError(
                f"embed request for model '{model}' failed: {redact(str(exc), self._key)}",
                provider=self.name,
            )
        parsed = exc.body
        message = parsed.get("message") if isinstance(parsed, Mapping) else None
        text = parsed if isinstance(parsed, str) else None
        return status_error(
            status,
            provider=self.name,
            model=model,
            message=redact(message, self._key) if isinstance(message, str) else None,
            body=body_text(text, None if text else parsed, self._key),
            retry_after=parse_retry_after(headers),
        )
