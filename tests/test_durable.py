"""Durable runs through the Orchestrator on the SQLite store: steps committed as they finish,
resume, recover after a dead owner, replay, restore, refusal on changed definitions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from llm_orchestrator import Orchestrator, RunStatus, Settings, load_workflow
from llm_orchestrator.exceptions import ResumeRefusedError
from llm_orchestrator.state.models import RunState
from llm_orchestrator.state.sql import SQLStateStore
from tests.support.probe import CALLS

CHAIN = """
name: durable-chain
inputs: {n: {type: integer}}
steps:
  - {id: s1, type: probe, value: "{{ inputs.n + 1 }}"}
  - {id: s2, type: probe, depends_on: [s1], value: "{{ steps.s1.result * 10 }}"}
  - {id: s3, type: probe, depends_on: [s2], value: "{{ steps.s2.result + 5 }}", FAIL}
  - {id: s4, type: probe, depends_on: [s3], value: "{{ steps.s3.result }}!"}
"""


def chain(fail: bool = False) -> Any:
    extra = "fail_times: 9, error: auth, retry: {max_attempts: 1}" if fail else "sleep: 0"
    return load_workflow("chain.yaml", text=CHAIN.replace("FAIL", extra))


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[SQLStateStore]:
    s = SQLStateStore(settings.database(), settings.state)
    await s.open()
    yield s
    await s.close()


@pytest.fixture
async def orch(settings: Settings, store: SQLStateStore) -> AsyncIterator[Orchestrator]:
    o = Orchestrator(settings, store=store)
    yield o
    await o.aclose()


def called(step_id: str) -> int:
    return sum(1 for c in CALLS if c.step_id == step_id)


async def test_a_durable_run_is_stored_step_by_step(
    orch: Orchestrator, store: SQLStateStore
) -> None:
    result = await orch.run(chain(), {"n": 1}, user_id="u1")
    assert result.ok, result.errors
    run = await store.get_run(result.run_id)
    assert run is not None and run.status is RunState.COMPLETED
    assert run.user_id == "u1" and run.owner is None and run.finished_at is not None
    steps = {s.step_id: s for s in await store.get_steps(result.run_id)}
    assert steps["s4"].outputs == {"result": "25!"}
    assert [len(s.attempts) for s in steps.values()] == [1, 1, 1, 1]
    checkpoints = await store.list_checkpoints(result.run_id)
    assert len(checkpoints) == 4 and checkpoints[0].step_id == "s4"


async def test_failed_run_resumes_only_what_did_not_complete(
    orch: Orchestrator, store: SQLStateStore
) -> None:
    failed = await orch.run(chain(fail=True), {"n": 1})
    assert failed.status is RunStatus.FAILED
    assert (await store.get_run(failed.run_id)).status is RunState.FAILED  # type: ignore[union-attr]
    # the cause is fixed (here: a workflow whose failing step no longer fails) ...
    with pytest.raises(ResumeRefusedError, match="changed since the run started: s1;"):
        # ... but a changed definition of a completed step would be refused
        changed = load_workflow(
            "c.yaml", text=CHAIN.replace("inputs.n + 1", "inputs.n + 2").replace("FAIL", "sleep: 0")
        )
        await orch.resume(failed.run_id, changed)
    CALLS.clear()
    resumed = await orch.resume(failed.run_id, chain())
    assert resumed.ok, resumed.errors
    assert resumed.run_id == failed.run_id
    assert called("s1") == 0 and called("s2") == 0 and called("s3") == 1 and called("s4") == 1
    assert resumed.outputs["s4"] == {"result": "25!"}
    assert resumed.steps["s1"].info.get("restored") is True


async def test_recover_takes_over_a_run_whose_owner_died(
    settings: Settings, store: SQLStateStore
) -> None:
    dead = Orchestrator(settings, store=store)
    result = await dead.run(chain(fail=True), {"n": 2})
    await dead.aclose()
    # make it look like the process died mid-run: still running, lease lapsed
    await store.update_run(
        result.run_id,
        status=RunState.RUNNING,
        owner="dead-host:1:x",
        lease_expires_at=datetime.now(UTC) - timedelta(seconds=5),
    )
    survivor = Orchestrator(settings, store=store)
    # a stored definition cannot be fixed by recover: the failing step fails again
    recovered = await survivor.recover()
    await survivor.aclose()
    assert [r.run_id for r in recovered] == [result.run_id]
    assert recovered[0].steps["s1"].info.get("restored") is True
    assert (await store.get_run(result.run_id)).owner is None  # type: ignore[union-attr]


async def test_resume_refuses_a_run_owned_by_a_live_process(
    orch: Orchestrator, store: SQLStateStore
) -> None:
    result = await orch.run(chain(fail=True), {"n": 1})
    await store.update_run(
        result.run_id,
        status=RunState.RUNNING,
        owner="other-host:2:y",
        lease_expires_at=datetime.now(UTC) + timedelta(minutes=5),
    )
    with pytest.raises(ResumeRefusedError, match="running in other-host"):
        await orch.resume(result.run_id)


async def test_completed_run_cannot_be_resumed(orch: Orchestrator) -> None:
    result = await orch.run(chain(), {"n": 1})
    with pytest.raises(ResumeRefusedError, match="already completed"):
        await orch.resume(result.run_id)


async def test_replay_from_a_step_reuses_upstream_outputs(
    orch: Orchestrator, store: SQLStateStore
) -> None:
    first = await orch.run(chain(), {"n": 1})
    CALLS.clear()
    replayed = await orch.replay(first.run_id, "s3")
    assert replayed.ok and replayed.run_id != first.run_id
    assert called("s1") == 0 and called("s2") == 0 and called("s3") == 1 and called("s4") == 1
    run = await store.get_run(replayed.run_id)
    assert run is not None and run.parent_run_id == first.run_id
    assert {s.step_id for s in await store.get_steps(replayed.run_id)} == {"s1", "s2", "s3", "s4"}


async def test_restore_a_checkpoint(orch: Orchestrator, store: SQLStateStore) -> None:
    first = await orch.run(chain(), {"n": 3})
    checkpoints = await store.list_checkpoints(first.run_id)
    after_s2 = next(c for c in checkpoints if c.step_id == "s2")
    CALLS.clear()
    restored = await orch.restore(after_s2.id)
    assert restored.ok
    assert called("s1") == 0 and called("s2") == 0 and called("s3") == 1
    assert restored.outputs["s4"] == first.outputs["s4"]


async def test_cancel_marks_the_run(orch: Orchestrator, store: SQLStateStore) -> None:
    result = await orch.run(chain(fail=True), {"n": 1})
    with pytest.raises(ResumeRefusedError, match="already ended"):
        await orch.cancel_run(result.run_id)
    await store.update_run(result.run_id, status=RunState.RUNNING)
    await orch.cancel_run(result.run_id)
    assert (await store.get_run(result.run_id)).status is RunState.CANCELLED  # type: ignore[union-attr]


async def test_unstorable_output_fails_at_write_time(orch: Orchestrator) -> None:
    workflow = load_workflow(
        "bad.yaml",
        text="name: bad\nsteps:\n  - {id: when, type: probe, value: '{{ fromjson(\"1\") }}'}\n"
        '  - {id: odd, type: probe, depends_on: [when], value: "{{ range(3) }}"}\n',
    )
    result = await orch.run(workflow)
    assert result.status is RunStatus.FAILED
    error = result.errors[0]
    assert error.code == "state_serialization" and error.step_id == "odd"
    assert "odd" in error.message


async def test_leases_are_renewed_and_old_checkpoints_pruned(
    settings: Settings, store: SQLStateStore
) -> None:
    from llm_orchestrator.durable import LeaseKeeper

    settings.state.lease_seconds = 0.3
    settings.state.checkpoint_keep_last = 1
    settings.state.checkpoint_max_age_hours = 1e-9
    orch = Orchestrator(settings, store=store)
    assert orch._leases is not None
    orch._leases.prune_interval = 0.0
    slow = load_workflow(
        "slow.yaml",
        text="name: slow\nsteps:\n  - {id: a, type: probe}\n"
        "  - {id: b, type: probe, depends_on: [a]}\n"
        "  - {id: c, type: probe, sleep: 0.5, depends_on: [b]}\n",
    )
    import asyncio

    task = asyncio.create_task(orch.run(slow, run_id="lease-run"))
    await asyncio.sleep(0.1)
    before = await store.get_run("lease-run")
    await asyncio.sleep(0.3)
    after = await store.get_run("lease-run")
    result = await task
    await orch.aclose()
    assert result.ok
    assert before is not None and after is not None
    assert before.lease_expires_at is not None and after.lease_expires_at is not None
    # renewed while c slept: the lease moved forward
    assert after.lease_expires_at > before.lease_expires_at
    # and the background upkeep pruned the expired checkpoints down to the last one or two
    assert len(await store.list_checkpoints(result.run_id)) <= 2
    keeper = LeaseKeeper(store, "me", settings.state)
    assert await keeper.prune() >= 0
    assert len(await store.list_checkpoints(result.run_id)) == 1


async def test_a_thousand_concurrent_durable_runs_on_sqlite(
    orch: Orchestrator, store: SQLStateStore
) -> None:
    import asyncio

    workflow = chain()
    results = await asyncio.gather(*(orch.run(workflow, {"n": n}) for n in range(1000)))
    assert all(r.ok for r in results), [r.errors for r in results if not r.ok][:1]
    stored = await store.list_runs(status=RunState.COMPLETED, limit=5000)
    assert len(stored) == 1000
    sample = results[123]
    steps = {s.step_id: s for s in await store.get_steps(sample.run_id)}
    assert steps["s4"].outputs == {"result": f"{(123 + 1) * 10 + 5}!"}


async def test_a_run_resumed_with_a_fixed_workflow_keeps_the_fix(
    orch: Orchestrator, store: SQLStateStore
) -> None:
    failed = await orch.run(chain(fail=True), {"n": 1})
    before = await store.get_run(failed.run_id)
    resumed = await orch.resume(failed.run_id, chain())
    assert resumed.ok
    after = await store.get_run(failed.run_id)
    assert before is not None and after is not None
    assert after.workflow_hash != before.workflow_hash
    # a replay uses the fixed definition: the step that failed before now succeeds
    CALLS.clear()
    replayed = await orch.replay(failed.run_id, "s3")
    assert replayed.ok, replayed.errors
    assert called("s3") == 1
