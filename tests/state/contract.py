"""The contract every `StateStore` passes (haystack's document-store test-suite pattern).

A backend's test module subclasses `StateStoreContract` and supplies two fixtures: `store`, an
open store on a fresh database, and `second_store`, another open store on the SAME database
(standing in for a second process or replica).
"""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from llm_orchestrator.exceptions import (
    CheckpointNotFoundError,
    RunNotFoundError,
    StateError,
    StateSerializationError,
)
from llm_orchestrator.state.models import (
    RunState,
    StoredRun,
    StoredStep,
    WorkflowDefinition,
)
from llm_orchestrator.state.store import StateStore

WORKFLOW = WorkflowDefinition(
    hash="a" * 64,
    name="summarize",
    version="1.0",
    document={"name": "summarize", "steps": [{"id": "fetch", "type": "llm"}], "ratio": 0.5},
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def make_run(run_id: str, **changes: Any) -> StoredRun:
    fields: dict[str, Any] = {
        "id": run_id,
        "workflow_hash": WORKFLOW.hash,
        "workflow_name": WORKFLOW.name,
        "status": RunState.RUNNING,
        "inputs": {"topic": "durable runs"},
        "created_at": T0,
    }
    fields.update(changes)
    return StoredRun(**fields)


def completed(run_id: str, step_id: str, outputs: dict[str, Any], **changes: Any) -> StoredStep:
    fields: dict[str, Any] = {
        "run_id": run_id,
        "step_id": step_id,
        "type": "llm",
        "status": "completed",
        "outputs": outputs,
    }
    fields.update(changes)
    return StoredStep(**fields)


async def new_run(store: StateStore, run_id: str, **changes: Any) -> StoredRun:
    await store.save_workflow(WORKFLOW)
    run = make_run(run_id, **changes)
    await store.create_run(run)
    return run


class StateStoreContract:
    """Behaviour shared by every StateStore implementation."""

    # -- definitions and runs ------------------------------------------------------------

    async def test_is_a_state_store(self, store: StateStore) -> None:
        assert isinstance(store, StateStore)

    async def test_save_workflow_is_idempotent_by_hash(self, store: StateStore) -> None:
        await store.save_workflow(WORKFLOW)
        await store.save_workflow(WORKFLOW)
        await store.save_workflow(
            WorkflowDefinition(hash=WORKFLOW.hash, name="other", version="9", document={})
        )
        got = await store.get_workflow(WORKFLOW.hash)
        assert got is not None
        assert (got.hash, got.name, got.version, got.document) == (
            WORKFLOW.hash,
            WORKFLOW.name,
            WORKFLOW.version,
            WORKFLOW.document,
        )
        assert got.created_at is not None and got.created_at.tzinfo is not None
        assert (await store.storage_stats())["workflows_rows"] == 1
        assert await store.get_workflow("f" * 64) is None

    async def test_run_round_trip(self, store: StateStore) -> None:
        plus_two = timezone(timedelta(hours=2))
        run = await new_run(
            store,
            "run-1",
            status=RunState.PENDING,
            inputs={"text": "héllo wörld ✓ 日本語", "n": 3, "nested": {"a": [1, 2.5, None]}},
            created_at=datetime(2026, 1, 1, 14, 0, 0, 123456, tzinfo=plus_two),
            user_id="alice",
            owner="worker-1",
            lease_expires_at=T0 + timedelta(seconds=30),
            started_at=T0,
            error={"code": "x", "message": "ünïcode"},
            input_tokens=10,
            output_tokens=20,
            cost_usd=0.125,
            parent_run_id="run-0",
        )
        got = await store.get_run("run-1")
        assert got == run
        assert got is not None
        assert got.created_at.tzinfo is not None
        assert got.created_at.utcoffset() == timedelta(0)
        assert got.created_at == datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
        assert isinstance(got.status, RunState)
        assert await store.get_run("missing") is None

    async def test_create_run_needs_a_saved_workflow(self, store: StateStore) -> None:
        with pytest.raises(StateError, match="save_workflow"):
            await store.create_run(make_run("run-1"))
        assert await store.get_run("run-1") is None

    async def test_create_run_twice_is_refused(self, store: StateStore) -> None:
        await new_run(store, "run-1")
        with pytest.raises(StateError, match="already exists"):
            await store.create_run(make_run("run-1"))

    async def test_running_again_clears_the_old_error(self, store: StateStore) -> None:
        await new_run(store, "run-1")
        await store.update_run("run-1", status=RunState.FAILED, error={"code": "x"})
        await store.update_run("run-1", status=RunState.RUNNING, owner="w9")
        got = await store.get_run("run-1")
        assert got is not None and got.error is None and got.owner == "w9"

    async def test_update_run_changes_only_given_fields(self, store: StateStore) -> None:
        run = await new_run(store, "run-1", user_id="alice", owner="w1")
        await store.update_run("run-1", status=RunState.COMPLETED, usage=(5, 7, 0.25))
        got = await store.get_run("run-1")
        assert got == StoredRun(
            **{
                **_fields(run),
                "status": RunState.COMPLETED,
                "input_tokens": 5,
                "output_tokens": 7,
                "cost_usd": 0.25,
                # an ended run holds no lease
                "owner": None,
                "lease_expires_at": None,
            }
        )
        lease = T0 + timedelta(minutes=5)
        await store.update_run(
            "run-1",
            error={"code": "boom", "detail": ["a", 1]},
            started_at=T0,
            finished_at=T0 + timedelta(seconds=1),
            owner="w2",
            lease_expires_at=lease,
        )
        got = await store.get_run("run-1")
        assert got is not None
        assert got.status is RunState.COMPLETED
        assert got.error == {"code": "boom", "detail": ["a", 1]}
        assert (got.started_at, got.finished_at) == (T0, T0 + timedelta(seconds=1))
        assert (got.owner, got.lease_expires_at, got.user_id) == ("w2", lease, "alice")

    async def test_update_missing_run_raises_run_not_found(self, store: StateStore) -> None:
        with pytest.raises(RunNotFoundError, match="nope"):
            await store.update_run("nope", status=RunState.FAILED)
        with pytest.raises(RunNotFoundError):
            await store.update_run("nope")

    async def test_list_runs_filters_newest_first(self, store: StateStore) -> None:
        await store.save_workflow(WORKFLOW)
        other = WorkflowDefinition(hash="b" * 64, name="other", version="1", document={})
        await store.save_workflow(other)
        for i in range(6):
            await store.create_run(
                make_run(
                    f"run-{i}",
                    created_at=T0 + timedelta(minutes=i),
                    status=RunState.COMPLETED if i % 2 else RunState.RUNNING,
                    user_id="alice" if i < 3 else "bob",
                    **(
                        {"workflow_hash": other.hash, "workflow_name": other.name} if i == 5 else {}
                    ),
                )
            )

        async def ids(**filters: Any) -> list[str]:
            return [run.id for run in await store.list_runs(**filters)]

        assert await ids() == ["run-5", "run-4", "run-3", "run-2", "run-1", "run-0"]
        assert await ids(limit=2) == ["run-5", "run-4"]
        assert await ids(status=RunState.COMPLETED) == ["run-5", "run-3", "run-1"]
        assert await ids(workflow="other") == ["run-5"]
        assert await ids(workflow="summarize", status=RunState.RUNNING) == [
            "run-4",
            "run-2",
            "run-0",
        ]
        assert await ids(since=T0 + timedelta(minutes=4)) == ["run-5", "run-4"]
        assert await ids(user_id="alice") == ["run-2", "run-1", "run-0"]
        assert await ids(user_id="carol") == []

    async def test_naive_datetimes_are_refused(self, store: StateStore) -> None:
        await store.save_workflow(WORKFLOW)
        with pytest.raises(StateError, match="naive"):
            await store.create_run(make_run("run-1", created_at=datetime(2026, 1, 1)))
        assert await store.get_run("run-1") is None

    # -- steps and outputs ---------------------------------------------------------------

    async def test_record_step_round_trip(self, store: StateStore) -> None:
        await new_run(store, "run-1")
        big = "".join(f"line {i}: ✓ durable 日本語\n" for i in range(60_000))  # ~1.9 MB
        values = {
            "text": 'héllo ✓ 𝄞 日本語 \u0000 "quoted" \\ back',
            "meta": {
                "items": [1, -2, 3.5, 1e-300, 2**70, True, False, None, [], {}],
                "deep": {"a": {"b": {"c": [[["x"]]]}}},
                "weird keys": {"": 1, "with space": 2, "ünï": 3, "1": 4},
            },
            "big": big,
            "float": 0.1 + 0.2,
            "neg_zero": -0.0,
        }
        step = completed(
            "run-1",
            "fetch",
            values,
            attempts=[{"n": 1, "error": "timeout"}, {"n": 2}],
            info={"model": "gpt", "latency": 1.5},
            skips=["b", "c"],
            error=None,
            input_tokens=100,
            output_tokens=50,
            cost_usd=0.0125,
            started_at=T0,
            finished_at=T0 + timedelta(seconds=2),
        )
        await store.record_step(step)
        [got] = await store.get_steps("run-1")
        assert got.outputs == values
        assert got.outputs is not None
        assert math.copysign(1.0, got.outputs["neg_zero"]) == -1.0
        assert got.outputs_hash is not None and len(got.outputs_hash) == 64
        assert got == StoredStep(**{**_fields(step), "outputs_hash": got.outputs_hash})
        stats = await store.storage_stats()
        assert stats["outputs_bytes"] < len(big.encode()) / 4, "outputs are compressed"

    async def test_record_step_upserts(self, store: StateStore) -> None:
        await new_run(store, "run-1")
        await store.record_step(
            StoredStep(run_id="run-1", step_id="s", type="llm", status="running")
        )
        [running] = await store.get_steps("run-1")
        assert (running.status, running.outputs, running.outputs_hash) == ("running", None, None)
        assert await store.list_checkpoints("run-1") == []
        await store.record_step(
            StoredStep(
                run_id="run-1",
                step_id="s",
                type="llm",
                status="failed",
                error={"code": "provider_server_error", "message": "500"},
                attempts=[{"n": 1}],
            )
        )
        [failed] = await store.get_steps("run-1")
        assert failed.status == "failed"
        assert failed.error == {"code": "provider_server_error", "message": "500"}
        assert await store.list_checkpoints("run-1") == []
        await store.record_step(completed("run-1", "s", {"text": "ok"}))
        [done] = await store.get_steps("run-1")
        assert (done.status, done.outputs, done.error) == ("completed", {"text": "ok"}, None)
        assert len(await store.list_checkpoints("run-1")) == 1

    async def test_record_step_of_missing_run(self, store: StateStore) -> None:
        with pytest.raises(RunNotFoundError, match="ghost"):
            await store.record_step(completed("ghost", "s", {"text": "x"}))
        assert (await store.storage_stats())["outputs_rows"] == 0

    async def test_identical_outputs_are_stored_once(self, store: StateStore) -> None:
        await new_run(store, "run-1")
        await new_run(store, "run-2")
        same = {"text": "the same answer", "n": [1, 2, 3]}
        await store.record_step(completed("run-1", "a", same))
        await store.record_step(completed("run-1", "b", dict(reversed(same.items()))))
        await store.record_step(completed("run-2", "a", same))
        await store.record_step(completed("run-2", "c", {"text": "different"}))
        stats = await store.storage_stats()
        assert stats["outputs_rows"] == 2
        assert stats["step_runs_rows"] == 4
        hashes = {step.outputs_hash for step in await store.get_steps("run-1")}
        hashes |= {s.outputs_hash for s in await store.get_steps("run-2") if s.step_id == "a"}
        assert len(hashes) == 1

    async def test_concurrent_writes_all_land_and_a_bad_one_fails_alone(
        self, store: StateStore
    ) -> None:
        await store.save_workflow(WORKFLOW)

        async def one_run(i: int) -> None:
            await store.create_run(make_run(f"run-{i}"))
            for step in ("a", "b"):
                await store.record_step(completed(f"run-{i}", step, {"i": i, "step": step}))
            await store.update_run(f"run-{i}", status=RunState.COMPLETED)

        results = await asyncio.gather(
            *(one_run(i) for i in range(50)),
            store.update_run("missing", status=RunState.FAILED),
            store.record_step(completed("missing", "x", {"text": "x"})),
            return_exceptions=True,
        )
        assert all(r is None for r in results[:50]), results[:50]
        assert isinstance(results[50], RunNotFoundError)
        assert isinstance(results[51], RunNotFoundError)
        done = await store.list_runs(status=RunState.COMPLETED, limit=1000)
        assert len(done) == 50
        stats = await store.storage_stats()
        assert stats["step_runs_rows"] == 100
        assert stats["checkpoints_rows"] == 100

    # -- checkpoints ---------------------------------------------------------------------

    async def test_checkpoints_capture_completed_steps(self, store: StateStore) -> None:
        await new_run(store, "run-1")
        await store.record_step(
            completed("run-1", "a", {"text": "A"}, input_tokens=10, output_tokens=1, cost_usd=0.5)
        )
        await store.record_step(
            StoredStep(
                run_id="run-1",
                step_id="b",
                type="llm",
                status="failed",
                error={"code": "x"},
                input_tokens=3,
            )
        )
        await store.record_step(completed("run-1", "c", {"text": "C"}, skips=["d"]))
        await store.record_step(completed("run-1", "e", {"text": "E"}), checkpoint=False)

        listed = await store.list_checkpoints("run-1")
        assert [(c.step_id, c.completed) for c in listed] == [("c", 2), ("a", 1)]
        assert all(c.run_id == "run-1" and c.created_at.tzinfo is not None for c in listed)

        run, steps = await store.load_checkpoint(listed[0].id)
        assert run.id == "run-1"
        assert (run.input_tokens, run.output_tokens, run.cost_usd) == (13, 1, 0.5)
        assert {s.step_id: s.outputs for s in steps} == {"a": {"text": "A"}, "c": {"text": "C"}}
        assert all(s.status == "completed" for s in steps)
        assert next(s for s in steps if s.step_id == "c").skips == ["d"]

        run, steps = await store.load_checkpoint(listed[1].id)
        assert [s.step_id for s in steps] == ["a"]
        assert (run.input_tokens, run.output_tokens) == (10, 1)

    async def test_checkpoint_keeps_the_outputs_it_captured(self, store: StateStore) -> None:
        await new_run(store, "run-1")
        await store.record_step(completed("run-1", "a", {"text": "first"}))
        [first] = await store.list_checkpoints("run-1")
        await store.record_step(completed("run-1", "a", {"text": "second"}))
        _, steps = await store.load_checkpoint(first.id)
        assert [s.outputs for s in steps] == [{"text": "first"}]
        [now] = await store.get_steps("run-1")
        assert now.outputs == {"text": "second"}

    async def test_list_checkpoints_newest_first(self, store: StateStore) -> None:
        await new_run(store, "run-1")
        for i in range(5):
            await store.record_step(completed("run-1", f"s{i}", {"i": i}))
        listed = await store.list_checkpoints("run-1")
        assert [c.step_id for c in listed] == ["s4", "s3", "s2", "s1", "s0"]
        assert [c.completed for c in listed] == [5, 4, 3, 2, 1]
        assert [c.created_at for c in listed] == sorted(
            (c.created_at for c in listed), reverse=True
        )
        assert await store.list_checkpoints("other") == []

    async def test_load_missing_checkpoint(self, store: StateStore) -> None:
        with pytest.raises(CheckpointNotFoundError, match="deadbeef"):
            await store.load_checkpoint("deadbeef")

    # -- serialization -------------------------------------------------------------------

    @pytest.mark.parametrize(
        ("outputs", "expected"),
        [
            (
                {"meta": {"items": [1, 2, {"when": T0}]}},
                "run run-1, step 'fetch', output 'meta' at $.items[2].when: datetime is not "
                "JSON; convert it to text",
            ),
            ({"score": float("nan")}, "output 'score' at $: float nan is not JSON"),
            ({"x": {"a": [float("inf")]}}, "output 'x' at $.a[0]: float inf"),
            ({"x": {1: "a"}}, "output 'x' at $: key 1 is int, not text"),
            ({"x": ("a", "b")}, "output 'x' at $: tuple is not JSON; convert it to a list"),
            ({"x": {"odd key": b"raw"}}, "output 'x' at $[\"odd key\"]: bytes is not JSON"),
            ({"x": {"s": {1, 2}}}, "output 'x' at $.s: set is not JSON"),
            ({"x": ["ok", "\ud800"]}, "output 'x' at $[1]: text contains a lone surrogate"),
        ],
    )
    async def test_unstorable_outputs_name_the_path_and_write_nothing(
        self, store: StateStore, outputs: dict[str, Any], expected: str
    ) -> None:
        await new_run(store, "run-1")
        before = await store.storage_stats()
        with pytest.raises(StateSerializationError) as caught:
            await store.record_step(completed("run-1", "fetch", outputs))
        assert expected in str(caught.value)
        assert await store.get_steps("run-1") == []
        assert await store.list_checkpoints("run-1") == []
        assert await store.storage_stats() == before

    async def test_unstorable_step_fields_and_inputs(self, store: StateStore) -> None:
        await new_run(store, "run-1")
        with pytest.raises(StateSerializationError, match=r"step 's', info at \$\.when"):
            await store.record_step(
                StoredStep(
                    run_id="run-1", step_id="s", type="llm", status="running", info={"when": T0}
                )
            )
        with pytest.raises(StateSerializationError, match=r"run run-2, inputs at \$\.tags"):
            await store.create_run(make_run("run-2", inputs={"tags": {"a", "b"}}))
        with pytest.raises(StateSerializationError, match=r"run run-1, error at \$\.at"):
            await store.update_run("run-1", error={"at": T0})
        assert await store.get_run("run-2") is None
        assert await store.get_steps("run-1") == []
        got = await store.get_run("run-1")
        assert got is not None and got.error is None

    # -- leases and recovery -------------------------------------------------------------

    async def test_claim_interrupted(self, store: StateStore) -> None:
        now = utcnow()
        await new_run(store, "expired", owner="dead", lease_expires_at=now - timedelta(seconds=5))
        await new_run(store, "no-lease", status=RunState.PENDING, created_at=T0 - timedelta(1))
        await new_run(store, "live", owner="alive", lease_expires_at=now + timedelta(minutes=5))
        await new_run(
            store,
            "finished",
            status=RunState.COMPLETED,
            lease_expires_at=now - timedelta(seconds=5),
        )
        await new_run(
            store, "paused", status=RunState.PAUSED, lease_expires_at=now - timedelta(seconds=5)
        )
        claimed = await store.claim_interrupted("me", lease_seconds=60)
        assert [run.id for run in claimed] == ["no-lease", "expired"]  # oldest first
        for run in claimed:
            assert run.owner == "me"
            assert run.lease_expires_at is not None
            assert run.lease_expires_at > now + timedelta(seconds=50)
            assert await store.get_run(run.id) == run
        assert await store.claim_interrupted("someone-else", lease_seconds=60) == []
        live = await store.get_run("live")
        assert live is not None and live.owner == "alive"

    async def test_claim_respects_limit(self, store: StateStore) -> None:
        for i in range(5):
            await new_run(store, f"run-{i}", created_at=T0 + timedelta(seconds=i))
        first = await store.claim_interrupted("me", lease_seconds=60, limit=2)
        assert [r.id for r in first] == ["run-0", "run-1"]
        rest = await store.claim_interrupted("me", lease_seconds=60, limit=10)
        assert [r.id for r in rest] == ["run-2", "run-3", "run-4"]

    async def test_concurrent_claimers_split_runs_disjointly(
        self, store: StateStore, second_store: StateStore
    ) -> None:
        await store.save_workflow(WORKFLOW)
        await asyncio.gather(
            *(
                store.create_run(make_run(f"run-{i:03}", created_at=T0 + timedelta(seconds=i)))
                for i in range(60)
            )
        )

        async def claimer(target: StateStore, owner: str) -> list[str]:
            taken: list[str] = []
            while True:
                got = await target.claim_interrupted(owner, lease_seconds=300, limit=7)
                if not got:
                    return taken
                taken.extend(run.id for run in got)
                await asyncio.sleep(0)

        results = await asyncio.gather(
            claimer(store, "a1"),
            claimer(store, "a2"),
            claimer(second_store, "b1"),
            claimer(second_store, "b2"),
        )
        flat = [run_id for taken in results for run_id in taken]
        assert len(flat) == len(set(flat)) == 60, "a run was claimed twice or never"
        for owner, taken in zip(("a1", "a2", "b1", "b2"), results, strict=True):
            for run_id in taken:
                run = await store.get_run(run_id)
                assert run is not None and run.owner == owner

    async def test_heartbeat_extends_own_leases_only(self, store: StateStore) -> None:
        soon = utcnow() + timedelta(seconds=1)
        await new_run(store, "mine-1", owner="me", lease_expires_at=soon)
        await new_run(store, "mine-2", owner="me", lease_expires_at=soon)
        await new_run(store, "theirs", owner="them", lease_expires_at=soon)
        extended = await store.heartbeat(["mine-1", "mine-2", "theirs", "ghost"], "me", 120)
        assert extended == 2
        for run_id in ("mine-1", "mine-2"):
            run = await store.get_run(run_id)
            assert run is not None and run.lease_expires_at is not None
            assert run.lease_expires_at > soon + timedelta(seconds=100)
        theirs = await store.get_run("theirs")
        assert theirs is not None and theirs.lease_expires_at == soon
        assert await store.heartbeat([], "me", 120) == 0

    # -- ledger --------------------------------------------------------------------------

    async def test_ledger_claim_and_receipt_are_idempotent(self, store: StateStore) -> None:
        await new_run(store, "run-1")
        first = await store.ledger_claim("run-1", "pay", "key-1")
        assert (first.run_id, first.step_id, first.idempotency_key) == ("run-1", "pay", "key-1")
        assert first.receipt is None and first.completed_at is None
        assert first.claimed_at.tzinfo is not None
        again = await store.ledger_claim("run-1", "pay", "key-1")
        assert again == first
        await store.ledger_receipt("run-1", "pay", "key-1", {"status": 200, "id": "tx-9"})
        done = await store.ledger_claim("run-1", "pay", "key-1")
        assert done.receipt == {"status": 200, "id": "tx-9"}
        assert done.claimed_at == first.claimed_at
        assert done.completed_at is not None and done.completed_at >= done.claimed_at
        other = await store.ledger_claim("run-1", "pay", "key-2")
        assert other.receipt is None
        assert (await store.storage_stats())["ledger_rows"] == 2

    async def test_ledger_errors(self, store: StateStore) -> None:
        await new_run(store, "run-1")
        with pytest.raises(StateError, match="ledger_claim first"):
            await store.ledger_receipt("run-1", "pay", "never-claimed", {"ok": True})
        with pytest.raises(RunNotFoundError):
            await store.ledger_claim("ghost", "pay", "k")
        await store.ledger_claim("run-1", "pay", "k")
        with pytest.raises(StateSerializationError, match=r"receipt at \$\.at"):
            await store.ledger_receipt("run-1", "pay", "k", {"at": T0})

    # -- retention -----------------------------------------------------------------------

    async def test_prune_checkpoints_keeps_newest_and_recent(self, store: StateStore) -> None:
        await new_run(store, "run-1")
        await new_run(store, "run-2")
        for i in range(5):
            await store.record_step(completed("run-1", f"s{i}", {"i": i}))
        for i in range(2):
            await store.record_step(completed("run-2", f"s{i}", {"i": i}))
        # nothing is older than an hour ago: nothing goes, whatever keep_last says
        assert await store.prune_checkpoints(keep_last=1, older_than=utcnow() - timedelta(1)) == 0
        pruned = await store.prune_checkpoints(
            keep_last=2, older_than=utcnow() + timedelta(seconds=1)
        )
        assert pruned == 3
        assert [c.step_id for c in await store.list_checkpoints("run-1")] == ["s4", "s3"]
        assert [c.step_id for c in await store.list_checkpoints("run-2")] == ["s1", "s0"]
        kept = await store.list_checkpoints("run-1")
        _, steps = await store.load_checkpoint(kept[-1].id)
        assert len(steps) == 4
        assert await store.prune_checkpoints(keep_last=2, older_than=utcnow()) == 0

    async def test_delete_runs_removes_everything_of_finished_runs(self, store: StateStore) -> None:
        cutoff = T0 + timedelta(days=1)
        await new_run(
            store,
            "old",
            status=RunState.COMPLETED,
            finished_at=T0,
            inputs={"secret": "x" * 100},
        )
        await new_run(store, "recent", status=RunState.FAILED, finished_at=cutoff + timedelta(1))
        await new_run(store, "running")
        await store.record_step(completed("old", "a", {"text": "only old"}))
        await store.record_step(completed("old", "b", {"text": "shared"}))
        await store.record_step(completed("recent", "a", {"text": "shared"}))
        await store.record_step(completed("running", "a", {"text": "only running"}))
        await store.ledger_claim("old", "b", "k")
        before = await store.storage_stats()
        assert before["outputs_rows"] == 3

        assert await store.delete_runs(finished_before=cutoff) == 1
        assert await store.get_run("old") is None
        assert await store.get_steps("old") == []
        assert await store.list_checkpoints("old") == []
        stats = await store.storage_stats()
        assert stats["runs_rows"] == 2
        assert stats["outputs_rows"] == 2  # "only old" is gone, "shared" stays
        assert stats["step_runs_rows"] == 2
        assert stats["checkpoints_rows"] == 2
        assert stats["ledger_rows"] == 0
        assert stats["run_outputs_rows"] == 2
        [recent] = await store.get_steps("recent")
        assert recent.outputs == {"text": "shared"}
        assert await store.delete_runs(finished_before=cutoff) == 0

    async def test_delete_runs_keeps_outputs_only_a_checkpoint_refers_to(
        self, store: StateStore
    ) -> None:
        await new_run(store, "old", status=RunState.COMPLETED, finished_at=T0)
        await new_run(store, "live")
        await store.record_step(completed("old", "a", {"text": "v1"}))
        await store.record_step(completed("live", "a", {"text": "v1"}))
        [checkpoint] = await store.list_checkpoints("live")
        await store.record_step(completed("live", "a", {"text": "v2"}))
        assert await store.delete_runs(finished_before=T0 + timedelta(1)) == 1
        _, steps = await store.load_checkpoint(checkpoint.id)
        assert [s.outputs for s in steps] == [{"text": "v1"}]

    async def test_purge_user_leaves_other_users_shared_outputs(self, store: StateStore) -> None:
        await new_run(store, "alice-1", user_id="alice")
        await new_run(store, "alice-2", user_id="alice", status=RunState.COMPLETED)
        await new_run(store, "bob-1", user_id="bob")
        await store.record_step(completed("alice-1", "a", {"text": "alice private"}))
        await store.record_step(completed("alice-2", "a", {"text": "common answer"}))
        await store.record_step(completed("bob-1", "a", {"text": "common answer"}))
        await store.ledger_claim("alice-1", "a", "k")

        assert await store.purge_user("alice") == 2
        assert await store.list_runs(user_id="alice") == []
        stats = await store.storage_stats()
        assert stats["runs_rows"] == 1
        assert stats["outputs_rows"] == 1
        assert stats["ledger_rows"] == 0
        [bob] = await store.get_steps("bob-1")
        assert bob.outputs == {"text": "common answer"}
        assert await store.purge_user("alice") == 0

    async def test_storage_stats_counts_rows_and_bytes(self, store: StateStore) -> None:
        stats = await store.storage_stats()
        for table in ("workflows", "runs", "outputs", "step_runs", "checkpoints", "ledger"):
            assert stats[f"{table}_rows"] == 0
            assert stats[f"{table}_bytes"] == 0
        assert stats["database_bytes"] > 0
        await new_run(store, "run-1")
        await store.record_step(completed("run-1", "a", {"text": "x" * 1000}))
        stats = await store.storage_stats()
        assert stats["runs_rows"] == 1 and stats["runs_bytes"] > 0
        assert stats["outputs_rows"] == 1 and 0 < stats["outputs_bytes"] < 1000


def _fields(value: Any) -> dict[str, Any]:
    return {name: getattr(value, name) for name in value.__dataclass_fields__}
