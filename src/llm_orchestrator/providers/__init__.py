"""LLM providers: the adapter protocol, and the registry that builds and guards instances.

Vendor modules (`openai`, `anthropic`, `local`) are imported only when an instance of that
type is first used.
"""

from llm_orchestrator.providers.base import ChatRequest as ChatRequest
from llm_orchestrator.providers.base import ChatResponse as ChatResponse
from llm_orchestrator.providers.base import LLMProvider as LLMProvider
from llm_orchestrator.providers.base import Message as Message
from llm_orchestrator.providers.circuit import CircuitBreaker as CircuitBreaker
from llm_orchestrator.providers.ratelimit import Throttle as Throttle
from llm_orchestrator.providers.registry import ManagedProvider as ManagedProvider
from llm_orchestrator.providers.registry import ProviderRegistry as ProviderRegistry
from llm_orchestrator.providers.registry import close_all_providers as close_all_providers
from llm_orchestrator.providers.registry import reset_provider_cache as reset_provider_cache

__all__ = [
    "ChatRequest",
    "ChatResponse",
    "CircuitBreaker",
    "LLMProvider",
    "ManagedProvider",
    "Message",
    "ProviderRegistry",
    "Throttle",
    "close_all_providers",
    "reset_provider_cache",
]
