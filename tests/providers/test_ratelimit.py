from __future__ import annotations

import asyncio
import time

import pytest

from llm_orchestrator.providers.base import ChatRequest, Message
from llm_orchestrator.providers.ratelimit import Throttle, estimate_tokens
from llm_orchestrator.settings import RateLimits


def test_estimate_tokens() -> None:
    request = ChatRequest(
        model="m", messages=[Message("system", "x" * 40), Message("user", "y" * 41)], max_tokens=10
    )
    assert estimate_tokens(request) == 81 // 4 + 10
    assert estimate_tokens(ChatRequest(model="m", messages=[Message("user", "abcd")])) == 1


async def test_unlimited_never_waits() -> None:
    throttle = Throttle(RateLimits())
    assert not throttle.enabled
    started = time.monotonic()
    for _ in range(1000):
        await throttle.acquire(10_000)
    assert time.monotonic() - started < 0.5


async def test_requests_per_minute_allows_a_burst_then_waits() -> None:
    # 120/min: a burst of 120, then one every 0.5 s
    throttle = Throttle(RateLimits(requests_per_minute=120))
    for _ in range(120):
        await asyncio.wait_for(throttle.acquire(1), 0.1)
    started = time.monotonic()
    await throttle.acquire(1)
    assert 0.3 < time.monotonic() - started < 2.0


async def test_tokens_per_minute_waits_for_capacity() -> None:
    throttle = Throttle(RateLimits(tokens_per_minute=600))  # 10 tokens per second
    await asyncio.wait_for(throttle.acquire(600), 0.1)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(throttle.acquire(50), 0.2)


async def test_a_call_bigger_than_the_budget_still_goes_through() -> None:
    throttle = Throttle(RateLimits(tokens_per_minute=100))
    await asyncio.wait_for(throttle.acquire(1_000_000), 0.1)


async def test_shared_by_concurrent_callers() -> None:
    throttle = Throttle(RateLimits(requests_per_minute=60))  # burst 60, then 1 per second
    results = await asyncio.gather(
        *(asyncio.wait_for(throttle.acquire(1), 0.2) for _ in range(60)),
    )
    assert len(results) == 60
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(throttle.acquire(1), 0.2)
