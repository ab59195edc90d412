"""Pieces of the vendor-error translation that every HTTP adapter shares."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

import httpx2

from llm_orchestrator.exceptions import (
    ProviderAuthError,
    ProviderBadRequestError,
    ProviderError,
    ProviderRateLimitedError,
    ProviderServerError,
    ProviderTimeoutError,
)

#: how much of a vendor's error body is kept on the error
MAX_BODY_CHARS = 2000


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `Retry-After` (seconds or an HTTP date)."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass  # malformed: fall through to Retry-After
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass  # not a number: an HTTP date
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def body_text(text: str | None, parsed: object, secret: str | None) -> str | None:
    """The vendor's error body as text, redacted and truncated to MAX_BODY_CHARS."""
    if not text:
        text = None if parsed is None else json.dumps(parsed, default=str)
    if text is None:
        return None
    return redact(text, secret)[:MAX_BODY_CHARS]


def vendor_message(parsed: object) -> str | None:
    """`message` from a vendor error body (`{"error": {"message": ...}}` or the inner dict)."""
    if not isinstance(parsed, Mapping):
        return None
    inner = parsed.get("error", parsed)
    message = inner.get("message") if isinstance(inner, Mapping) else None
    return message if isinstance(message, str) else None


def redact(text: str, secret: str | None) -> str:
    if secret and len(secret) >= 4:
        return text.replace(secret, "***")
    return text


def status_error(
    status: int,
    *,
    provider: str,
    model: str,
    message: str | None,
    body: str | None,
    retry_after: float | None,
) -> ProviderError:
    """The typed error for an HTTP error status, decided once here."""
    cls: type[ProviderError]
    if status in (401, 403):
        cls, hint = ProviderAuthError, "check the API key and its permissions"
    elif status == 429:
        cls, hint = ProviderRateLimitedError, "rate limited"
    elif status == 408:
        cls, hint = ProviderTimeoutError, "the server timed out the request"
    elif status >= 500:
        cls, hint = ProviderServerError, "server error"
    else:
        cls, hint = ProviderBadRequestError, "the request was rejected; fix the request"
    detail = f": {message}" if message else ""
    return cls(
        f"HTTP {status} for model '{model}' ({hint}){detail}",
        provider=provider,
        status_code=status,
        body=body,
        retry_after=retry_after,
    )


def read_text(response: httpx2.Response) -> str | None:
    """The body of an error response, unless it was never read (a stream)."""
    try:
        return response.text
    except httpx2.ResponseNotRead:
        return None
