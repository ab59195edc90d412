"""The `action` step kind: `log`, `webhook` against a loopback server, check(), plug-ins."""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import socket
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_orchestrator.engine.context import StepContext
from llm_orchestrator.engine.events import EventBus
from llm_orchestrator.engine.usage import PriceTable, RunAccounting
from llm_orchestrator.exceptions import ActionError
from llm_orchestrator.providers.registry import ProviderRegistry
from llm_orchestrator.settings import Settings
from llm_orchestrator.steps import action_handlers
from llm_orchestrator.steps.action import ActionSpec, ActionStepKind
from llm_orchestrator.steps.base import Services
from tests.support.receiver import Reply, Server

VARS: dict[str, Any] = {
    "inputs": {"who": "ada", "n": 3},
    "input": {"who": "ada", "n": 3},
    "steps": {"sum": {"text": "all good", "meta": {"tokens": 12}}},
    "outputs": {"sum": "all good"},
}


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    settings = Settings(home=tmp_path)
    svc = Services(settings, ProviderRegistry(settings), PriceTable())
    yield svc
    await svc.aclose()


def make(**fields: Any) -> ActionSpec:
    return ActionSpec.model_validate({"id": "notify", "type": "action", **fields})


def context(attempt: int = 1, run_id: str = "run-1") -> StepContext:
    return StepContext(run_id, "notify", attempt, VARS, RunAccounting(None), EventBus())


async def run(services: Services, s: ActionSpec, attempt: int = 1, run_id: str = "run-1") -> Any:
    kind = ActionStepKind(s, services)
    out = await kind.run(context(attempt, run_id))
    return out.values[0]


# -- loopback server --------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[Server]:
    with Server() as srv:
        yield srv


# -- log --------------------------------------------------------------------------------------


async def test_log_action(services: Services, caplog: pytest.LogCaptureFixture) -> None:
    s = make(action="log", message="summary for {{ inputs.who }}: {{ steps.sum.text }}")
    assert ActionStepKind.check(s, services) == []
    with caplog.at_level(logging.DEBUG, logger="llm_orchestrator.actions"):
        result = await run(services, s)
    assert result == "summary for ada: all good"
    (record,) = [r for r in caplog.records if r.name == "llm_orchestrator.actions"]
    assert record.levelno == logging.INFO
    assert record.getMessage() == result
    assert (record.run_id, record.step_id) == ("run-1", "notify")  # type: ignore[attr-defined]
    assert ActionStepKind(s, services).side_effects is False


async def test_log_level_and_native_message(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    s = make(action="log", params={"message": "{{ steps.sum.meta }}", "level": "warning"})
    with caplog.at_level(logging.DEBUG, logger="llm_orchestrator.actions"):
        assert await run(services, s) == '{"tokens": 12}'
    assert caplog.records[-1].levelno == logging.WARNING


def test_log_check(services: Services) -> None:
    (missing,) = ActionStepKind.check(make(action="log"), services)
    assert missing[:2] == ("action 'log' needs parameter 'message'", "message")
    (level,) = ActionStepKind.check(make(action="log", message="m", level="loud"), services)
    assert level[0].startswith("action 'log': invalid value for parameter 'level'")
    assert level[1] == "level"


# -- check ------------------------------------------------------------------------------------


def test_check_unknown_action(services: Services) -> None:
    (problem,) = ActionStepKind.check(make(action="webhok", url="http://x"), services)
    assert problem[:2] == ("unknown action 'webhok'", "action")
    assert problem[2] is not None
    assert problem[2].startswith("did you mean 'webhook'? available: ")
    assert "log" in problem[2]


def test_check_unknown_param(services: Services) -> None:
    (problem,) = ActionStepKind.check(
        make(action="webhook", url="https://example.org", payloda={}), services
    )
    assert problem[0] == "action 'webhook' has no parameter 'payloda'"
    assert problem[2] is not None and problem[2].startswith("did you mean 'payload'?")


def test_check_webhook_url(services: Services) -> None:
    (missing,) = ActionStepKind.check(make(action="webhook", payload={}), services)
    assert missing[:2] == ("action 'webhook' needs parameter 'url'", "url")
    (scheme,) = ActionStepKind.check(make(action="webhook", url="ftp://example.org"), services)
    assert scheme[1] == "url" and "is not an http(s) URL" in scheme[0]
    templated = make(action="webhook", url="{{ inputs.hook }}")
    assert ActionStepKind.check(templated, services) == []


def test_check_payload_and_body_alias(services: Services) -> None:
    ok = make(action="webhook", url="http://127.0.0.1/", body={"a": 1})
    assert ActionStepKind.check(ok, services) == []
    (both,) = ActionStepKind.check(
        make(action="webhook", url="http://127.0.0.1/", body={}, payload={}), services
    )
    assert "give only one of" in both[0]
    dup = make(action="webhook", url="http://127.0.0.1/", params={"url": "http://127.0.0.1/"})
    (twice,) = ActionStepKind.check(dup, services)
    assert twice[1] == "params.url"


def test_template_fields() -> None:
    s = make(
        action="webhook",
        url="https://hooks.example.org/{{ inputs.who }}",
        payload={"text": "{{ steps.sum.text }}", "fixed": "x", "list": ["{{ inputs.n }}"]},
        params={"headers": {"X-Who": "{{ inputs.who }}"}},
    )
    assert s.template_fields() == {
        "url": "https://hooks.example.org/{{ inputs.who }}",
        "payload.text": "{{ steps.sum.text }}",
        "payload.list.0": "{{ inputs.n }}",
        "params.headers.X-Who": "{{ inputs.who }}",
    }
    assert ActionSpec.default_outputs == ("result",)


# -- webhook ----------------------------------------------------------------------------------


def webhook(server: Server, **params: Any) -> ActionSpec:
    return make(action="webhook", url=f"{server.url}/hook/{{{{ inputs.who }}}}", **params)


async def test_webhook_sends_json_with_stable_idempotency_key(
    services: Services, server: Server
) -> None:
    s = webhook(
        server,
        payload={"who": "{{ inputs.who }}", "n": "{{ inputs.n }}", "text": "{{ steps.sum.text }}"},
        headers={"X-Trace": "t-{{ inputs.n }}"},
    )
    assert ActionStepKind.check(s, services) == []
    first = await run(services, s, attempt=1)
    second = await run(services, s, attempt=2)
    other_run = await run(services, s, run_id="run-2")
    req1, req2, req3 = server.requests
    assert (req1.method, req1.path) == ("POST", "/hook/ada")
    assert json.loads(req1.body) == {"who": "ada", "n": 3, "text": "all good"}
    assert req1.headers["content-type"] == "application/json"
    assert req1.headers["x-trace"] == "t-3"
    key = req1.headers["idempotency-key"]
    assert len(key) == 64 and int(key, 16) >= 0
    assert req2.headers["idempotency-key"] == key
    assert req3.headers["idempotency-key"] != key
    assert first == {"status_code": 200, "body": {"ok": True}, "idempotency_key": key}
    assert second == first
    assert other_run["idempotency_key"] == req3.headers["idempotency-key"]
    expected = action_handlers.idempotency_key(
        "run-1", "notify", {"who": "ada", "n": 3, "text": "all good"}
    )
    assert key == expected


async def test_webhook_method_body_alias_and_text_reply(services: Services, server: Server) -> None:
    server.replies.append(Reply(status=201, body="created", headers={}))
    s = webhook(server, method="put", body=["{{ inputs.n }}"])
    result = await run(services, s)
    (req,) = server.requests
    assert req.method == "PUT" and json.loads(req.body) == [3]
    assert result["status_code"] == 201 and result["body"] == "created"
    assert ActionStepKind(s, services).side_effects is True


async def test_webhook_500_is_retryable(services: Services, server: Server) -> None:
    server.replies.append(Reply(status=500, body='{"error": "db down"}'))
    with pytest.raises(ActionError) as info:
        await run(services, webhook(server, payload={}))
    err = info.value
    assert err.retryable is True and err.retry_after is None
    assert err.step_id == "notify"
    assert "HTTP 500" in str(err) and "db down" in str(err)
    assert "/hook/ada" not in str(err)  # the path may hold a secret: never in messages
    assert err.__cause__ is not None


async def test_webhook_429_honours_retry_after(services: Services, server: Server) -> None:
    server.replies.append(Reply(status=429, body="slow down", headers={"Retry-After": "3"}))
    with pytest.raises(ActionError) as info:
        await run(services, webhook(server, payload={}))
    assert info.value.retryable is True
    assert info.value.retry_after == 3


async def test_webhook_503_retry_after_http_date(services: Services, server: Server) -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    server.replies.append(Reply(status=503, body="", headers={"Retry-After": when}))
    with pytest.raises(ActionError) as info:
        await run(services, webhook(server, payload={}))
    assert info.value.retryable is True
    assert info.value.retry_after is not None and 25 < info.value.retry_after <= 30


async def test_webhook_redirect_is_not_followed(services: Services, server: Server) -> None:
    server.replies.append(Reply(status=302, body="", headers={"Location": "http://127.0.0.1:1/"}))
    with pytest.raises(ActionError, match=r"HTTP 302 \(redirects are not followed") as info:
        await run(services, webhook(server, payload={}))
    assert info.value.retryable is False
    assert len(server.requests) == 1


async def test_webhook_400_is_not_retryable(services: Services, server: Server) -> None:
    server.replies.append(Reply(status=400, body="x" * 600, headers={}))
    with pytest.raises(ActionError) as info:
        await run(services, webhook(server, payload={}))
    message = str(info.value)
    assert info.value.retryable is False
    assert "HTTP 400" in message
    assert "x" * 500 in message and "x" * 501 not in message


async def test_webhook_timeout_is_retryable_and_prompt(services: Services, server: Server) -> None:
    server.replies.append(Reply(delay=5))
    started = time.perf_counter()
    with pytest.raises(ActionError, match=r"no answer within 0\.2s") as info:
        await run(services, webhook(server, payload={}, params={"timeout_seconds": 0.2}))
    assert time.perf_counter() - started < 2
    assert info.value.retryable is True


async def test_webhook_uses_step_timeout_when_not_given(services: Services, server: Server) -> None:
    server.replies.append(Reply(delay=5))
    s = webhook(server, payload={}, timeout_seconds=0.2)
    assert s.timeout_seconds == 0.2  # the step field ...
    with pytest.raises(ActionError, match=r"no answer within 0\.2s"):
        await run(services, s)  # ... is also the request timeout


async def test_webhook_cancellation_returns_promptly(services: Services, server: Server) -> None:
    server.replies.append(Reply(delay=5))
    task = asyncio.create_task(run(services, webhook(server, payload={})))
    assert await asyncio.to_thread(server.received.wait, 5)
    started = time.perf_counter()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.perf_counter() - started < 1


async def test_webhook_connection_refused_is_retryable(services: Services) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    s = make(action="webhook", url=f"http://127.0.0.1:{port}/x", payload={})
    with pytest.raises(ActionError, match="could not reach the server") as info:
        await run(services, s)
    assert info.value.retryable is True


async def test_webhook_rendered_url_is_validated(services: Services) -> None:
    s = make(action="webhook", url="{{ inputs.who }}", payload={})
    with pytest.raises(ActionError, match="invalid parameters after rendering: url") as info:
        await run(services, s)
    assert info.value.retryable is False


# -- plug-ins ---------------------------------------------------------------------------------

PLUGIN_MODULE = """
import threading
from typing import Any
from llm_orchestrator.steps.action_handlers import ActionContext, ActionHandler, ActionParams

SEEN: list[Any] = []


class TicketParams(ActionParams):
    title: str
    priority: int = 3


class OpenTicket(ActionHandler[TicketParams]):
    name = "open_ticket"
    params_model = TicketParams
    side_effects = True

    async def run(self, params: TicketParams, ctx: ActionContext) -> Any:
        SEEN.append((params, ctx))
        return {"title": params.title, "priority": params.priority, "key": ctx.idempotency_key}


async def remember(params, ctx):
    SEEN.append((params, ctx))
    return params


def blocking(params, ctx):
    return threading.current_thread() is not threading.main_thread()


def failing(params, ctx):
    raise RuntimeError("nope")
"""

ENTRY_POINTS = """
[llm_orchestrator.actions]
open_ticket = llmo_test_actions:OpenTicket
remember = llmo_test_actions:remember
blocking = llmo_test_actions:blocking
failing = llmo_test_actions:failing
log = llmo_test_actions:remember
broken = llmo_test_actions:does_not_exist
"""


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A real installed distribution (dist-info on sys.path) declaring action plug-ins."""
    root = tmp_path / "site"
    dist = root / "llmo_test_actions-0.1.dist-info"
    dist.mkdir(parents=True)
    (root / "llmo_test_actions.py").write_text(textwrap.dedent(PLUGIN_MODULE))
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: llmo-test-actions\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(root))
    action_handlers.reload_actions()
    import llmo_test_actions  # type: ignore[import-not-found]

    yield llmo_test_actions
    action_handlers.reload_actions()
    sys.modules.pop("llmo_test_actions", None)


async def test_plugin_action_handler(services: Services, plugins: Any) -> None:
    s = make(action="open_ticket", title="{{ inputs.who }} needs help", priority="{{ inputs.n }}")
    assert ActionStepKind.check(s, services) == []
    result = await run(services, s, attempt=2)
    assert result["title"] == "ada needs help" and result["priority"] == 3
    ((_params, ctx),) = plugins.SEEN
    assert (ctx.run_id, ctx.step_id, ctx.attempt) == ("run-1", "notify", 2)
    assert ctx.http is services.http
    assert ctx.idempotency_key == result["key"]
    typo, missing = ActionStepKind.check(make(action="open_ticket", titel="x"), services)
    assert typo[0] == "action 'open_ticket' has no parameter 'titel'"
    assert typo[2] is not None and typo[2].startswith("did you mean 'title'?")
    assert missing[:2] == ("action 'open_ticket' needs parameter 'title'", "title")
    assert ActionStepKind(s, services).side_effects is True


async def test_plain_callable_actions(services: Services, plugins: Any) -> None:
    s = make(action="remember", anything="{{ inputs.n }}", params={"more": [1]})
    assert ActionStepKind.check(s, services) == []
    assert await run(services, s) == {"anything": 3, "more": [1]}
    assert ActionStepKind(s, services).side_effects is True
    assert await run(services, make(action="blocking")) is True  # ran in a worker thread


async def test_plugin_action_errors(services: Services, plugins: Any) -> None:
    with pytest.raises(ActionError) as info:
        await run(services, make(action="failing"))
    assert str(info.value) == "step 'notify': action 'failing' raised RuntimeError: nope"
    assert info.value.retryable is False
    assert isinstance(info.value.__cause__, RuntimeError)
    (problem,) = ActionStepKind.check(make(action="broken"), services)
    assert problem[0].startswith("action 'broken' (a plug-in) entry point")
    assert "AttributeError" in problem[0]


async def test_builtin_action_wins(services: Services, plugins: Any) -> None:
    assert action_handlers.get_action("log") is action_handlers.BUILTINS["log"]
    assert {"log", "webhook", "open_ticket", "remember"} <= set(action_handlers.action_names())


# -- through the executor -----------------------------------------------------------------------


async def test_webhook_retried_by_the_run_keeps_one_idempotency_key(
    server: Server, settings: Settings
) -> None:
    from llm_orchestrator import Orchestrator, load_workflow

    server.replies.extend([Reply(status=503, body="busy"), Reply(status=500, body="oops")])
    workflow = load_workflow(
        "hook.yaml",
        text=f"""
name: hook
inputs: {{order: {{type: integer}}}}
steps:
  - id: notify
    type: action
    action: webhook
    url: "{server.url}/orders"
    payload: {{order: "{{{{ inputs.order }}}}", note: shipped}}
    retry: {{max_attempts: 3, initial_delay_ms: 1}}
""",
    )
    orch = Orchestrator(settings)
    result = await orch.run(workflow, {"order": 42})
    again = await orch.run(workflow, {"order": 42})
    await orch.aclose()
    assert result.ok, result.errors
    assert len(result.steps["notify"].attempts) == 3
    keys = [seen.headers["idempotency-key"] for seen in server.requests]
    assert len(keys) == 4 and len(set(keys[:3])) == 1
    # a new run is a new side effect: a new key
    assert keys[3] != keys[0]
    assert json.loads(server.requests[0].body) == {"order": 42, "note": "shipped"}
    assert result.outputs["notify"]["result"]["idempotency_key"] == keys[0]
    assert again.ok
