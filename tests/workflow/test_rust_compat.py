"""Workflows written for the Rust LLM-Orchestrator load and run unchanged."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from llm_orchestrator import Orchestrator, RunStatus, Settings, StepStatus, load_workflow
from llm_orchestrator.engine.retry import RetryPolicy
from tests.support.vendor_servers import FakeVendorServer, serve

# the two-step example of the Rust project's README, verbatim apart from indentation
RUST_README_EXAMPLE = """
name: simple-workflow
version: "1.0"
description: A simple two-step workflow

steps:
  - id: greet
    type: llm
    provider: openai
    model: gpt-3.5-turbo
    prompt: "Say hello to {{inputs.name}}"
    temperature: 0.7
    max_tokens: 50
    output:
      - greeting

  - id: analyze
    type: llm
    depends_on:
      - greet
    provider: openai
    model: gpt-3.5-turbo
    prompt: "Analyze this greeting: {{steps.greet.greeting}}"
    temperature: 0.5
    max_tokens: 100
    output:
      - analysis
"""

# the other forms that project documents: bare output names as transform inputs, a plain
# condition, the README's retry spelling, the older condition format and `outputs.<id>`
RUST_FORMS = """
name: forms
version: 1.0
timeout_seconds: 60
metadata: {owner: team-a}
steps:
  - id: a
    type: llm
    provider: openai
    model: gpt-4
    prompt: "Hello {{ input.name }}"
    output: [first]
    retry:
      max_attempts: 3
      strategy: exponential
      initial_delay: 1000
      max_delay: 30000
      backoff_multiplier: 2
      jitter: true
  - id: b
    type: llm
    provider: openai
    model: gpt-4
    depends_on: [a]
    condition: "inputs.enable == true"
    prompt: "Again: {{ first }}"
    output: [second]
  - id: merged
    type: transform
    depends_on: [a, b]
    function: concat
    inputs: [first, second]
    separator: " | "
    output: [merged_result]
  - id: gate
    type: llm
    provider: openai
    model: gpt-4
    depends_on: [merged]
    condition: "{{ outputs.merged }} == 'nothing'"
    prompt: never sent
"""


@pytest.fixture
def oa(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeVendorServer]:
    for server in serve("openai"):
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        yield server


async def test_rust_readme_example_runs(oa: FakeVendorServer, settings: Settings) -> None:
    orch = Orchestrator(settings)
    result = await orch.run(load_workflow("simple.yaml", text=RUST_README_EXAMPLE), {"name": "Al"})
    await orch.aclose()
    assert result.status is RunStatus.COMPLETED, result.errors
    assert result.outputs["greet"]["greeting"] == "echo: Say hello to Al"
    assert result.outputs["analyze"]["analysis"] == (
        "echo: Analyze this greeting: echo: Say hello to Al"
    )
    assert oa.requests[0].json["model"] == "gpt-3.5-turbo"
    assert oa.requests[0].json["temperature"] == 0.7


async def test_rust_forms_run(oa: FakeVendorServer, settings: Settings) -> None:
    orch = Orchestrator(settings)
    workflow = load_workflow("forms.yaml", text=RUST_FORMS)
    result = await orch.run(workflow, {"name": "Bo", "enable": True})
    assert result.status is RunStatus.COMPLETED, result.errors
    assert result.outputs["merged"] == {
        "merged_result": "echo: Hello Bo | echo: Again: echo: Hello Bo"
    }
    assert result.steps["gate"].status is StepStatus.SKIPPED
    skipped = await orch.run(workflow, {"name": "Bo", "enable": False})
    await orch.aclose()
    assert skipped.steps["b"].status is StepStatus.SKIPPED
    assert skipped.steps["merged"].status is StepStatus.SKIPPED
    assert workflow.header.version == "1.0"


def test_rust_retry_spelling_maps_to_the_policy(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    orch = Orchestrator(settings)
    plan = orch.plan(load_workflow("forms.yaml", text=RUST_FORMS))
    assert plan.nodes["a"].retry == RetryPolicy(
        max_attempts=3,
        backoff="exponential",
        initial_delay=1.0,
        max_delay=30.0,
        jitter=0.1,
        multiplier=2.0,
    )
