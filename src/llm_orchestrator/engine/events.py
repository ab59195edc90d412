"""What happened during a run, as plain immutable events.

Observers (CLI progress, metrics, logs, server streams) subscribe with a callable. They are
called synchronously and must be cheap: to do slow work, hand the event to a queue. An observer
that raises is logged and detached; it never fails or blocks the run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger("llm_orchestrator.events")


@dataclass(frozen=True, slots=True)
class RunStarted:
    run_id: str
    workflow: str
    step_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StepStarted:
    run_id: str
    step_id: str
    step_type: str
    attempt: int


@dataclass(frozen=True, slots=True)
class StepRetrying:
    run_id: str
    step_id: str
    attempt: int
    error: str
    delay_seconds: float


@dataclass(frozen=True, slots=True)
class StepToken:
    run_id: str
    step_id: str
    text: str


@dataclass(frozen=True, slots=True)
class StepCompleted:
    run_id: str
    step_id: str
    duration_seconds: float
    outputs: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StepFailed:
    run_id: str
    step_id: str
    status: str  # failed | timed_out | cancelled
    error: str


@dataclass(frozen=True, slots=True)
class StepSkipped:
    run_id: str
    step_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class RunFinished:
    run_id: str
    status: str
    duration_seconds: float


Event = (
    RunStarted
    | StepStarted
    | StepRetrying
    | StepToken
    | StepCompleted
    | StepFailed
    | StepSkipped
    | RunFinished
)
Observer = Callable[[Event], None]


class EventBus:
    __slots__ = ("_observers",)

    def __init__(self, observers: list[Observer] | None = None) -> None:
        self._observers: list[Observer] = list(observers or [])

    def subscribe(self, observer: Observer) -> None:
        self._observers.append(observer)

    @property
    def active(self) -> bool:
        return bool(self._observers)

    def emit(self, event: Event) -> None:
        for observer in tuple(self._observers):
            try:
                observer(event)
            except Exception:
                logger.exception("event observer %r failed; it is detached", observer)
                self._observers.remove(observer)
