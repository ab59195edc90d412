"""A circuit breaker per provider instance: stop calling a vendor that keeps failing."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Literal

from llm_orchestrator.exceptions import (
    CircuitOpenError,
    ProviderBadRequestError,
    ProviderError,
)

CircuitState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """closed -> (failure_threshold consecutive failures) -> open -> (recovery_seconds) ->
    half_open: exactly one trial call; its success closes the circuit, its failure re-opens it.

    Every call that passed `before_call()` must end in `record_success()`,
    `record_failure()` or `release()` (neither: a cancelled call, a rejected request).
    """

    def __init__(
        self,
        failure_threshold: int,
        recovery_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        provider: str = "provider",
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if recovery_seconds <= 0:
            raise ValueError("recovery_seconds must be positive")
        self.failure_threshold = failure_threshold
        self.recovery_seconds = recovery_seconds
        self.provider = provider
        self._clock = clock
        self._lock = threading.Lock()
        self._state: CircuitState = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._trial_running = False

    @property
    def state(self) -> CircuitState:
        with self._lock:
            return self._state

    @property
    def consecutive_failures(self) -> int:
        with self._lock:
            return self._failures

    def before_call(self) -> None:
        """Let a call through, or raise CircuitOpenError with the seconds until a trial."""
        with self._lock:
            if self._state == "closed":
                return
            if self._state == "open":
                waited = self._clock() - self._opened_at
                if waited < self.recovery_seconds:
                    raise CircuitOpenError(self.provider, self.recovery_seconds - waited)
                self._state = "half_open"
                self._trial_running = True
                return
            if self._trial_running:
                # the trial's outcome is unknown; a full recovery period is the safe guess
                raise CircuitOpenError(self.provider, self.recovery_seconds)
            self._trial_running = True

    def record_success(self) -> None:
        with self._lock:
            self._state = "closed"
            self._failures = 0
            self._trial_running = False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._state == "half_open" or self._failures >= self.failure_threshold:
                self._state = "open"
                self._opened_at = self._clock()
            self._trial_running = False

    def release(self) -> None:
        """A call ended without saying anything about the vendor's health."""
        with self._lock:
            self._trial_running = False

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """Wrap one call: raises CircuitOpenError while open; a `ProviderError` counts as a
        failure, except a rejected request (`ProviderBadRequestError`), which, like a
        cancellation, says nothing about the vendor's health."""
        self.before_call()
        try:
            yield
        except ProviderBadRequestError:
            self.release()
            raise
        except ProviderError:
            self.record_failure()
            raise
        except BaseException:
            self.release()
            raise
        self.record_success()
