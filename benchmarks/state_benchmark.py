"""Durability benchmark: what keeping every run on disk costs, and how fast runs come back.

Printed, all measured in this run:
  1. state-save latency (`record_step`, p50/p99): SQLite and PostgreSQL, sequential and with
     100 concurrent writers (group commit)
  2. the engine benchmark's workloads (chain-3, diamond-10), in memory vs durable on SQLite,
     and LangGraph with AsyncSqliteSaver (a checkpoint per step, also on disk): ratios
  3. time to recover 1,000 interrupted runs
  4. memory: 10,000 runs in the store and 1,000 durable runs in flight
  5. bytes stored per step

    python benchmarks/state_benchmark.py [--quick] [--postgres-url URL]

Without --postgres-url, a throwaway PostgreSQL cluster is started when this runs from a
checkout with the test dependencies (tests/support/postgres.py); otherwise PostgreSQL rows
are skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import resource
import shutil
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine_benchmark import CHAIN_3, DIAMOND_10, _langgraph, _ours  # noqa: E402

from llm_orchestrator import Settings  # noqa: E402
from llm_orchestrator.state.models import (  # noqa: E402
    RunState,
    StoredRun,
    StoredStep,
    WorkflowDefinition,
)
from llm_orchestrator.state.sql import SQLStateStore  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@contextlib.contextmanager
def postgres(url: str | None) -> Iterator[str | None]:
    if url:
        yield url
        return
    try:
        from tests.support.postgres import throwaway_cluster, throwaway_problem
    except ImportError:
        yield None
        return
    if throwaway_problem() is not None:
        yield None
        return
    with throwaway_cluster(fast=False) as server:  # fsync on: real durability
        yield server.url(server.admin_database)


async def fresh_store(url: str) -> SQLStateStore:
    if url.startswith("postgresql"):
        from llm_orchestrator.state import migrate

        await migrate.upgrade(url)
    store = SQLStateStore(url)
    await store.open()
    return store


async def _seed(store: SQLStateStore, runs: int, prefix: str) -> WorkflowDefinition:
    definition = WorkflowDefinition(
        hash=f"bench-{prefix}", name="bench", version="1", document={"name": "bench", "steps": []}
    )
    await store.save_workflow(definition)
    now = datetime.now(UTC)
    await asyncio.gather(
        *(
            store.create_run(
                StoredRun(
                    id=f"{prefix}-{i}",
                    workflow_hash=definition.hash,
                    workflow_name="bench",
                    status=RunState.RUNNING,
                    inputs={"i": i},
                    created_at=now,
                )
            )
            for i in range(runs)
        )
    )
    return definition


def _step(run_id: str, n: int) -> StoredStep:
    now = datetime.now(UTC)
    return StoredStep(
        run_id=run_id,
        step_id=f"s{n}",
        type="llm",
        status="completed",
        outputs={"text": f"answer {n} for {run_id}", "metadata": {"n": n}},
        attempts=[
            {"number": 1, "started_at": now.isoformat(), "duration_seconds": 0.001, "error": None}
        ],
        started_at=now,
        finished_at=now,
    )


async def save_latency(url: str, count: int) -> dict[str, float]:
    store = await fresh_store(url)
    try:
        await _seed(store, count + 100, "lat")
        sequential: list[float] = []
        for i in range(count):
            started = time.perf_counter()
            await store.record_step(_step(f"lat-{i}", 1))
            sequential.append(time.perf_counter() - started)
        concurrent: list[float] = []

        async def writer(w: int) -> None:
            for n in range(2, 12):
                started = time.perf_counter()
                await store.record_step(_step(f"lat-{w}", n))
                concurrent.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(writer(w) for w in range(100)))
        elapsed = time.perf_counter() - started
    finally:
        await store.close()
    return {
        "seq_p50": pct(sequential, 0.5) * 1000,
        "seq_p99": pct(sequential, 0.99) * 1000,
        "conc_p50": pct(concurrent, 0.5) * 1000,
        "conc_p99": pct(concurrent, 0.99) * 1000,
        "steps_per_s": len(concurrent) / elapsed,
    }


async def throughput(
    run_one: Callable[[int], Awaitable[Any]],
    total: int,
    in_flight: int,
) -> float:
    for i in range(20):
        await run_one(i)
    semaphore = asyncio.Semaphore(in_flight)

    async def bounded(i: int) -> None:
        async with semaphore:
            await run_one(i)

    started = time.perf_counter()
    await asyncio.gather(*(bounded(i) for i in range(total)))
    return total / (time.perf_counter() - started)


async def workloads(workdir: Path, total: int) -> list[tuple[str, float, float, float | None]]:
    rows = []
    for label, text, kind in (("chain-3", CHAIN_3, "chain"), ("diamond-10", DIAMOND_10, "diamond")):
        orch, memory_run = _ours(text, 0.0)
        memory = await throughput(memory_run, total, 100)
        await orch.aclose()
        home = workdir / f"ours-{kind}"
        settings = Settings(home=home)
        store = SQLStateStore(settings.database())
        await store.open()
        orch, durable_run = _ours(text, 0.0, store=store, settings=settings)
        durable = await throughput(durable_run, total, 100)
        await orch.aclose()
        await store.close()
        theirs: float | None = None
        try:
            from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
        except ImportError:
            AsyncSqliteSaver = None  # noqa: N806
        if AsyncSqliteSaver is not None:
            async with AsyncSqliteSaver.from_conn_string(str(workdir / f"lg-{kind}.db")) as saver:
                lg_run = _langgraph(kind, 0.0, checkpointer=saver)
                if lg_run is not None:
                    theirs = await throughput(lg_run, total, 100)
        rows.append((label, memory, durable, theirs))
    return rows


async def recovery(workdir: Path, runs: int) -> float:
    """Seconds for a new process's Orchestrator to resume `runs` interrupted chain-3 runs
    (two of three steps done, the owner dead)."""
    settings = Settings(home=workdir / "recover", state={"lease_seconds": 30})
    store = SQLStateStore(settings.database())
    await store.open()
    orch, run_one = _ours(CHAIN_3, 0.0, store=store, settings=settings)
    results = await asyncio.gather(*(run_one(i) for i in range(runs)))
    past = datetime.now(UTC) - timedelta(minutes=5)
    for result in results:  # forget s3 and mark the owner dead
        await store.update_run(
            result.run_id, status=RunState.RUNNING, owner="dead:1:x", lease_expires_at=past
        )
    await orch.aclose()
    # as if each process died during s3: its row says failed, so it must run again
    for result in results:
        await store.record_step(
            StoredStep(
                run_id=result.run_id,
                step_id="s3",
                type="llm",
                status="failed",
                attempts=[],
                error={"code": "x", "message": "killed"},
            ),
            checkpoint=False,
        )
    survivor, _ = _ours(CHAIN_3, 0.0, store=store, settings=settings)
    started = time.perf_counter()
    recovered = await survivor.recover(limit=runs)
    elapsed = time.perf_counter() - started
    await survivor.aclose()
    await store.close()
    assert len(recovered) == runs and all(r.ok for r in recovered)
    return elapsed


async def memory_and_size(workdir: Path, stored: int, in_flight: int) -> dict[str, float]:
    settings = Settings(home=workdir / "memory")
    store = SQLStateStore(settings.database())
    await store.open()
    orch, fast = _ours(CHAIN_3, 0.0, store=store, settings=settings)
    semaphore = asyncio.Semaphore(200)

    async def bounded(i: int) -> None:
        async with semaphore:
            await fast(i)

    await asyncio.gather(*(bounded(i) for i in range(stored)))
    stats = await store.storage_stats()
    await orch.aclose()
    steps = stored * 3
    stored_bytes = sum(
        v for k, v in stats.items() if k.endswith("_bytes") and k != "database_bytes"
    )
    slow_orch, slow = _ours(CHAIN_3, 1.0, store=store, settings=settings)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    tasks = [asyncio.create_task(slow(i)) for i in range(in_flight)]
    await asyncio.sleep(0.5)
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    await asyncio.gather(*tasks)
    await slow_orch.aclose()
    await store.close()
    return {
        "bytes_per_step": stored_bytes / steps,
        "db_bytes_per_step": stats["database_bytes"] / steps,
        "kb_per_in_flight": held / in_flight / 1024,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


async def main(quick: bool, postgres_url: str | None) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="llmo-state-bench-"))
    count, total, runs, stored = (300, 1000, 300, 2000) if quick else (1000, 3000, 1000, 10000)
    try:
        print(f"python {sys.version.split()[0]}; {os.cpu_count()} cores; work dir {workdir}")
        print("\n1. state save (record_step) latency, ms")
        print(
            f"{'backend':<12}{'seq p50':>10}{'seq p99':>10}{'100w p50':>10}{'100w p99':>10}"
            f"{'steps/s':>10}"
        )
        with postgres(postgres_url) as pg:
            backends = [("sqlite", f"sqlite+aiosqlite:///{workdir / 'latency.db'}")]
            if pg:
                backends.append(
                    (
                        "postgresql",
                        pg.replace("postgresql://", "postgresql+asyncpg://", 1)
                        if pg.startswith("postgresql://")
                        else pg,
                    )
                )
            for name, url in backends:
                f = await save_latency(url, count)
                print(
                    f"{name:<12}{f['seq_p50']:>10.2f}{f['seq_p99']:>10.2f}{f['conc_p50']:>10.2f}"
                    f"{f['conc_p99']:>10.2f}{f['steps_per_s']:>10.0f}"
                )
            if not pg:
                print("postgresql  skipped (no server: pass --postgres-url)")

        print(f"\n2. workflows/s ({total} runs, 100 in flight)")
        print(
            f"{'workload':<12}{'memory':>10}{'durable':>10}{'dur/mem':>9}"
            f"{'LangGraph+AsyncSqliteSaver':>28}{'ours/LG':>9}"
        )
        for label, memory, durable, theirs in await workloads(workdir, total):
            ratio = f"{durable / theirs:.2f}x" if theirs else "-"
            lg = f"{theirs:.0f}" if theirs else "-"
            print(
                f"{label:<12}{memory:>10.0f}{durable:>10.0f}{durable / memory:>9.2f}{lg:>28}"
                f"{ratio:>9}"
            )

        seconds = await recovery(workdir, runs)
        print(f"\n3. recover {runs} interrupted runs: {seconds:.2f} s")

        m = await memory_and_size(workdir, stored, 1000)
        print(
            f"\n4. memory: {stored} runs in the store, 1000 durable runs in flight: "
            f"{m['kb_per_in_flight']:.1f} KB per in-flight run (traced), peak RSS "
            f"{m['rss_mb']:.0f} MB"
        )
        print(
            f"5. stored: {m['bytes_per_step']:.0f} bytes of row data per step, "
            f"{m['db_bytes_per_step']:.0f} bytes of database file per step"
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--postgres-url", default=None)
    args = parser.parse_args()
    asyncio.run(main(args.quick, args.postgres_url))
