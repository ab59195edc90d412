from __future__ import annotations

import pytest

from llm_orchestrator.exceptions import CircuitOpenError
from llm_orchestrator.providers.circuit import CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def breaker(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker(3, 30.0, clock, provider="openai")


def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        breaker.before_call()
        breaker.record_failure()


def test_opens_after_threshold_consecutive_failures(breaker: CircuitBreaker) -> None:
    fail(breaker, 2)
    assert breaker.state == "closed"
    fail(breaker, 1)
    assert breaker.state == "open"
    with pytest.raises(CircuitOpenError) as caught:
        breaker.before_call()
    assert caught.value.provider == "openai"
    assert caught.value.retry_after == pytest.approx(30.0)
    assert "openai" in str(caught.value)


def test_success_resets_the_count(breaker: CircuitBreaker) -> None:
    fail(breaker, 2)
    breaker.before_call()
    breaker.record_success()
    fail(breaker, 2)
    assert breaker.state == "closed"
    assert breaker.consecutive_failures == 2


def test_retry_after_counts_down(breaker: CircuitBreaker, clock: FakeClock) -> None:
    fail(breaker, 3)
    clock.now += 12
    with pytest.raises(CircuitOpenError) as caught:
        breaker.before_call()
    assert caught.value.retry_after == pytest.approx(18.0)


def test_half_open_lets_exactly_one_trial_through(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    fail(breaker, 3)
    clock.now += 30
    breaker.before_call()  # the trial
    assert breaker.state == "half_open"
    with pytest.raises(CircuitOpenError):
        breaker.before_call()  # others wait for the trial's outcome
    breaker.record_success()
    assert breaker.state == "closed"
    breaker.before_call()
    breaker.before_call()


def test_failed_trial_reopens_for_a_full_period(breaker: CircuitBreaker, clock: FakeClock) -> None:
    fail(breaker, 3)
    clock.now += 31
    breaker.before_call()
    breaker.record_failure()
    assert breaker.state == "open"
    clock.now += 29
    with pytest.raises(CircuitOpenError):
        breaker.before_call()
    clock.now += 1
    breaker.before_call()
    assert breaker.state == "half_open"


def test_released_trial_lets_the_next_caller_try(breaker: CircuitBreaker, clock: FakeClock) -> None:
    fail(breaker, 3)
    clock.now += 30
    breaker.before_call()
    breaker.release()  # e.g. the trial was cancelled
    assert breaker.state == "half_open"
    breaker.before_call()
    with pytest.raises(CircuitOpenError):
        breaker.before_call()


def test_threshold_of_one(clock: FakeClock) -> None:
    breaker = CircuitBreaker(1, 5.0, clock)
    fail(breaker, 1)
    assert breaker.state == "open"


@pytest.mark.parametrize(("threshold", "recovery"), [(0, 1.0), (1, 0.0)])
def test_rejects_invalid_settings(threshold: int, recovery: float) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(threshold, recovery)
