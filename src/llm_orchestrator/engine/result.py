"""The typed result of a run."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from llm_orchestrator.engine.usage import ZERO_USAGE, Usage


class RunStatus(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    code: str
    message: str
    step_id: str | None = None
    type: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "step_id": self.step_id}


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    number: int
    started_at: datetime
    duration_seconds: float
    error: ErrorInfo | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "started_at": self.started_at.isoformat(),
            "duration_seconds": round(self.duration_seconds, 6),
            "error": self.error.to_dict() if self.error else None,
        }


@dataclass(frozen=True, slots=True)
class StepResult:
    step_id: str
    type: str
    status: StepStatus
    outputs: dict[str, Any] = field(default_factory=dict)
    error: ErrorInfo | None = None
    attempts: tuple[AttemptRecord, ...] = ()
    usage: Usage = ZERO_USAGE
    info: dict[str, Any] = field(default_factory=dict)
    skip_reason: str | None = None
    #: step ids this step told the scheduler to skip (a branch's untaken side)
    skips: tuple[str, ...] = ()

    @property
    def duration_seconds(self) -> float:
        return sum(a.duration_seconds for a in self.attempts)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.type,
            "status": self.status.value,
            "outputs": self.outputs,
            "attempts": [a.to_dict() for a in self.attempts],
            "usage": self.usage.to_dict(),
        }
        if self.error:
            out["error"] = self.error.to_dict()
        if self.info:
            out["info"] = self.info
        if self.skip_reason:
            out["skip_reason"] = self.skip_reason
        return out


@dataclass(frozen=True, slots=True)
class RunResult:
    run_id: str
    workflow: str
    status: RunStatus
    steps: dict[str, StepResult]
    started_at: datetime
    finished_at: datetime
    usage: Usage = ZERO_USAGE
    errors: tuple[ErrorInfo, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status is RunStatus.COMPLETED

    @property
    def outputs(self) -> dict[str, dict[str, Any]]:
        """step id -> declared outputs, for the steps that completed."""
        return {sid: s.outputs for sid, s in self.steps.items() if s.status is StepStatus.COMPLETED}

    @property
    def cost_usd(self) -> float:
        return self.usage.cost_usd

    @property
    def duration_seconds(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "workflow": self.workflow,
            "status": self.status.value,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "duration_seconds": round(self.duration_seconds, 6),
            "outputs": self.outputs,
            "steps": {sid: s.to_dict() for sid, s in self.steps.items()},
            "usage": self.usage.to_dict(),
            "errors": [e.to_dict() for e in self.errors],
        }
