"""What every LLM provider adapter implements, and the plain data it exchanges."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str
    messages: Sequence[Message]
    temperature: float | None = None
    max_tokens: int | None = None
    stop: Sequence[str] | None = None
    #: JSON Schema the reply must match; adapters use the vendor's JSON mode when it has one
    json_schema: dict[str, Any] | None = None
    #: called with each text delta when streaming; None means do not stream
    on_token: Callable[[str], None] | None = None

    @property
    def stream(self) -> bool:
        return self.on_token is not None


@dataclass(frozen=True, slots=True)
class ChatResponse:
    text: str
    model: str
    input_tokens: int
    output_tokens: int
    finish_reason: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class LLMProvider(Protocol):
    """A configured connection to one vendor (or one local model).

    `complete` raises only `ProviderError` subclasses (chained to the vendor error). It must be
    cancellable: cancelling the awaiting task cancels the in-flight request.
    """

    name: str
    default_model: str

    async def complete(self, request: ChatRequest) -> ChatResponse: ...

    async def aclose(self) -> None: ...
