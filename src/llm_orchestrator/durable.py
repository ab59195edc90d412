"""Durable runs: the bridge between the executor's journal hooks and a `StateStore`.

Every completed step is committed (outputs + checkpoint, one transaction) before its
dependents start. A run holds a lease its process renews; a run whose lease expired was
interrupted and can be resumed by anyone: the steps it completed are restored from the store,
the rest run (a step in flight at the crash runs again).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from llm_orchestrator.engine.journal import Restored
from llm_orchestrator.engine.result import (
    AttemptRecord,
    ErrorInfo,
    RunResult,
    RunStatus,
    StepResult,
    StepStatus,
)
from llm_orchestrator.engine.usage import Usage
from llm_orchestrator.exceptions import StateError
from llm_orchestrator.settings import StateSettings
from llm_orchestrator.state.models import (
    RunState,
    StoredRun,
    StoredStep,
    WorkflowDefinition,
)
from llm_orchestrator.state.store import StateStore
from llm_orchestrator.workflow.loader import Workflow

logger = logging.getLogger(__name__)


def canonical_hash(value: Any) -> str:
    data = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(data.encode()).hexdigest()


def workflow_definition(workflow: Workflow) -> WorkflowDefinition:
    return WorkflowDefinition(
        hash=canonical_hash(workflow.document),
        name=workflow.name,
        version=workflow.header.version,
        document=workflow.document,
    )


def step_hashes(document: Mapping[str, Any]) -> dict[str, str]:
    """Content hash of every step's definition (nested steps included, by id)."""
    hashes: dict[str, str] = {}

    def visit(items: Any) -> None:
        if not isinstance(items, list):
            return
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                continue
            hashes[item["id"]] = canonical_hash(item)
            for value in item.values():
                if isinstance(value, list):
                    visit(value)
                elif isinstance(value, dict):
                    for nested in value.values():
                        visit(nested)

    visit(document.get("steps"))
    return hashes


def changed_steps(
    old: Mapping[str, Any], new: Mapping[str, Any], completed: Iterable[str]
) -> list[str]:
    """Completed steps whose definition differs (or vanished) between two documents."""
    before, after = step_hashes(old), step_hashes(new)
    return sorted(s for s in completed if before.get(s) != after.get(s))


def new_owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def now() -> datetime:
    return datetime.now(UTC)


# -- StepResult <-> StoredStep ------------------------------------------------------------


def _attempt_dict(a: AttemptRecord) -> dict[str, Any]:
    return a.to_dict()


def _attempt_from(d: Mapping[str, Any]) -> AttemptRecord:
    error = d.get("error")
    return AttemptRecord(
        number=int(d["number"]),
        started_at=datetime.fromisoformat(d["started_at"]),
        duration_seconds=float(d["duration_seconds"]),
        error=ErrorInfo(error["code"], error["message"], error.get("step_id")) if error else None,
    )


def to_stored(run_id: str, result: StepResult) -> StoredStep:
    attempts = [_attempt_dict(a) for a in result.attempts]
    started = result.attempts[0].started_at if result.attempts else None
    finished = None
    if result.attempts:
        last = result.attempts[-1]
        finished = last.started_at + timedelta(seconds=last.duration_seconds)
    return StoredStep(
        run_id=run_id,
        step_id=result.step_id,
        type=result.type,
        status=result.status.value,
        attempts=attempts,
        outputs=result.outputs if result.status is StepStatus.COMPLETED else None,
        error=result.error.to_dict() if result.error else None,
        info=_info_for_storage(result),
        skips=list(result.skips),
        input_tokens=result.usage.input_tokens,
        output_tokens=result.usage.output_tokens,
        cost_usd=result.usage.cost_usd,
        started_at=started,
        finished_at=finished,
    )


def _info_for_storage(result: StepResult) -> dict[str, Any]:
    info = {k: v for k, v in result.info.items() if k != "restored"}
    if result.skip_reason:
        info["skip_reason"] = result.skip_reason
    return info


def from_stored(step: StoredStep) -> StepResult:
    error = step.error
    info = dict(step.info)
    skip_reason = info.pop("skip_reason", None)
    return StepResult(
        step_id=step.step_id,
        type=step.type,
        status=StepStatus(step.status),
        outputs=dict(step.outputs or {}),
        error=ErrorInfo(error["code"], error["message"], error.get("step_id")) if error else None,
        attempts=tuple(_attempt_from(a) for a in step.attempts),
        usage=Usage(step.input_tokens, step.output_tokens, step.cost_usd),
        info=info,
        skip_reason=skip_reason,
        skips=tuple(step.skips),
    )


def restored_from(steps: Iterable[StoredStep], keep: set[str] | None = None) -> Restored:
    """The completed steps (optionally only those in `keep`) as a resume starting point."""
    completed = {
        s.step_id: from_stored(s)
        for s in steps
        if s.status == StepStatus.COMPLETED.value and (keep is None or s.step_id in keep)
    }
    usage = Usage()
    for result in completed.values():
        usage = usage + result.usage
    return Restored(completed=completed, usage=usage)


_STATE_OF = {
    RunStatus.COMPLETED: RunState.COMPLETED,
    RunStatus.FAILED: RunState.FAILED,
    RunStatus.CANCELLED: RunState.CANCELLED,
    RunStatus.TIMED_OUT: RunState.TIMED_OUT,
}


def run_state(status: RunStatus) -> RunState:
    return _STATE_OF[status]


# -- the journal the executor writes through ----------------------------------------------


class StoreJournal:
    """`RunJournal` and `Ledger` on a StateStore."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    async def step_finished(self, run_id: str, result: StepResult) -> None:
        await self.store.record_step(to_stored(run_id, result), checkpoint=True)

    async def claim(self, run_id: str, step_id: str, key: str) -> dict[str, Any] | None:
        entry = await self.store.ledger_claim(run_id, step_id, key)
        return entry.receipt

    async def receipt(self, run_id: str, step_id: str, key: str, value: dict[str, Any]) -> None:
        await self.store.ledger_receipt(run_id, step_id, key, value)


async def finish_run(store: StateStore, result: RunResult) -> None:
    """Record every step the journal did not (failed, skipped, cancelled) and the run's end.
    Nothing is left `running` after a clean exit."""
    await asyncio.gather(
        *(
            store.record_step(to_stored(result.run_id, step), checkpoint=False)
            for step in result.steps.values()
            if step.status is not StepStatus.COMPLETED  # completed ones were journaled
        )
    )
    error = result.errors[0].to_dict() if result.errors else None
    await store.update_run(
        result.run_id,
        status=run_state(result.status),
        error=error,
        finished_at=result.finished_at,
        usage=(result.usage.input_tokens, result.usage.output_tokens, result.usage.cost_usd),
    )


class LeaseKeeper:
    """Background upkeep while this process has runs in flight: renews their leases every
    `lease_seconds / 3`, and prunes expired checkpoints every `prune_interval` seconds."""

    def __init__(
        self,
        store: StateStore,
        owner: str,
        settings: StateSettings,
        *,
        prune_interval: float = 600.0,
    ) -> None:
        self.store = store
        self.owner = owner
        self.settings = settings
        self.lease_seconds = settings.lease_seconds
        self.prune_interval = prune_interval
        self.active: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._last_prune = time.monotonic()

    def lease_until(self) -> datetime:
        return now() + timedelta(seconds=self.lease_seconds)

    def add(self, run_id: str) -> None:
        self.active.add(run_id)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._renew())

    def discard(self, run_id: str) -> None:
        self.active.discard(run_id)

    async def _renew(self) -> None:
        interval = self.lease_seconds / 3
        while self.active:
            await asyncio.sleep(interval)
            if not self.active:
                break
            try:
                await self.store.heartbeat(sorted(self.active), self.owner, self.lease_seconds)
            except StateError:
                # the run goes on; if the store stays unreachable the lease lapses and
                # another process may take the run over (at-least-once for in-flight steps)
                logger.exception("lease renewal failed for %d runs", len(self.active))
            if time.monotonic() - self._last_prune >= self.prune_interval:
                await self.prune()

    async def prune(self) -> int:
        """Delete checkpoints past the retention (last N per run, older than the max age)."""
        self._last_prune = time.monotonic()
        try:
            return await self.store.prune_checkpoints(
                keep_last=self.settings.checkpoint_keep_last,
                older_than=now() - timedelta(hours=self.settings.checkpoint_max_age_hours),
            )
        except StateError:
            logger.exception("pruning expired checkpoints failed; retrying later")
            return 0

    async def aclose(self) -> None:
        self.active.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def stored_run(
    run_id: str,
    definition: WorkflowDefinition,
    inputs: Mapping[str, Any],
    owner: str,
    lease_until: datetime,
    *,
    user_id: str | None = None,
    parent_run_id: str | None = None,
) -> StoredRun:
    started = now()
    return StoredRun(
        id=run_id,
        workflow_hash=definition.hash,
        workflow_name=definition.name,
        status=RunState.RUNNING,
        inputs=dict(inputs),
        created_at=started,
        started_at=started,
        user_id=user_id,
        owner=owner,
        lease_expires_at=lease_until,
        parent_run_id=parent_run_id,
    )
