"""The `llm` step end to end: workflow -> executor -> provider SDK -> loopback vendor server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_orchestrator import Orchestrator, RunStatus, Settings, StepStatus, StepToken, load_workflow
from llm_orchestrator.engine.events import Event
from llm_orchestrator.settings import PriceSettings, ProviderSettings
from tests.support.vendor_servers import FakeVendorServer, Reply, serve

# no blocking call from our code may run inside the event loop
pytestmark = pytest.mark.usefixtures("blockbuster")


@pytest.fixture
def oa() -> Iterator[FakeVendorServer]:
    yield from serve("openai")


@pytest.fixture
def backup() -> Iterator[FakeVendorServer]:
    yield from serve("openai", responder=lambda body: "from backup")


@pytest.fixture
def claude() -> Iterator[FakeVendorServer]:
    yield from serve("anthropic")


def make_settings(tmp_path: Path, **providers: ProviderSettings) -> Settings:
    return Settings(
        home=tmp_path / "home",
        providers=providers,
        prices={"priced-model": PriceSettings(input_per_mtok=1000, output_per_mtok=2000)},
    )


def openai_at(server: FakeVendorServer, **kwargs: Any) -> ProviderSettings:
    return ProviderSettings(type="openai", api_key="sk-test", base_url=server.base_url, **kwargs)


async def run(
    settings: Settings,
    text: str,
    inputs: dict[str, Any] | None = None,
    events: list[Event] | None = None,
) -> Any:
    orch = Orchestrator(settings, observers=[events.append] if events is not None else None)
    try:
        return await orch.run(load_workflow("t.yaml", text=text), inputs or {})
    finally:
        await orch.aclose()


async def test_openai_step_outputs_text_and_metadata(tmp_path: Path, oa: FakeVendorServer) -> None:
    settings = make_settings(tmp_path, oa=openai_at(oa))
    result = await run(
        settings,
        """
name: one
inputs: {topic: {type: string}}
steps:
  - id: ask
    type: llm
    provider: oa
    model: priced-model
    system: be brief
    prompt: "Tell me about {{ inputs.topic }}"
    temperature: 0.2
    max_tokens: 12
    stop: END
  - id: echo
    type: llm
    provider: oa
    model: priced-model
    depends_on: [ask]
    prompt: "{{ steps.ask.text }} / {{ steps.ask.metadata.model }}"
""",
        {"topic": "owls"},
    )
    assert result.status is RunStatus.COMPLETED, result.errors
    assert result.outputs["ask"]["text"] == "echo: Tell me about owls"
    meta = result.outputs["ask"]["metadata"]
    assert meta["provider"] == "oa" and meta["model"] == "priced-model"
    assert meta["usage"]["input_tokens"] > 0 and meta["usage"]["output_tokens"] > 0
    assert meta["finish_reason"] == "stop"
    assert result.outputs["echo"]["text"] == "echo: echo: Tell me about owls / priced-model"
    body = oa.requests[0].json
    assert body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "Tell me about owls"},
    ]
    assert body["temperature"] == 0.2 and body["stop"] == ["END"]
    assert body["max_completion_tokens"] == 12
    # cost from the user's price table, summed per step and per run
    step_usage = result.steps["ask"].usage
    expected = (step_usage.input_tokens * 1000 + step_usage.output_tokens * 2000) / 1e6
    assert step_usage.cost_usd == pytest.approx(expected)
    assert result.usage.cost_usd == pytest.approx(
        step_usage.cost_usd + result.steps["echo"].usage.cost_usd
    )


async def test_anthropic_step(tmp_path: Path, claude: FakeVendorServer) -> None:
    settings = make_settings(
        tmp_path,
        claude=ProviderSettings(type="anthropic", api_key="sk-ant", base_url=claude.base_url),
    )
    result = await run(
        settings,
        "name: a\nsteps: [{id: ask, type: llm, provider: claude, prompt: hi there}]",
    )
    assert result.ok, result.errors
    assert result.outputs["ask"]["text"] == "echo: hi there"
    assert result.outputs["ask"]["metadata"]["model"] == "claude-haiku-4-5"
    assert claude.requests[0].path == "/v1/messages"
    # list price of the default model applies
    assert result.usage.cost_usd > 0


async def test_streaming_reaches_observers_and_stores_full_text(
    tmp_path: Path, oa: FakeVendorServer
) -> None:
    events: list[Event] = []
    settings = make_settings(tmp_path, oa=openai_at(oa))
    result = await run(
        settings,
        "name: s\nsteps: [{id: talk, type: llm, provider: oa, stream: true,"
        " prompt: one two three four}]",
        events=events,
    )
    assert result.ok, result.errors
    tokens = [e.text for e in events if isinstance(e, StepToken)]
    assert len(tokens) > 1
    assert "".join(tokens) == result.outputs["talk"]["text"] == "echo: one two three four"
    assert oa.requests[0].json["stream"] is True
    assert result.usage.total_tokens > 0


async def test_output_schema_retries_once_with_the_error_fed_back(
    tmp_path: Path, oa: FakeVendorServer
) -> None:
    oa.script(Reply(text='Sure! {"name": "Ada"}'), Reply(text='{"name": "Ada", "age": 36}'))
    settings = make_settings(tmp_path, oa=openai_at(oa))
    result = await run(
        settings,
        """
name: extract
steps:
  - id: person
    type: llm
    provider: oa
    prompt: extract
    output_schema:
      type: object
      properties: {name: {type: string}, age: {type: integer}}
      required: [name, age]
    output: [person, meta]
  - {id: use, type: llm, provider: oa, depends_on: [person], prompt: "{{ person.age + 1 }}"}
""",
    )
    assert result.ok, result.errors
    assert result.outputs["person"]["person"] == {"name": "Ada", "age": 36}
    first, second, third = oa.requests
    assert first.json["response_format"]["type"] == "json_schema"
    fed_back = second.json["messages"][-1]["content"]
    assert "did not match" in fed_back and "age" in fed_back
    assert second.json["messages"][-2] == {"role": "assistant", "content": 'Sure! {"name": "Ada"}'}
    assert third.json["messages"][-1]["content"] == "37"
    assert result.steps["person"].usage.total_tokens > 0


async def test_output_schema_failure_after_retry_fails_the_step(
    tmp_path: Path, oa: FakeVendorServer
) -> None:
    oa.script(Reply(text="no"), Reply(text="still no"))
    settings = make_settings(tmp_path, oa=openai_at(oa))
    result = await run(
        settings,
        "name: x\nsteps: [{id: p, type: llm, provider: oa, prompt: x,"
        " output_schema: {type: object}}]",
    )
    assert result.status is RunStatus.FAILED
    assert result.errors[0].code == "output_schema_mismatch"
    assert len(oa.requests) == 2


async def test_rate_limit_is_retried_after_the_servers_delay(
    tmp_path: Path, oa: FakeVendorServer
) -> None:
    oa.script(Reply(status=429, headers={"Retry-After": "0.3"}))
    settings = make_settings(tmp_path, oa=openai_at(oa))
    started = time.perf_counter()
    result = await run(
        settings,
        "name: r\nsteps: [{id: p, type: llm, provider: oa, prompt: x,"
        " retry: {initial_delay_ms: 1, jitter: 0}}]",
    )
    assert result.ok, result.errors
    assert time.perf_counter() - started >= 0.3
    attempts = result.steps["p"].attempts
    assert [a.error.code if a.error else None for a in attempts] == ["provider_rate_limited", None]
    assert len(oa.requests) == 2


async def test_bad_request_is_not_retried(tmp_path: Path, oa: FakeVendorServer) -> None:
    oa.script(Reply(status=400))
    settings = make_settings(tmp_path, oa=openai_at(oa))
    result = await run(settings, "name: b\nsteps: [{id: p, type: llm, provider: oa, prompt: x}]")
    assert result.status is RunStatus.FAILED
    assert result.errors[0].code == "provider_bad_request"
    assert len(oa.requests) == 1


async def test_step_timeout_cancels_the_http_request(tmp_path: Path, oa: FakeVendorServer) -> None:
    oa.script(Reply(delay=10))
    settings = make_settings(tmp_path, oa=openai_at(oa))
    started = time.perf_counter()
    result = await run(
        settings,
        "name: t\nsteps: [{id: p, type: llm, provider: oa, prompt: x, timeout_seconds: 0.3,"
        " retry: {max_attempts: 1}}]",
    )
    assert time.perf_counter() - started < 3
    assert result.steps["p"].status is StepStatus.TIMED_OUT
    assert len(oa.requests) == 1


async def test_fallback_chain_records_who_answered(
    tmp_path: Path, oa: FakeVendorServer, backup: FakeVendorServer
) -> None:
    oa.script(Reply(status=500), Reply(status=500))
    settings = make_settings(tmp_path, oa=openai_at(oa), backup=openai_at(backup))
    result = await run(
        settings,
        "name: f\nsteps: [{id: p, type: llm, provider: oa, prompt: x,"
        " fallback: ['backup:other-model'], retry: {max_attempts: 1}}]",
    )
    assert result.ok, result.errors
    assert result.outputs["p"]["text"] == "from backup"
    info = result.steps["p"].info
    assert info["provider"] == "backup" and info["model"] == "other-model"
    assert info["fallback_from"][0]["provider"] == "oa"
    assert backup.requests[0].json["model"] == "other-model"


async def test_open_circuit_skips_straight_to_the_fallback(
    tmp_path: Path, oa: FakeVendorServer, backup: FakeVendorServer
) -> None:
    oa.script(*[Reply(status=503)] * 2)
    breaker = {"failure_threshold": 2, "recovery_seconds": 60}
    settings = make_settings(
        tmp_path, oa=openai_at(oa, circuit_breaker=breaker), backup=openai_at(backup)
    )
    failing = await run(
        settings,
        "name: c\nsteps: [{id: p, type: llm, provider: oa, prompt: x,"
        " retry: {max_attempts: 2, initial_delay_ms: 1}}]",
    )
    assert failing.status is RunStatus.FAILED
    assert len(oa.requests) == 2
    # the circuit is open now: no request reaches the failing provider
    refused = await run(settings, "name: c\nsteps: [{id: p, type: llm, provider: oa, prompt: x}]")
    assert refused.status is RunStatus.FAILED
    assert refused.errors[0].code == "circuit_open"
    rescued = await run(
        settings,
        "name: c\nsteps: [{id: p, type: llm, provider: oa, prompt: x, fallback: [backup]}]",
    )
    assert rescued.ok, rescued.errors
    assert rescued.steps["p"].info["provider"] == "backup"
    assert len(oa.requests) == 2


async def test_budget_on_cost_names_the_step(tmp_path: Path, oa: FakeVendorServer) -> None:
    settings = make_settings(tmp_path, oa=openai_at(oa))
    result = await run(
        settings,
        """
name: budget
budget: {max_cost_usd: 0.001}
steps:
  - {id: cheap, type: llm, provider: oa, model: gpt-4o-mini, prompt: hello}
  - {id: dear, type: llm, provider: oa, model: priced-model, prompt: hello, depends_on: [cheap]}
  - {id: never, type: llm, provider: oa, prompt: hello, depends_on: [dear]}
""",
    )
    assert result.status is RunStatus.FAILED
    assert result.errors[0].code == "budget_exceeded"
    assert result.errors[0].step_id == "dear"
    assert "max_cost_usd" in result.errors[0].message
    assert result.steps["never"].status is StepStatus.SKIPPED
    assert len(oa.requests) == 2


async def test_workflow_declared_provider_without_key_in_file(
    tmp_path: Path, oa: FakeVendorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_GATEWAY_KEY", "sk-from-env")
    result = await run(
        Settings(home=tmp_path / "home"),
        f"""
name: declared
providers:
  gateway: {{type: openai_compatible, base_url: "{oa.base_url}", model: served-model,
            api_key_env: MY_GATEWAY_KEY}}
steps:
  - {{id: p, type: llm, provider: gateway, prompt: hi}}
""",
    )
    assert result.ok, result.errors
    assert oa.requests[0].json["model"] == "served-model"
    assert oa.requests[0].headers["authorization"] == "Bearer sk-from-env"


async def test_default_provider_follows_the_vendor_key(
    tmp_path: Path, oa: FakeVendorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    monkeypatch.setenv("OPENAI_BASE_URL", oa.base_url)
    result = await run(
        Settings(home=tmp_path / "home"), "name: d\nsteps: [{id: p, type: llm, prompt: hi}]"
    )
    assert result.ok, result.errors
    assert result.outputs["p"]["metadata"]["provider"] == "openai"
    assert oa.requests[0].json["model"] == "gpt-4o-mini"
    assert json.loads(json.dumps(result.to_dict()))["status"] == "completed"
