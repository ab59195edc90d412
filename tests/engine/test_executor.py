"""Scheduling semantics, driven through real workflow documents and the probe step kind."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import yaml

from llm_orchestrator import (
    Orchestrator,
    RunStatus,
    Settings,
    StepRetrying,
    StepStatus,
    load_workflow,
)
from llm_orchestrator.engine.events import Event
from tests.support.probe import CALLS

# no blocking call from our code may run inside the event loop
pytestmark = pytest.mark.usefixtures("blockbuster")


def wf(text: str) -> Any:
    return load_workflow("test.yaml", text=text)


async def run(
    text: str,
    settings: Settings,
    inputs: dict[str, Any] | None = None,
    events: list[Event] | None = None,
    **kwargs: Any,
) -> Any:
    orch = Orchestrator(settings, observers=[events.append] if events is not None else None)
    try:
        return await orch.run(wf(text), inputs or {}, **kwargs)
    finally:
        await orch.aclose()


def calls(step_id: str) -> list[Any]:
    return [c for c in CALLS if c.step_id == step_id]


async def test_chain_passes_values_and_nested_access(settings: Settings) -> None:
    result = await run(
        """
name: chain
inputs:
  who: {type: string}
steps:
  - id: a
    type: probe
    value: {user: {name: Ada, langs: [py, rs]}}
  - id: b
    type: probe
    depends_on: [a]
    value: "hello {{ steps.a.result.user.name }} from {{ inputs.who }}, {{ input.who }}"
    output: greeting
  - id: c
    type: probe
    depends_on: b
    value: "{{ greeting | upper }} / {{ outputs.b }} / {{ steps.a.result['user'].langs[1] }}"
""",
        settings,
        {"who": "Bob"},
    )
    assert result.status is RunStatus.COMPLETED, result.errors
    assert result.outputs["b"] == {"greeting": "hello Ada from Bob, Bob"}
    assert result.outputs["c"]["result"] == (
        "HELLO ADA FROM BOB, BOB / hello Ada from Bob, Bob / rs"
    )


async def test_single_expression_template_keeps_native_type(settings: Settings) -> None:
    result = await run(
        """
name: native
steps:
  - {id: a, type: probe, value: [1, 2, 3]}
  - {id: b, type: probe, depends_on: [a], value: "{{ steps.a.result }}"}
""",
        settings,
    )
    assert result.outputs["b"]["result"] == [1, 2, 3]


async def test_max_concurrency_gives_free_slot_to_next_ready_step(settings: Settings) -> None:
    # long=0.6s, three short=0.2s, two slots: optimal is 0.6s (long || short, short, short).
    # A layer-by-layer scheduler would wait for `long` before starting the third short step.
    result = await run(
        """
name: slots
max_concurrency: 2
steps:
  - {id: long, type: probe, sleep: 0.6}
  - {id: s1, type: probe, sleep: 0.2}
  - {id: s2, type: probe, sleep: 0.2}
  - {id: s3, type: probe, sleep: 0.2}
""",
        settings,
    )
    assert result.ok
    long_call = calls("long")[0]
    shorts = sorted((calls(s)[0] for s in ("s1", "s2", "s3")), key=lambda c: c.start)
    # never more than two at once
    assert shorts[1].start >= shorts[0].end - 0.01
    assert shorts[2].start >= shorts[1].end - 0.01
    # the slot freed by each short step went straight to the next one, before `long` ended
    assert shorts[2].start < long_call.end
    assert long_call.end is not None and shorts[2].end is not None
    assert abs(shorts[2].end - long_call.end) < 0.15


async def test_step_starts_when_its_last_dependency_ends(settings: Settings) -> None:
    result = await run(
        """
name: ready-queue
steps:
  - {id: slow, type: probe, sleep: 0.5}
  - {id: fast, type: probe, sleep: 0.05}
  - {id: after_fast, type: probe, depends_on: [fast]}
  - {id: join, type: probe, depends_on: [slow, after_fast]}
""",
        settings,
    )
    assert result.ok
    # after_fast did not wait for the unrelated slow step
    assert calls("after_fast")[0].start < calls("slow")[0].end - 0.3
    assert calls("join")[0].start >= calls("slow")[0].end


async def test_cpu_stays_idle_while_steps_wait(settings: Settings) -> None:
    cpu_before = time.process_time()
    wall_before = time.perf_counter()
    result = await run(
        """
name: idle
steps:
  - {id: a, type: probe, sleep: 1.0}
  - {id: b, type: probe, sleep: 1.0}
""",
        settings,
    )
    wall = time.perf_counter() - wall_before
    cpu = time.process_time() - cpu_before
    assert result.ok
    assert wall >= 1.0
    # waiting costs no CPU: no polling loops (generous bound for a noisy machine)
    assert cpu < 0.25 * wall


async def test_workflow_timeout_cancels_in_flight_steps(settings: Settings) -> None:
    started = time.perf_counter()
    result = await run(
        """
name: too-slow
timeout_seconds: 0.3
steps:
  - {id: fast, type: probe}
  - {id: slow, type: probe, sleep: 10, depends_on: [fast]}
  - {id: never, type: probe, depends_on: [slow]}
""",
        settings,
    )
    assert time.perf_counter() - started < 2
    assert result.status is RunStatus.TIMED_OUT
    assert result.steps["fast"].status is StepStatus.COMPLETED
    assert result.steps["slow"].status is StepStatus.TIMED_OUT
    assert result.steps["never"].status is StepStatus.SKIPPED
    assert calls("slow")[0].cancelled
    assert any(e.code == "timed_out" for e in result.errors)


async def test_step_timeout_is_recorded_and_retried(settings: Settings) -> None:
    result = await run(
        """
name: step-timeout
steps:
  - id: slow
    type: probe
    sleep: 5
    timeout_seconds: 0.1
    retry: {max_attempts: 2, initial_delay_ms: 10}
""",
        settings,
    )
    assert result.status is RunStatus.FAILED
    step = result.steps["slow"]
    assert step.status is StepStatus.TIMED_OUT
    assert [a.error.code for a in step.attempts if a.error] == ["timed_out", "timed_out"]
    assert all(c.cancelled for c in calls("slow"))


async def test_retryable_errors_are_retried_and_every_attempt_recorded(
    settings: Settings,
) -> None:
    result = await run(
        """
name: retry
steps:
  - id: flaky
    type: probe
    value: ok
    fail_times: 2
    retry: {max_attempts: 3, initial_delay_ms: 1, backoff: constant}
""",
        settings,
    )
    assert result.ok
    attempts = result.steps["flaky"].attempts
    assert len(attempts) == 3
    assert [a.error.code if a.error else None for a in attempts] == [
        "provider_server_error",
        "provider_server_error",
        None,
    ]


@pytest.mark.parametrize("error", ["auth", "bug"])
async def test_non_retryable_errors_are_not_retried(settings: Settings, error: str) -> None:
    result = await run(
        f"""
name: no-retry
steps:
  - {{id: broken, type: probe, fail_times: 5, error: {error},
      retry: {{max_attempts: 5, initial_delay_ms: 1}}}}
""",
        settings,
    )
    assert result.status is RunStatus.FAILED
    assert len(result.steps["broken"].attempts) == 1
    assert result.errors[0].step_id == "broken"


async def test_retry_after_is_honoured(settings: Settings) -> None:
    events: list[Event] = []
    result = await run(
        """
name: retry-after
steps:
  - {id: limited, type: probe, fail_times: 1, error: rate_limited, retry_after: 0.3,
     retry: {initial_delay_ms: 1, jitter: 0}}
""",
        settings,
        events=events,
    )
    assert result.ok
    retrying = [e for e in events if isinstance(e, StepRetrying)]
    assert len(retrying) == 1 and retrying[0].delay_seconds == pytest.approx(0.3)
    first, second = calls("limited")
    assert first.end is not None and second.start - first.end >= 0.29


async def test_failure_cancels_siblings_and_skips_dependents(settings: Settings) -> None:
    result = await run(
        """
name: fail-fast
steps:
  - {id: boom, type: probe, sleep: 0.05, fail_times: 1, error: auth}
  - {id: sibling, type: probe, sleep: 5}
  - {id: child, type: probe, depends_on: [boom]}
""",
        settings,
    )
    assert result.status is RunStatus.FAILED
    assert result.steps["boom"].status is StepStatus.FAILED
    assert result.steps["sibling"].status is StepStatus.CANCELLED
    assert calls("sibling")[0].cancelled
    assert result.steps["child"].status is StepStatus.SKIPPED
    assert calls("child") == []
    assert result.errors[0].step_id == "boom"
    assert "bad key" in result.errors[0].message


async def test_continue_on_error_keeps_the_run_going(settings: Settings) -> None:
    result = await run(
        """
name: tolerant
steps:
  - {id: optional, type: probe, fail_times: 1, error: auth, continue_on_error: true}
  - {id: needs_it, type: probe, depends_on: [optional]}
  - {id: other, type: probe, value: fine}
""",
        settings,
    )
    assert result.status is RunStatus.COMPLETED
    assert result.steps["optional"].status is StepStatus.FAILED
    assert result.steps["needs_it"].status is StepStatus.SKIPPED
    assert result.outputs["other"] == {"result": "fine"}


async def test_false_condition_skips_step_and_dependents(settings: Settings) -> None:
    result = await run(
        """
name: conditions
steps:
  - {id: moderate, type: probe, value: "unsafe\\n"}
  - id: publish
    type: probe
    depends_on: [moderate]
    condition: "{{ outputs.moderate }} == 'safe'"
  - {id: after_publish, type: probe, depends_on: [publish]}
  - id: flag
    type: probe
    depends_on: [moderate]
    condition: "steps.moderate.result | trim == 'unsafe'"
""",
        settings,
    )
    assert result.ok
    assert result.steps["publish"].status is StepStatus.SKIPPED
    assert "condition" in (result.steps["publish"].skip_reason or "")
    assert result.steps["after_publish"].status is StepStatus.SKIPPED
    assert result.steps["flag"].status is StepStatus.COMPLETED


async def test_legacy_condition_compares_rendered_text(settings: Settings) -> None:
    result = await run(
        """
name: legacy
steps:
  - {id: moderate, type: probe, value: " safe\\n"}
  - {id: publish, type: probe, depends_on: [moderate],
     condition: "{{ outputs.moderate }} == 'safe'"}
""",
        settings,
    )
    assert result.steps["publish"].status is StepStatus.COMPLETED


async def test_branch_runs_one_side_and_join_waits_for_it(settings: Settings) -> None:
    text = """
name: branching
inputs:
  mood: {type: string}
steps:
  - id: route
    type: branch
    on: inputs.mood
    branches:
      happy:
        - {id: cheer, type: probe, sleep: 0.1, value: yay}
        - {id: cheer_more, type: probe, depends_on: [cheer], value: "{{ steps.cheer.result }}!"}
      sad:
        - {id: console, type: probe, value: there there}
    default:
      - {id: shrug, type: probe, value: meh}
  - id: join
    type: probe
    depends_on: [route]
    value: "{{ steps.route.branch }}"
"""
    result = await run(text, settings, {"mood": "HAPPY"})
    assert result.ok, result.errors
    assert result.outputs["cheer_more"] == {"result": "yay!"}
    assert result.steps["console"].status is StepStatus.SKIPPED
    assert result.steps["shrug"].status is StepStatus.SKIPPED
    assert result.outputs["join"] == {"result": "happy"}
    assert calls("join")[0].start >= calls("cheer_more")[0].end
    CALLS.clear()
    other = await run(text, settings, {"mood": "confused"})
    assert other.outputs["shrug"] == {"result": "meh"}
    assert other.steps["cheer"].status is StepStatus.SKIPPED
    assert other.outputs["join"] == {"result": "default"}


async def test_branch_with_rust_style_condition_selector(settings: Settings) -> None:
    result = await run(
        """
name: rust-branch
steps:
  - {id: score, type: probe, value: 0.9}
  - id: gate
    type: branch
    depends_on: [score]
    condition: "{{ outputs.score }} > 0.5"
    branches:
      "true": [{id: high, type: probe}]
      "false": [{id: low, type: probe}]
""",
        settings,
    )
    assert result.ok
    assert result.steps["high"].status is StepStatus.COMPLETED
    assert result.steps["low"].status is StepStatus.SKIPPED


async def test_parallel_group_limit(settings: Settings) -> None:
    result = await run(
        """
name: fan-out
steps:
  - id: fan
    type: parallel
    max_concurrency: 1
    tasks:
      - {id: t1, type: probe, sleep: 0.1, value: 1}
      - {id: t2, type: probe, sleep: 0.1, value: 2}
      - {id: t3, type: probe, sleep: 0.1, value: 3}
  - {id: free, type: probe, sleep: 0.1}
  - id: total
    type: probe
    depends_on: [fan]
    value: "{{ steps.t1.result + steps.t2.result + steps.t3.result }}"
""",
        settings,
    )
    assert result.ok, result.errors
    assert result.outputs["total"] == {"result": 6}
    assert result.outputs["fan"] == {"tasks": ["t1", "t2", "t3"]}
    spans = sorted((calls(t)[0] for t in ("t1", "t2", "t3")), key=lambda c: c.start)
    for earlier, later in zip(spans, spans[1:], strict=False):
        assert later.start >= earlier.end - 0.01
    # the group limit does not hold back steps outside the group
    assert calls("free")[0].start < spans[1].start


async def test_multi_output_and_output_mapping(settings: Settings) -> None:
    result = await run(
        """
name: mapping
steps:
  - id: a
    type: probe
    value: {items: [{n: 1}, {n: 2}], meta: {source: x}}
    output: [all, second, source, attempt]
    output_mapping:
      second: "$.result.items[1].n"
      source: "$.result.meta.source"
      attempt: "$.attempt"
""",
        settings,
    )
    assert result.ok, result.errors
    assert result.outputs["a"] == {
        "all": {"items": [{"n": 1}, {"n": 2}], "meta": {"source": "x"}},
        "second": 2,
        "source": "x",
        "attempt": 1,
    }


async def test_output_mapping_that_matches_nothing_fails_the_step(settings: Settings) -> None:
    result = await run(
        """
name: bad-mapping
steps:
  - {id: a, type: probe, value: 1, output: [x, y], output_mapping: {y: "$.nope"}}
""",
        settings,
    )
    assert result.status is RunStatus.FAILED
    assert result.errors[0].code == "output_error"
    assert "output 'y'" in result.errors[0].message


async def test_cancel_event_stops_the_run(settings: Settings) -> None:
    cancel = asyncio.Event()
    asyncio.get_running_loop().call_later(0.2, cancel.set)
    result = await run(
        """
name: cancellable
steps:
  - {id: long, type: probe, sleep: 10}
  - {id: after, type: probe, depends_on: [long]}
""",
        settings,
        cancel=cancel,
    )
    assert result.status is RunStatus.CANCELLED
    assert result.steps["long"].status is StepStatus.CANCELLED
    assert result.steps["after"].status is StepStatus.SKIPPED
    assert calls("long")[0].cancelled


async def test_budget_stops_the_run_naming_the_step(settings: Settings) -> None:
    result = await run(
        """
name: budget
budget: {max_tokens: 50}
steps:
  - {id: first, type: probe, tokens: 20}
  - {id: second, type: probe, tokens: 20, depends_on: [first]}
  - {id: third, type: probe, tokens: 20, depends_on: [second]}
""",
        settings,
    )
    assert result.status is RunStatus.FAILED
    assert result.errors[0].code == "budget_exceeded"
    assert result.errors[0].step_id == "second"
    assert result.usage.total_tokens == 80
    assert result.steps["third"].status is StepStatus.SKIPPED


async def test_many_concurrent_runs_share_one_plan(settings: Settings) -> None:
    orch = Orchestrator(settings)
    workflow = wf(
        """
name: shared
steps:
  - {id: a, type: probe, value: "{{ inputs.n }}"}
  - {id: b, type: probe, depends_on: [a], value: "{{ steps.a.result * 2 }}"}
"""
    )
    results = await asyncio.gather(*(orch.run(workflow, {"n": n}) for n in range(200)))
    await orch.aclose()
    assert [r.outputs["b"]["result"] for r in results] == [n * 2 for n in range(200)]
    assert len({r.run_id for r in results}) == 200


def test_result_serialises_to_json(settings: Settings) -> None:
    import json

    orch = Orchestrator(settings)
    result = orch.run_sync(wf("name: one\nsteps: [{id: a, type: probe, value: 1}]"))
    data = json.loads(json.dumps(result.to_dict()))
    assert data["status"] == "completed"
    assert data["steps"]["a"]["attempts"][0]["number"] == 1
    assert yaml.safe_dump(data)


async def test_condition_that_cannot_be_evaluated_fails_the_step(settings: Settings) -> None:
    result = await run(
        """
name: bad-condition
steps:
  - {id: a, type: probe, value: {x: 1}}
  - {id: b, type: probe, depends_on: [a], condition: "steps.a.result.missing.deeper > 1"}
  - {id: c, type: probe, depends_on: [b]}
""",
        settings,
    )
    assert result.status is RunStatus.FAILED
    assert result.steps["b"].status is StepStatus.FAILED
    assert result.errors[0].code == "template_error" and result.errors[0].step_id == "b"
    assert "condition" in result.errors[0].message
    assert result.steps["c"].status is StepStatus.SKIPPED
    assert calls("b") == []


async def test_restored_steps_are_not_run_again(settings: Settings) -> None:
    from llm_orchestrator.engine.executor import Executor
    from llm_orchestrator.engine.journal import Restored
    from llm_orchestrator.engine.result import StepResult

    orch = Orchestrator(settings)
    plan = orch.plan(
        wf(
            """
name: restore
steps:
  - {id: a, type: probe, value: 1}
  - {id: b, type: probe, depends_on: [a], value: "{{ steps.a.result + 1 }}"}
  - {id: c, type: probe, depends_on: [b], value: "{{ steps.b.result + 1 }}"}
  - {id: d, type: probe, depends_on: [a], value: "{{ steps.a.result * 10 }}"}
"""
        )
    )
    done = {
        sid: StepResult(sid, "probe", StepStatus.COMPLETED, outputs={"result": value})
        for sid, value in (("a", 5), ("b", 6))
    }
    result = await Executor().run(plan, {}, restored=Restored(completed=done))
    await orch.aclose()
    assert result.ok, result.errors
    assert sorted(c.step_id for c in CALLS) == ["c", "d"]
    assert result.outputs["c"] == {"result": 7} and result.outputs["d"] == {"result": 50}
    assert result.steps["a"].info["restored"] is True
