"""Retrieval quality on the labelled set: recall@5 and MRR@10 for vector, keyword and hybrid.

The sample corpus (docs/) is ingested with the local embedder into the embedded default
store by the real CLI (`llm-orchestrator ingest`, in a throwaway LLMO_HOME), then every
question of benchmarks/retrieval/questions.jsonl is asked through a workflow with three
`vector_search` steps (mode vector, keyword, hybrid; top_k 10).

A result is relevant when it comes from the question's source page and contains its answer
phrase (whitespace-normalised, case-insensitive). A question whose phrase no chunk contains
whole (the chunker cut through it) cannot be answered by any mode: it is counted and left
out of the figures.

    python benchmarks/retrieval_benchmark.py [--chunker paragraph] [--chunk-size 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from llm_orchestrator import Orchestrator, Settings, load_workflow

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ROOT / "benchmarks" / "retrieval" / "questions.jsonl"
MODES = ("vector", "keyword", "hybrid")


def workflow_text(keyword_weight: float, candidates: int | None = None) -> str:
    steps = "".join(
        f"  - id: {mode}\n    type: vector_search\n    index: docs\n"
        f"    query: '{{{{ inputs.q }}}}'\n    top_k: 10\n    mode: {mode}\n"
        for mode in MODES
    )
    hybrid = []
    if keyword_weight != 1.0:
        hybrid.append(f"keyword_weight: {keyword_weight}")
    if candidates is not None:
        hybrid.append(f"candidates: {candidates}")
    if hybrid:
        steps += "    hybrid: {" + ", ".join(hybrid) + "}\n"
    return "name: retrieval\ninputs: {q: {type: string}}\nsteps:\n" + steps


def norm(text: str) -> str:
    return " ".join(text.split()).lower()


def relevant(hit: dict[str, Any], question: dict[str, str]) -> bool:
    source = str(hit["metadata"].get("source", ""))
    page = question["source"].removeprefix("docs/")
    return source == page and norm(question["answer"]) in norm(hit["text"] or "")


def ingest(home: Path, chunker: str, size: int, overlap: int) -> float:
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "llm_orchestrator",
            "ingest",
            str(ROOT / "docs"),
            "--index",
            "docs",
            "--chunker",
            chunker,
            "--chunk-size",
            str(size),
            "--chunk-overlap",
            str(overlap),
        ],
        check=True,
        env={**os.environ, "LLMO_HOME": str(home)},
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


async def evaluate(
    home: Path, questions: list[dict[str, str]], keyword_weight: float, candidates: int | None
) -> dict[str, Any]:
    settings = Settings(home=home)
    workflow = load_workflow("retrieval.yaml", text=workflow_text(keyword_weight, candidates))
    orch = Orchestrator(settings)
    ranks: dict[str, list[int | None]] = {mode: [] for mode in MODES}
    answerable = 0
    chunks = None
    try:
        from llm_orchestrator.vectordb.registry import VectorStoreRegistry

        store = VectorStoreRegistry.from_settings(settings).get("default")
        everything = await store.scan("docs")
        chunks = len(everything)
        for question in questions:
            if not any(
                relevant({"metadata": r.metadata, "text": r.text}, question) for r in everything
            ):
                continue  # the chunker cut the answer phrase: no mode can find it
            answerable += 1
            result = await orch.run(workflow, {"q": question["question"]})
            assert result.status.value == "completed", result.errors
            for mode in MODES:
                hits = result.outputs[mode]["results"]
                rank = next((i for i, h in enumerate(hits, start=1) if relevant(h, question)), None)
                ranks[mode].append(rank)
    finally:
        await orch.aclose()
    return {"ranks": ranks, "answerable": answerable, "chunks": chunks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunker", default="paragraph")
    parser.add_argument("--chunk-size", type=int, default=1000)
    parser.add_argument("--chunk-overlap", type=int, default=150)
    parser.add_argument(
        "--keyword-weight", type=float, default=1.0, help="hybrid's keyword weight (vector: 1)"
    )
    parser.add_argument(
        "--candidates", type=int, default=None, help="hybrid's depth per side (default: step's)"
    )
    args = parser.parse_args()
    questions = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line]
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        seconds = ingest(home, args.chunker, args.chunk_size, args.chunk_overlap)
        started = time.perf_counter()
        found = asyncio.run(evaluate(home, questions, args.keyword_weight, args.candidates))
        search_s = time.perf_counter() - started
    n = found["answerable"]
    print(
        f"retrieval benchmark: {len(questions)} questions over docs/ "
        f"({found['chunks']} chunks; chunker {args.chunker}, size {args.chunk_size}, "
        f"overlap {args.chunk_overlap}; hybrid keyword weight {args.keyword_weight}, "
        f"candidates {args.candidates or 'default'}; "
        f"local embedder; ingest {seconds:.1f} s)"
    )
    print(f"answerable (phrase whole in some chunk): {n} of {len(questions)}")
    print(f"{'mode':<10}{'recall@1':>10}{'recall@5':>10}{'MRR@10':>10}")
    for mode in MODES:
        ranks = found["ranks"][mode]
        r1 = sum(1 for r in ranks if r is not None and r <= 1) / n
        r5 = sum(1 for r in ranks if r is not None and r <= 5) / n
        mrr = sum(1 / r for r in ranks if r is not None) / n
        print(f"{mode:<10}{r1:>10.3f}{r5:>10.3f}{mrr:>10.3f}")
    print(f"({n} workflows x 3 searches in {search_s:.1f} s)")


if __name__ == "__main__":
    main()
