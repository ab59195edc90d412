"""Retry policy: which errors are retried, and how long to wait before the next attempt."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

Backoff = Literal["exponential", "linear", "constant"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    #: total attempts including the first (1 = no retries)
    max_attempts: int = 3
    #: exponential: initial * multiplier^(n-1); linear: initial * n; constant: initial
    backoff: Backoff = "exponential"
    #: seconds before the second attempt
    initial_delay: float = 0.1
    #: no delay is longer than this, a provider's Retry-After included
    max_delay: float = 30.0
    #: each delay is randomised by up to +-jitter (fraction)
    jitter: float = 0.1
    #: growth factor of exponential backoff
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_delay < 0 or self.max_delay < 0:
            raise ValueError("delays must not be negative")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")
        if self.multiplier < 1:
            raise ValueError("multiplier must be at least 1")

    def delay(self, failed_attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after attempt number `failed_attempt` (1-based) failed."""
        if self.backoff == "exponential":
            base = self.initial_delay * (self.multiplier ** (failed_attempt - 1))
        elif self.backoff == "linear":
            base = self.initial_delay * failed_attempt
        else:
            base = self.initial_delay
        if self.jitter:
            base *= 1 + random.uniform(-self.jitter, self.jitter)
        if retry_after is not None:
            # the vendor said when; never sooner than that
            base = max(base, retry_after)
        return float(max(0.0, min(base, self.max_delay)))


NO_RETRY = RetryPolicy(max_attempts=1)
