"""What the state store keeps, as plain frozen dataclasses (never SQLAlchemy rows)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class RunState(StrEnum):
    """A stored run's status. `running` with an expired lease means its owner died."""

    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def finished(self) -> bool:
        return self in (
            RunState.COMPLETED,
            RunState.FAILED,
            RunState.CANCELLED,
            RunState.TIMED_OUT,
        )


@dataclass(frozen=True, slots=True)
class WorkflowDefinition:
    """The exact definition a run started with; a resumed run uses it, not the file."""

    hash: str  # sha256 of the canonical JSON of `document`
    name: str
    version: str
    document: dict[str, Any]
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class StoredRun:
    id: str
    workflow_hash: str
    workflow_name: str
    status: RunState
    inputs: dict[str, Any]
    created_at: datetime
    user_id: str | None = None
    owner: str | None = None
    lease_expires_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: dict[str, Any] | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    #: set on a run created by `runs replay` / `runs restore`: the run it came from
    parent_run_id: str | None = None


@dataclass(frozen=True, slots=True)
class StoredStep:
    """One step of a run as stored. `outputs` is None unless the step completed."""

    run_id: str
    step_id: str
    type: str
    status: str  # engine StepStatus value
    attempts: list[dict[str, Any]] = field(default_factory=list)
    outputs: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    #: node ids this step told the scheduler to skip (a branch's untaken side)
    skips: list[str] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    #: content hash of the outputs blob (filled by the store)
    outputs_hash: str | None = None


@dataclass(frozen=True, slots=True)
class CheckpointInfo:
    id: str
    run_id: str
    step_id: str
    created_at: datetime
    #: number of completed steps the checkpoint captures
    completed: int


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """A side-effecting action's claim (before it runs) and receipt (after it ran)."""

    run_id: str
    step_id: str
    idempotency_key: str
    claimed_at: datetime
    receipt: dict[str, Any] | None = None
    completed_at: datetime | None = None
