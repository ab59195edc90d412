"""Client-side throttling per provider instance: requests and tokens per minute."""

from __future__ import annotations

import asyncio
import weakref

from aiolimiter import AsyncLimiter

from llm_orchestrator.providers.base import ChatRequest
from llm_orchestrator.settings import RateLimits


def estimate_tokens(request: ChatRequest) -> int:
    """A cheap upper-ish guess: 4 characters per prompt token, plus the output cap."""
    chars = sum(len(m.content) for m in request.messages)
    return chars // 4 + (request.max_tokens or 0)


class Throttle:
    """Waits until a call fits the configured limits; never fails.

    aiolimiter buckets belong to one event loop, so each loop gets its own pair; a process
    normally runs one loop, where every run shares them.
    """

    def __init__(self, limits: RateLimits) -> None:
        self.requests_per_minute = limits.requests_per_minute
        self.tokens_per_minute = limits.tokens_per_minute
        self._buckets: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[AsyncLimiter | None, AsyncLimiter | None]
        ] = weakref.WeakKeyDictionary()

    @property
    def enabled(self) -> bool:
        return self.requests_per_minute is not None or self.tokens_per_minute is not None

    async def acquire(self, estimated_tokens: int) -> None:
        if not self.enabled:
            return
        requests, tokens = self._limiters()
        if requests is not None:
            await requests.acquire()
        if tokens is not None and estimated_tokens > 0:
            # a call bigger than a whole minute's budget waits for a full bucket, not forever
            await tokens.acquire(min(float(estimated_tokens), tokens.max_rate))

    def _limiters(self) -> tuple[AsyncLimiter | None, AsyncLimiter | None]:
        loop = asyncio.get_running_loop()
        pair = self._buckets.get(loop)
        if pair is None:
            rpm, tpm = self.requests_per_minute, self.tokens_per_minute
            pair = (
                AsyncLimiter(rpm, 60) if rpm is not None else None,
                AsyncLimiter(tpm, 60) if tpm is not None else None,
            )
            self._buckets[loop] = pair
        return pair
