"""The `StateStore` protocol: everything the engine, the CLI and (later) the server persist.

Implementations: `state.sql.SQLStateStore` (SQLAlchemy 2 async Core; SQLite by default,
PostgreSQL for several replicas). Every implementation passes the shared contract suite in
tests/state/contract.py.

Rules every implementation keeps:
- `record_step` commits the step row, its outputs and (for a completed step) a checkpoint in
  ONE transaction, and returns only after the commit: the executor starts no dependent before.
- Values are plain JSON, validated on write: a value that cannot be stored raises
  `StateSerializationError` naming the run, step and output path, at write time.
- Outputs are stored once per content hash; checkpoints refer to them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from llm_orchestrator.state.models import (
    CheckpointInfo,
    LedgerEntry,
    RunState,
    StoredRun,
    StoredStep,
    WorkflowDefinition,
)


@runtime_checkable
class StateStore(Protocol):
    async def open(self) -> None:
        """Connect; SQLite upgrades its schema itself, PostgreSQL refuses an old schema."""

    async def close(self) -> None: ...

    # -- definitions and runs ------------------------------------------------------------

    async def save_workflow(self, definition: WorkflowDefinition) -> None:
        """Idempotent by hash."""

    async def get_workflow(self, workflow_hash: str) -> WorkflowDefinition | None: ...

    async def create_run(self, run: StoredRun) -> None: ...

    async def update_run(
        self,
        run_id: str,
        *,
        status: RunState | None = None,
        error: dict[str, Any] | None = None,
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
        usage: tuple[int, int, float] | None = None,
        owner: str | None = None,
        lease_expires_at: datetime | None = None,
        workflow_hash: str | None = None,
    ) -> None:
        """Change only the given fields (None leaves a field as it is). A finished `status`
        also clears `owner` and `lease_expires_at`; `status=running` clears `error`.
        `workflow_hash` (a saved definition) is what a resume with a fixed workflow sets.
        Raises RunNotFoundError."""

    async def get_run(self, run_id: str) -> StoredRun | None: ...

    async def list_runs(
        self,
        *,
        status: RunState | None = None,
        workflow: str | None = None,
        since: datetime | None = None,
        user_id: str | None = None,
        limit: int = 100,
    ) -> list[StoredRun]:
        """Newest first."""

    # -- steps and checkpoints -----------------------------------------------------------

    async def record_step(self, step: StoredStep, *, checkpoint: bool = True) -> None:
        """Upsert the step; when it completed and `checkpoint`, write a checkpoint capturing
        every completed step of the run so far. One transaction. Steps of one run that
        commit in the same transaction share one checkpoint (they became durable together)."""

    async def get_steps(self, run_id: str) -> list[StoredStep]:
        """All recorded steps of a run, with outputs."""

    async def list_checkpoints(self, run_id: str) -> list[CheckpointInfo]:
        """Newest first."""

    async def load_checkpoint(self, checkpoint_id: str) -> tuple[StoredRun, list[StoredStep]]:
        """The run and its completed steps as of that checkpoint. Raises CheckpointNotFound."""

    # -- leases and recovery -------------------------------------------------------------

    async def claim_interrupted(
        self, owner: str, lease_seconds: float, limit: int = 100
    ) -> list[StoredRun]:
        """Atomically take runs whose status is running/pending and whose lease expired (or
        that have none), setting owner and a new lease. Safe across processes/replicas."""

    async def heartbeat(self, run_ids: Sequence[str], owner: str, lease_seconds: float) -> int:
        """Extend the leases this owner holds; returns how many were extended."""

    # -- side-effect ledger --------------------------------------------------------------

    async def ledger_claim(self, run_id: str, step_id: str, key: str) -> LedgerEntry:
        """Record a claim (idempotent); returns the entry, with its receipt if one exists."""

    async def ledger_receipt(
        self, run_id: str, step_id: str, key: str, receipt: dict[str, Any]
    ) -> None: ...

    # -- retention -----------------------------------------------------------------------

    async def prune_checkpoints(self, *, keep_last: int, older_than: datetime) -> int:
        """Delete checkpoints beyond the newest `keep_last` of each run that are also older
        than `older_than`; returns how many were deleted."""

    async def delete_runs(self, *, finished_before: datetime) -> int:
        """Delete finished runs (steps, checkpoints, ledger) and unreferenced outputs."""

    async def purge_user(self, user_id: str) -> int:
        """Erase every run of a user and every output only they referenced."""

    async def storage_stats(self) -> dict[str, int]:
        """Row counts and bytes stored, per table (for benchmarks and `db current`)."""
