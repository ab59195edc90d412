"""Every example in examples/ runs: on OpenAI's and Anthropic's wire formats (loopback servers
reached through the vendors' usual environment variables, the workflow files unchanged), and
on the real local model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_orchestrator import Orchestrator, RunStatus, Settings, StepStatus
from tests.support.modules import require_module
from tests.support.vendor_servers import FakeVendorServer, serve

EXAMPLES = Path(__file__).parents[1] / "examples"

INPUTS: dict[str, dict[str, Any]] = {
    "sentiment-analysis": {"text": "I love it, it works perfectly."},
    "content-moderation": {"post": "I will hurt you."},
    "parallel-fanout": {},
    "structured-extraction": {"text": "Hi, I am Ada (ada@example.org); please write back."},
    "transform-pipeline": {},
}

# no blocking call from our code may run inside the event loop
pytestmark = pytest.mark.usefixtures("blockbuster")


def answer(body: dict[str, Any]) -> str:
    """What a capable model would reply to each example's prompt."""
    text = json.dumps(body)
    if "Sentiment:" in text:
        return " Positive"
    if "Label:" in text:
        return " unsafe"
    if "contact details" in text:
        return '{"name": "Ada", "email": "ada@example.org", "wants_reply": true}'
    return "a short answer"


@pytest.fixture(params=["openai", "anthropic"])
def vendor(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    kind = request.param
    for server in serve(kind, responder=answer):
        env = "OPENAI" if kind == "openai" else "ANTHROPIC"
        monkeypatch.setenv(f"{env}_API_KEY", "sk-test")
        monkeypatch.setenv(f"{env}_BASE_URL", server.base_url)
        request.node.server = server
        yield kind


async def run_example(name: str, settings: Settings) -> Any:
    orch = Orchestrator(settings)
    try:
        return await orch.run(EXAMPLES / f"{name}.yaml", INPUTS[name])
    finally:
        await orch.aclose()


def test_every_example_has_inputs() -> None:
    # the rag-* examples need an ingested index: tests/test_rag_examples.py
    names = [p.stem for p in EXAMPLES.glob("*.yaml") if not p.stem.startswith("rag-")]
    assert sorted(names) == sorted(INPUTS)


@pytest.mark.parametrize("name", sorted(INPUTS))
async def test_example_runs_on_cloud_vendor(
    name: str, vendor: str, request: pytest.FixtureRequest, settings: Settings
) -> None:
    result = await run_example(name, settings)
    assert result.status is RunStatus.COMPLETED, result.errors
    server: FakeVendorServer = request.node.server
    llm_steps = [s for s in result.steps.values() if s.type == "llm"]
    assert len(server.requests) == len(llm_steps)
    for step in llm_steps:
        assert step.info["provider"] == vendor
    outputs = result.outputs
    if name == "sentiment-analysis":
        assert outputs["label"] == {"sentiment": "Positive"}
        assert outputs["report"]["result"].startswith("sentiment=positive tokens=")
    elif name == "content-moderation":
        assert outputs["route"]["branch"] == "unsafe"
        assert result.steps["publish"].status is StepStatus.SKIPPED
        assert outputs["flag"]["result"] == "flagged for review: I will hurt you."
        assert outputs["done"] == {"result": "decision=unsafe"}
    elif name == "structured-extraction":
        assert outputs["extract"]["contact"]["email"] == "ada@example.org"
        assert outputs["greeting"] == {"result": "Dear Ada <ada@example.org>"}
    elif name == "parallel-fanout":
        assert "Benefit: a short answer" in outputs["notes"]["result"]
        assert outputs["summary"]["text"] == "a short answer"
    else:
        assert outputs["summary"] == {"passed_names": "ada, cleo"}


@pytest.mark.local_model
async def test_examples_on_the_real_local_model(settings: Settings) -> None:
    require_module("llama_cpp")
    sentiment = await run_example("sentiment-analysis", settings)
    assert sentiment.status is RunStatus.COMPLETED, sentiment.errors
    classify = sentiment.steps["classify"]
    assert classify.info["provider"] == "local"
    assert classify.usage.input_tokens > 20 and classify.usage.output_tokens >= 1
    # a base model continues the few-shot pattern with one of the three labels
    assert sentiment.outputs["label"]["sentiment"] in ("positive", "negative", "neutral")
    extraction = await run_example("structured-extraction", settings)
    assert extraction.status is RunStatus.COMPLETED, extraction.errors
    contact = extraction.outputs["extract"]["contact"]
    # the JSON schema became a sampling grammar: the reply is a conforming object
    assert isinstance(contact["name"], str) and isinstance(contact["email"], str)
