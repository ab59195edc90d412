"""`rerank` with an LLM judge, against a loopback server speaking the OpenAI wire format."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_orchestrator import Orchestrator, RunStatus, Settings, load_workflow
from llm_orchestrator.orchestrator import validate_file
from llm_orchestrator.settings import PriceSettings, ProviderSettings
from llm_orchestrator.steps.rerank import parse_score
from tests.support.vendor_servers import FakeVendorServer, Reply, serve

pytestmark = pytest.mark.usefixtures("blockbuster")

GRADES = {"checkpoint": 9, "retry": 4, "budget": 1}


def grader(body: dict[str, Any]) -> str:
    """Grade by the passage's topic word; passages without one get prose, not JSON."""
    passage = body["messages"][-1]["content"].split("Passage: ", 1)[1]
    for word, grade in GRADES.items():
        if word in passage:
            return json.dumps({"score": grade})
    return "I am not sure, maybe 3 out of 10"


@pytest.fixture
def judge() -> Iterator[FakeVendorServer]:
    yield from serve("openai", responder=grader)


def settings_for(tmp_path: Path, server: FakeVendorServer) -> Settings:
    return Settings(
        home=tmp_path / "home",
        providers={
            "judge": ProviderSettings(
                type="openai", api_key="sk-test", base_url=server.base_url, default_model="grader"
            )
        },
        prices={"grader": PriceSettings(input_per_mtok=1000, output_per_mtok=1000)},
    )


WORKFLOW = """
name: rerank
inputs: {docs: {type: array}}
steps:
  - id: rerank
    type: rerank
    provider: judge
    query: how do runs survive a crash?
    documents: "{{ inputs.docs }}"
    top_n: 3
    max_concurrency: 2
"""


async def run(settings: Settings, text: str, inputs: dict[str, Any]) -> Any:
    orch = Orchestrator(settings)
    try:
        return await orch.run(load_workflow("t.yaml", text=text), inputs)
    finally:
        await orch.aclose()


async def test_orders_by_the_judges_scores(tmp_path: Path, judge: FakeVendorServer) -> None:
    docs = [
        {"id": "b", "score": 0.9, "text": "budget limits stop runs", "metadata": {}},
        {"id": "r", "score": 0.8, "text": "retry with backoff", "metadata": {"k": 1}},
        "prose about nothing",
        {"id": "c", "score": 0.7, "text": "every checkpoint is durable", "metadata": {}},
    ]
    result = await run(settings_for(tmp_path, judge), WORKFLOW, {"docs": docs})
    assert result.status is RunStatus.COMPLETED, result.errors
    ranked = result.outputs["rerank"]["results"]
    assert [(d.get("id"), d["relevance"]) for d in ranked] == [("c", 9), ("r", 4), (None, 3)]
    assert ranked[1]["metadata"] == {"k": 1} and ranked[1]["score"] == 0.8  # items kept whole
    assert ranked[2] == {"text": "prose about nothing", "relevance": 3}
    # one judging request per passage, with the schema and the question
    assert len(judge.requests) == 4
    body = judge.requests[0].json
    assert body is not None and body["model"] == "grader"
    assert "how do runs survive a crash?" in body["messages"][-1]["content"]
    assert body["response_format"]["type"] == "json_schema"
    step = result.steps["rerank"]
    assert step.usage.input_tokens > 0 and step.usage.cost_usd > 0


async def test_unscorable_replies_keep_retrieval_order(
    tmp_path: Path, judge: FakeVendorServer
) -> None:
    judge.script(Reply(text="no idea"), Reply(text="cannot say"))
    text = WORKFLOW.replace("top_n: 3", "max_concurrency: 1").replace(
        "    max_concurrency: 2\n", ""
    )
    docs = ["first passage", "second passage", "a checkpoint passage"]
    result = await run(settings_for(tmp_path, judge), text, {"docs": docs})
    assert result.status is RunStatus.COMPLETED, result.errors
    ranked = result.outputs["rerank"]["results"]
    assert [(d["text"], d["relevance"]) for d in ranked] == [
        ("a checkpoint passage", 9),
        ("first passage", None),
        ("second passage", None),
    ]
    assert result.steps["rerank"].info["unscored"] == 2


async def test_provider_errors_fail_the_step(tmp_path: Path, judge: FakeVendorServer) -> None:
    judge.script(*[Reply(status=400)] * 3)
    result = await run(settings_for(tmp_path, judge), WORKFLOW, {"docs": ["a", "b"]})
    assert result.status is RunStatus.FAILED
    assert result.errors[0].step_id == "rerank"


async def test_documents_without_text_fail_clearly(tmp_path: Path, judge: FakeVendorServer) -> None:
    result = await run(settings_for(tmp_path, judge), WORKFLOW, {"docs": [{"id": 1}]})
    assert result.status is RunStatus.FAILED
    assert "documents[0] has no text" in str(result.errors)


def test_validation(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: bad\nsteps:\n  - id: r\n    type: rerank\n    provider: nope\n"
        "    query: q\n    documents: not-a-template\n    method: cross_encoder\n"
    )
    problems = "\n".join(str(p) for p in validate_file(path, Settings(home=tmp_path / "h")))
    assert "bad.yaml:8" in problems and "method" in problems
    path.write_text(
        "name: bad\nsteps:\n  - id: r\n    type: rerank\n    provider: nope\n"
        "    query: q\n    documents: not-a-template\n"
    )
    problems = "\n".join(str(p) for p in validate_file(path, Settings(home=tmp_path / "h")))
    assert "unknown provider 'nope'" in problems or "'nope'" in problems
    assert "documents must be a list or a template" in problems


@pytest.mark.parametrize(
    ("reply", "score"),
    [
        ('{"score": 7}', 7),
        ('```json\n{"score": 10}\n```', 10),
        ('{"score": 11}', None),
        ("Score: 6/10", 6),
        ("irrelevant", None),
        ('{"score": true}', None),
    ],
)
def test_parse_score(reply: str, score: int | None) -> None:
    assert parse_score(reply) == score
