"""How the executor reports durable facts, without knowing where they are kept.

A run given a `RunJournal` awaits `step_finished` for every completed step before any of its
dependents starts: when that returns, the step's outputs are committed (and a checkpoint
taken), so a crash after it never repeats the step. A `Ledger` lets side-effecting steps
record a claim before they act and a receipt after, so a resumed run does not act twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from llm_orchestrator.engine.result import StepResult
from llm_orchestrator.engine.usage import ZERO_USAGE, Usage


class RunJournal(Protocol):
    async def step_finished(self, run_id: str, result: StepResult) -> None:
        """Persist a completed or failed step; raise to fail the step (e.g. unstorable)."""


class Ledger(Protocol):
    async def claim(self, run_id: str, step_id: str, key: str) -> dict[str, Any] | None:
        """Record that the action is about to run; return the receipt of an earlier,
        completed execution with the same key (then the action must not run again)."""

    async def receipt(self, run_id: str, step_id: str, key: str, value: dict[str, Any]) -> None:
        """Record that the action ran, and what it returned."""


@dataclass(frozen=True)
class Restored:
    """Where a resumed run starts: the steps that already completed, with their outputs."""

    completed: Mapping[str, StepResult] = field(default_factory=dict)
    usage: Usage = ZERO_USAGE
