"""Engine benchmark: orchestration overhead, throughput and memory, against LangGraph.

Both engines run the same two workloads with an in-process provider that answers instantly
(no network), in one process, measured in the same run:

  chain-3     three llm steps, each prompt templated from the previous step's output
  diamond-10  one step -> eight parallel steps -> one join step

Printed: per-step orchestration overhead (median, p99), workflows per second (many runs in
flight), and memory per in-flight chain-3 workflow (1,000 at once, provider latency 1 s).
LangGraph is optional (installed only by `make bench`); without it only our figures print.

    python benchmarks/engine_benchmark.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import operator
import statistics
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypedDict

from llm_orchestrator import Orchestrator, Settings, load_workflow
from llm_orchestrator.providers.base import ChatRequest, ChatResponse

CHAIN_3 = """
name: chain-3
steps:
  - {id: s1, type: llm, provider: instant, prompt: "Summarise: {{ inputs.text }}"}
  - {id: s2, type: llm, provider: instant, depends_on: [s1],
     prompt: "Improve: {{ steps.s1.text }}"}
  - {id: s3, type: llm, provider: instant, depends_on: [s2],
     prompt: "Shorten: {{ steps.s2.text }}"}
"""

DIAMOND_10 = (
    """
name: diamond-10
steps:
  - {id: head, type: llm, provider: instant, prompt: "Plan: {{ inputs.text }}"}
"""
    + "".join(
        f"""  - {{id: p{i}, type: llm, provider: instant, depends_on: [head],
     prompt: "Part {i} of {{{{ steps.head.text }}}}"}}
"""
        for i in range(8)
    )
    + """  - id: join
    type: llm
    provider: instant
    depends_on: [p0, p1, p2, p3, p4, p5, p6, p7]
    prompt: "Join: {{ steps.p0.text }} {{ steps.p7.text }}"
"""
)


class InstantProvider:
    """Answers at once (or after `latency` seconds) with a short text."""

    name = "instant"
    default_model = "instant-1"

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency

    async def complete(self, request: ChatRequest) -> ChatResponse:
        if self.latency:
            await asyncio.sleep(self.latency)
        text = request.messages[-1].content[-24:]
        return ChatResponse(text=text, model="instant-1", input_tokens=8, output_tokens=4)

    async def aclose(self) -> None:
        return None


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def _measure(
    run_one: Callable[[int], Awaitable[Any]],
    steps: int,
    sequential: int,
    concurrent: int,
    in_flight: int,
) -> dict[str, float]:
    for i in range(50):  # warm up
        await run_one(i)
    per_step: list[float] = []
    for i in range(sequential):
        started = time.perf_counter()
        await run_one(i)
        per_step.append((time.perf_counter() - started) / steps)
    semaphore = asyncio.Semaphore(in_flight)

    async def bounded(i: int) -> None:
        async with semaphore:
            await run_one(i)

    started = time.perf_counter()
    await asyncio.gather(*(bounded(i) for i in range(concurrent)))
    elapsed = time.perf_counter() - started
    return {
        "median_ms": statistics.median(per_step) * 1000,
        "p99_ms": _percentile(per_step, 0.99) * 1000,
        "wf_per_s": concurrent / elapsed,
    }


async def _memory_per_workflow(run_one: Callable[[int], Awaitable[Any]], count: int) -> float:
    """Bytes held per in-flight workflow while `count` wait on a 1 s provider."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    tasks = [asyncio.create_task(run_one(i)) for i in range(count)]
    await asyncio.sleep(0.5)  # all started, all waiting on the provider
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    await asyncio.gather(*tasks)
    return held / count


# -- ours ----------------------------------------------------------------------------------


def _ours(
    text: str, latency: float, store: Any = None, settings: Settings | None = None
) -> tuple[Orchestrator, Callable[[int], Awaitable[Any]]]:
    """Our version of a workload; with a store, every run is durable."""
    settings = settings or Settings(home=Path("/tmp/llmo-bench-home"))
    orch = Orchestrator(settings, providers={"instant": InstantProvider(latency)}, store=store)
    workflow = load_workflow("bench.yaml", text=text)
    orch.plan(workflow)

    async def run_one(i: int) -> Any:
        result = await orch.run(workflow, {"text": f"document number {i}"})
        if not result.ok:
            raise RuntimeError(f"benchmark run failed: {result.errors}")
        return result

    return orch, run_one


# -- LangGraph -----------------------------------------------------------------------------


def _langgraph(
    kind: str, latency: float, checkpointer: Any = None
) -> Callable[[int], Awaitable[Any]] | None:
    """LangGraph's version of a workload; with a checkpointer, a checkpoint per step."""
    try:
        from langgraph.graph import END, START, StateGraph
    except ImportError:
        return None
    provider = InstantProvider(latency)

    async def call(prompt: str) -> str:
        from llm_orchestrator.providers.base import Message

        reply = await provider.complete(
            ChatRequest(model="instant-1", messages=(Message("user", prompt),))
        )
        return reply.text

    if kind == "chain":

        class ChainState(TypedDict, total=False):
            text: str
            s1: str
            s2: str
            s3: str

        async def s1(state: ChainState) -> dict[str, str]:
            return {"s1": await call(f"Summarise: {state['text']}")}

        async def s2(state: ChainState) -> dict[str, str]:
            return {"s2": await call(f"Improve: {state['s1']}")}

        async def s3(state: ChainState) -> dict[str, str]:
            return {"s3": await call(f"Shorten: {state['s2']}")}

        chain = StateGraph(ChainState)
        chain.add_node("s1", s1)
        chain.add_node("s2", s2)
        chain.add_node("s3", s3)
        chain.add_edge(START, "s1")
        chain.add_edge("s1", "s2")
        chain.add_edge("s2", "s3")
        chain.add_edge("s3", END)
        graph = chain.compile(checkpointer=checkpointer)
    else:

        class DiamondState(TypedDict, total=False):
            text: str
            head: str
            parts: Annotated[dict[str, str], operator.or_]
            join: str

        async def head(state: DiamondState) -> dict[str, str]:
            return {"head": await call(f"Plan: {state['text']}")}

        def part(i: int) -> Callable[[DiamondState], Awaitable[dict[str, Any]]]:
            async def node(state: DiamondState) -> dict[str, Any]:
                return {"parts": {f"p{i}": await call(f"Part {i} of {state['head']}")}}

            return node

        async def join(state: DiamondState) -> dict[str, str]:
            parts = state["parts"]
            return {"join": await call(f"Join: {parts['p0']} {parts['p7']}")}

        diamond = StateGraph(DiamondState)
        diamond.add_node("head", head)
        diamond.add_edge(START, "head")
        for i in range(8):
            diamond.add_node(f"p{i}", part(i))
            diamond.add_edge("head", f"p{i}")
        diamond.add_node("join", join)
        diamond.add_edge([f"p{i}" for i in range(8)], "join")
        diamond.add_edge("join", END)
        graph = diamond.compile(checkpointer=checkpointer)

    runs = 0

    async def run_one(i: int) -> Any:
        nonlocal runs
        runs += 1  # every invocation is a new thread (a new durable run)
        config = {"configurable": {"thread_id": f"run-{runs}"}}
        return await graph.ainvoke({"text": f"document number {i}"}, config)

    return run_one


async def _plain_asyncio_per_step(n: int) -> float:
    provider = InstantProvider()
    from llm_orchestrator.providers.base import Message

    started = time.perf_counter()
    for i in range(n):
        text = f"document number {i}"
        for template in ("Summarise: {}", "Improve: {}", "Shorten: {}"):
            reply = await provider.complete(
                ChatRequest(model="instant-1", messages=(Message("user", template.format(text)),))
            )
            text = reply.text
    return (time.perf_counter() - started) / (3 * n) * 1000


async def main(quick: bool) -> None:
    sequential, concurrent, in_flight = (300, 1000, 100) if quick else (2000, 5000, 100)
    memory_count = 1000
    rows: list[tuple[str, dict[str, float], dict[str, float] | None]] = []
    for label, text, kind, steps in (
        ("chain-3", CHAIN_3, "chain", 3),
        ("diamond-10", DIAMOND_10, "diamond", 10),
    ):
        orch, ours = _ours(text, 0.0)
        our_figures = await _measure(ours, steps, sequential, concurrent, in_flight)
        await orch.aclose()
        theirs = _langgraph(kind, 0.0)
        their_figures = (
            await _measure(theirs, steps, sequential, concurrent, in_flight) if theirs else None
        )
        rows.append((label, our_figures, their_figures))

    orch, ours_slow = _ours(CHAIN_3, 1.0)
    our_memory = await _memory_per_workflow(ours_slow, memory_count)
    await orch.aclose()
    theirs_slow = _langgraph("chain", 1.0)
    their_memory = await _memory_per_workflow(theirs_slow, memory_count) if theirs_slow else None
    plain = await _plain_asyncio_per_step(2000)

    print(
        f"python {sys.version.split()[0]}; sequential runs {sequential}, "
        f"concurrent runs {concurrent} ({in_flight} in flight)"
    )
    header = f"{'workload':<12}{'metric':<26}{'ours':>12}{'langgraph':>12}{'ratio':>10}"
    print(header)
    print("-" * len(header))
    for label, ours_f, theirs_f in rows:
        for metric, key, better in (
            ("overhead/step median ms", "median_ms", "lower"),
            ("overhead/step p99 ms", "p99_ms", "lower"),
            ("workflows/s", "wf_per_s", "higher"),
        ):
            mine = ours_f[key]
            other = theirs_f[key] if theirs_f else None
            ratio = ""
            if other:
                ratio = f"{(mine / other if better == 'higher' else other / mine):.2f}x"
            other_text = f"{other:.3f}" if other is not None else "-"
            print(f"{label:<12}{metric:<26}{mine:>12.3f}{other_text:>12}{ratio:>10}")
    mem_other = f"{their_memory / 1024:.1f}" if their_memory else "-"
    mem_ratio = f"{their_memory / our_memory:.2f}x" if their_memory else ""
    print(
        f"{'chain-3':<12}{'KB per in-flight wf':<26}{our_memory / 1024:>12.1f}"
        f"{mem_other:>12}{mem_ratio:>10}"
    )
    print(f"plain asyncio (no engine): {plain:.4f} ms per step")
    print("ratios: >1x means ours is better (faster, more throughput, less memory)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (for CI smoke)")
    args = parser.parse_args()
    asyncio.run(main(args.quick))
