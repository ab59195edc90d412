"""RAG benchmark: search latency, local embedding throughput, and what batching saves.

Printed, all measured in this run on the embedded defaults:
  1. search latency, top-10 over 10,000 chunks (384-d) on the default store (embedded
     Chroma + the FTS5 keyword mirror): vector, keyword and hybrid (RRF), p50/p99 over 200
     queries; plus the time to write the 10,000 chunks
  2. local embedding throughput (all-MiniLM-L6-v2 int8 on onnxruntime), texts/s, for
     short and long texts, one text per call vs batches
  3. requests sent to embed 1,000 texts through an `embed` step with batching (batch_size
     100) vs without (batch_size 1), against a loopback OpenAI-compatible server

    python benchmarks/rag_benchmark.py [--quick]

Retrieval quality (recall@5, MRR) is `benchmarks/retrieval_benchmark.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.support: the loopback embedding server

from llm_orchestrator import Orchestrator, Settings, load_workflow  # noqa: E402
from llm_orchestrator.embeddings.base import EmbeddingRequest  # noqa: E402
from llm_orchestrator.embeddings.local import LocalEmbedder  # noqa: E402
from llm_orchestrator.settings import ProviderSettings  # noqa: E402
from llm_orchestrator.vectordb.base import KeywordSearcher, VectorRecord  # noqa: E402
from llm_orchestrator.vectordb.fusion import reciprocal_rank_fusion  # noqa: E402
from llm_orchestrator.vectordb.registry import (  # noqa: E402
    VectorStoreRegistry,
    close_all_vector_stores,
)

_VOCABULARY = (
    "checkpoint run step workflow provider model token budget retry backoff circuit breaker "
    "vector index chunk embedding query filter namespace metadata store server replica "
    "postgres sqlite lease heartbeat recover resume replay webhook ledger idempotency key "
    "template branch parallel fanout timeout cancel stream schema json yaml config secret "
    "cache redis latency throughput cost price usage audit role user api trace metric log"
)
WORDS = _VOCABULARY.split()


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def unit(rng: random.Random, dimension: int) -> list[float]:
    v = [rng.gauss(0, 1) for _ in range(dimension)]
    norm = sum(x * x for x in v) ** 0.5
    return [x / norm for x in v]


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


async def search_latency(chunks: int, queries: int) -> None:
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home))
        store = VectorStoreRegistry.from_settings(settings).get("default")
        assert isinstance(store, KeywordSearcher)
        await store.create_index("bench", 384)
        records = [
            VectorRecord(f"c{i}", unit(rng, 384), sentence(rng, 60), {"n": i % 10})
            for i in range(chunks)
        ]
        started = time.perf_counter()
        for start in range(0, chunks, 1000):
            await store.upsert("bench", records[start : start + 1000])
        write_s = time.perf_counter() - started
        qs = [(unit(rng, 384), sentence(rng, 8)) for _ in range(queries)]
        for vector, text in qs[:10]:  # warm up
            await store.search("bench", vector, top_k=10)
            await store.keyword_search("bench", text, top_k=10)

        async def timed(fn: object) -> list[float]:
            samples = []
            for vector, text in qs:
                t0 = time.perf_counter()
                await fn(vector, text)  # type: ignore[operator]
                samples.append((time.perf_counter() - t0) * 1000)
            return samples

        async def vector_only(vector: list[float], text: str) -> None:
            hits = await store.search("bench", vector, top_k=10)
            assert len(hits) == 10

        async def keyword_only(vector: list[float], text: str) -> None:
            assert isinstance(store, KeywordSearcher)
            await store.keyword_search("bench", text, top_k=10)

        async def hybrid(vector: list[float], text: str) -> None:
            assert isinstance(store, KeywordSearcher)
            by_vector, by_keyword = await asyncio.gather(
                store.search("bench", vector, top_k=10),
                store.keyword_search("bench", text, top_k=10),
            )
            reciprocal_rank_fusion([by_vector, by_keyword])[:10]

        async def filtered(vector: list[float], text: str) -> None:
            await store.search("bench", vector, top_k=10, where={"n": {"$in": [1, 2]}})

        print(f"\n1. search latency, top-10 over {chunks:,} chunks x 384-d, default store")
        print(f"   write {chunks:,} chunks (vectors + keyword mirror): {write_s:.1f} s")
        print(f"   {'mode':<28}{'p50 ms':>10}{'p99 ms':>10}")
        for name, fn in (
            ("vector", vector_only),
            ("vector, filtered ($in)", filtered),
            ("keyword (FTS5 bm25)", keyword_only),
            ("hybrid (10 + 10, RRF)", hybrid),
        ):
            samples = await timed(fn)
            print(f"   {name:<28}{percentile(samples, 50):>10.2f}{percentile(samples, 99):>10.2f}")
        await close_all_vector_stores()


async def embedding_throughput(count: int) -> None:
    rng = random.Random(11)
    embedder = LocalEmbedder()
    await embedder.embed(EmbeddingRequest("", ("warm up",)))  # load the model
    print(f"\n2. local embedding throughput ({count:,} texts)")
    for label, low, high in (("short, 5-12 words", 5, 12), ("long, 40-120 words", 40, 120)):
        texts = [sentence(rng, rng.randint(low, high)) for _ in range(count)]
        for batch in (1, 32, 100):
            started = time.perf_counter()
            for start in range(0, count, batch):
                await embedder.embed(EmbeddingRequest("", tuple(texts[start : start + batch])))
            elapsed = time.perf_counter() - started
            print(
                f"   {label:<20} batch {batch:>3}: {count / elapsed:>7.0f} texts/s"
                f"  ({elapsed:.2f} s)"
            )
    await embedder.aclose()


async def batching(count: int) -> None:
    from tests.support.embedding_servers import EmbeddingServer

    texts = [f"text number {i}" for i in range(count)]
    print(f"\n3. embed step, {count:,} texts, loopback OpenAI-compatible server (2 ms/request)")
    print(f"   {'batch_size':<12}{'requests':>10}{'seconds':>10}")
    for batch_size in (100, 1):
        with EmbeddingServer(delay=0.002) as server, tempfile.TemporaryDirectory() as home:
            settings = Settings(
                home=Path(home),
                providers={
                    "emb": ProviderSettings(
                        type="openai_compatible", base_url=f"{server.base_url}/v1"
                    )
                },
            )
            workflow = load_workflow(
                "batching.yaml",
                text=(
                    "name: batching\ninputs: {texts: {type: array}}\nsteps:\n"
                    "  - id: e\n    type: embed\n    provider: emb\n    model: m\n"
                    f"    input: '{{{{ inputs.texts }}}}'\n    batch_size: {batch_size}\n"
                ),
            )
            orch = Orchestrator(settings)
            started = time.perf_counter()
            try:
                result = await orch.run(workflow, {"texts": texts})
            finally:
                await orch.aclose()
            elapsed = time.perf_counter() - started
            assert result.status.value == "completed", result.errors
            assert len(result.outputs["e"]["embedding"]) == count
            print(f"   {batch_size:<12}{len(server.requests):>10}{elapsed:>10.2f}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = parser.parse_args()
    chunks, queries, texts = (2_000, 50, 200) if args.quick else (10_000, 200, 1_000)
    print(f"RAG benchmark ({'quick' if args.quick else 'full'}); Python {sys.version.split()[0]}")
    await search_latency(chunks, queries)
    await embedding_throughput(texts)
    await batching(texts)


if __name__ == "__main__":
    asyncio.run(main())
